"""A sweep's deadline: hand out only work that can reach a checkpoint in time, and forward the budget.

``sweep --deadline-minutes N`` means: this process must have exited N minutes after it started (a CI
job's ``timeout-minutes`` minus a margin). Three numbers follow from it:

- ``reserve``: kept free at the end for the runs' last checkpoint write and an evaluation that was
  already under way (evaluation is not cut short); default 10 % of N, at most 15 minutes;
- the budget a run gets: ``--max-minutes`` = time left - reserve, counted by the run from its own start
  (resume and data loading included), after which it starts no new minibatch and checkpoints;
- ``min_start``: a run is started only if its budget covers its start-up (process, model, resume; default
  5 % of N, at most 5 minutes) plus one minibatch (from the cost estimate when there is one). Jobs that
  do not fit are left for the next CI job ("deferred").

At half the reserve before the deadline, runs still going get SIGTERM from the sweep (a backstop for a
run that did not honour its budget, e.g. one that started its final evaluation late).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from degan_bench.errors import DeganError

MAX_RESERVE_S = 15 * 60.0
MAX_START_S = 5 * 60.0


@dataclass
class Deadline:
    end: float  # time.monotonic() at the deadline
    reserve_s: float
    min_start_s: float

    @classmethod
    def from_minutes(
        cls,
        minutes: float,
        *,
        reserve_minutes: float | None = None,
        min_job_minutes: float | None = None,
        now: float | None = None,
    ) -> Deadline:
        if minutes <= 0:
            raise DeganError(
                f"--deadline-minutes {minutes:g} must be positive", fix="e.g. --deadline-minutes 340"
            )
        total = minutes * 60
        reserve = reserve_minutes * 60 if reserve_minutes is not None else min(0.10 * total, MAX_RESERVE_S)
        start = min_job_minutes * 60 if min_job_minutes is not None else min(0.05 * total, MAX_START_S)
        if reserve + start >= total:
            raise DeganError(
                f"--deadline-minutes {minutes:g} leaves no time to train after the reserve "
                f"({reserve / 60:g} min) and a run's start-up ({start / 60:g} min)",
                fix="give a longer deadline, or smaller --deadline-reserve-minutes / --min-job-minutes",
            )
        return cls((time.monotonic() if now is None else now) + total, reserve, start)

    def remaining(self, now: float | None = None) -> float:
        return self.end - (time.monotonic() if now is None else now)

    def budget_s(self, now: float | None = None) -> float:
        """What a run started now may spend (its ``--max-minutes`` x 60)."""
        return self.remaining(now) - self.reserve_s

    def needed_s(self, job: Any) -> float:
        """Start-up plus one minibatch of ``job`` (the minibatch from its estimate, if known)."""
        per_minibatch = 0.0
        seconds = getattr(job, "estimate_seconds", None)
        remaining_kimg = getattr(job, "remaining_kimg", 0.0)
        if seconds and remaining_kimg:
            batch = job.resolved.recipe.training.batch
            per_minibatch = seconds / remaining_kimg * batch / 1000
        return self.min_start_s + per_minibatch

    def can_start(self, job: Any, now: float | None = None) -> bool:
        return self.budget_s(now) >= self.needed_s(job)

    def backstop_due(self, now: float | None = None) -> bool:
        return self.remaining(now) <= self.reserve_s / 2
