"""Process exit codes of ``degan-bench run`` and ``degan-bench sweep``, for schedulers and CI.

A campaign of time-limited jobs must tell "made progress, continue later" from "failed" without
parsing logs. The codes follow sysexits where one fits (75 = EX_TEMPFAIL: try again later).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    #: every selected run is complete (trained now or before)
    COMPLETE = 0
    #: a run failed (an exception, non-finite losses) or a selected job could not run (conflict)
    FAILED = 1
    #: bad input: a one-line error naming the fix (:class:`degan_bench.errors.DeganError`)
    USAGE = 2
    #: incomplete work remains but none could start here (leased by another writer, or waiting for a
    #: dependency that runs elsewhere): retry later
    NOTHING_TO_DO = 3
    #: stopped cleanly with a checkpoint (deadline, --max-minutes, a signal): continue later
    PROGRESS = 75
