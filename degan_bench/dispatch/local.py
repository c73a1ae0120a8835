"""The local queue: sweep jobs as subprocesses, packed by GPU count on this machine's devices.

Each job runs ``python -m degan_bench run ... --resume auto`` in its own process session with
``CUDA_VISIBLE_DEVICES`` set to the devices it was given (empty, with ``--device cpu``, on the CPU
slot), its output appended to ``<log dir>/<run name>.log``. A failed job is recorded and the queue goes
on. On the CPU there is one slot and jobs run one at a time.

Packing: a job needing N GPUs starts only on N free devices (``--gpus 0,1,2,3`` lists them; never more
than one job per device). Ready jobs (every dependency complete) are considered largest first, then
in plan order. When the first of them does not fit, it holds a *reservation* so that a stream of small
jobs cannot starve it (EASY backfilling): a smaller job may start beside it only if it is expected to
end before the devices the big job waits for are free, or if it uses only devices the big job will not
need then. Expectations come from the cost estimates (``Job.estimate_seconds``); where one is unknown,
nothing is started beside a waiting job (it waits for devices to drain instead of starving).

Dependencies (``Job.depends_on``): a job starts only once every job it depends on is complete; a job
whose dependency failed, stopped, was skipped, is leased elsewhere or is a conflict is skipped with
``blocked_by`` naming it.

Leases: a job whose run directory is leased by a live process elsewhere is not started (outcome
``leased``); a run that finds the lease taken at its own start exits 3, also ``leased``.

Deadline (:class:`~degan_bench.dispatch.deadline.Deadline`): jobs get ``--max-minutes`` with the budget
left; a job that cannot reach a checkpoint in time is not started (``deferred``).

Signals: the first SIGINT/SIGTERM stops handing out jobs and forwards one SIGTERM to every running
job, which checkpoints and exits. A second signal (a CI cancel sends SIGINT and then SIGTERM a few
seconds later) is the same request and forwards nothing. A third aborts: the running jobs are killed
(their last checkpoint stays; the lease of a dead process on this host is taken over at once). Jobs
live in their own sessions, so a terminal's Ctrl-C reaches them only through this forwarding.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from degan_bench.core.exitcodes import ExitCode
from degan_bench.core.lease import live_lease
from degan_bench.core.rundir import utc_now
from degan_bench.dispatch.deadline import Deadline
from degan_bench.dispatch.jobs import Job, refresh_state
from degan_bench.errors import DeganError
from degan_bench.paths import repo_root

POLL_SECONDS = 0.2
#: exit code of a sweep aborted by a third signal (the shell's convention for SIGINT)
ABORTED = 130


@dataclass
class JobResult:
    job: Job
    returncode: int | None  # None: never started
    log: Path
    seconds: float
    slot: str  # the devices it ran on ("0,1"), "cpu", or "" when it did not start
    blocked_by: str = ""  # the dependency that kept this job from starting
    outcome: str = ""  # complete | stopped | failed | aborted | leased | skipped | deferred | not started

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = "skipped" if self.blocked_by else "not started"


def parse_gpus(text: str | None, visible: int) -> list[str | None]:
    """``"0,1"`` -> ["0", "1"]; ``"cpu"`` -> [None] (one CPU slot); None -> every visible GPU, else CPU."""
    if text is None:
        return [str(i) for i in range(visible)] or [None]
    if text.strip().lower() == "cpu":
        return [None]
    slots = [part.strip() for part in text.split(",") if part.strip()]
    if not slots or any(not s.isdigit() for s in slots) or len(set(slots)) != len(slots):
        raise DeganError(
            f"--gpus {text!r} is not a list of distinct GPU indices", fix="e.g. --gpus 0,1 or --gpus cpu"
        )
    return slots


def child_env(devices: list[str | None] | str | None) -> dict[str, str]:
    env = dict(os.environ)
    if isinstance(devices, list):
        devices = ",".join(d for d in devices if d is not None)
    env["CUDA_VISIBLE_DEVICES"] = devices or ""
    # The child imports this same checkout even when it is not installed (PYTHONPATH=. runs).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), env.get("PYTHONPATH", "")) if p)
    return env


def needs(job: Any, on_cpu: bool) -> int:
    """Devices a job occupies: its GPU count, or the one CPU slot."""
    return 1 if on_cpu else max(int(getattr(job, "gpus", 1) or 1), 1)


def check_fits(jobs: list[Job], slots: list[str | None]) -> None:
    """A one-line error for jobs that need more GPUs than the queue has (they could never start)."""
    if slots == [None]:
        return
    too_big = [job for job in jobs if needs(job, False) > len(slots)]
    if too_big:
        worst = max(too_big, key=lambda j: needs(j, False))
        raise DeganError(
            f"{len(too_big)} job(s) need more GPUs than --gpus gives ({len(slots)}), e.g. {worst.name} needs "
            f"{needs(worst, False)} (its recipe's resources.gpus)",
            fix=f"add --max-gpus-per-job {len(slots)} (same recipe hash, fewer processes), or run them on a "
            "bigger machine (degan-bench plan routes them by GPU count)",
        )


@dataclass
class _Running:
    process: subprocess.Popen[bytes]
    job: Any
    log: Path
    started: float  # time.time()
    started_mono: float
    devices: list[str | None]
    handle: Any
    signalled: bool = False

    @property
    def expected_end(self) -> float | None:
        seconds = getattr(self.job, "estimate_seconds", None)
        return None if seconds is None else self.started_mono + seconds


@dataclass
class LocalQueue:
    """Runs jobs over ``slots`` (GPU indices, or ``[None]`` for the CPU); see the module docstring."""

    slots: list[str | None]
    log_dir: Path
    python: str | None = None
    evaluate: bool = True
    on_event: Callable[[str], None] = field(default=lambda _message: None)
    refresh: Callable[[Any], object] = refresh_state  # re-reads a finished job's run directory
    deadline: Deadline | None = None
    check_leases: bool = True
    stop_requests: int = 0  # signals received
    stop_reason: str = ""
    _running: list[_Running] = field(default_factory=list)
    _handling_signals: bool = False

    @property
    def on_cpu(self) -> bool:
        return self.slots == [None]

    # -- starting -------------------------------------------------------------------------------
    def _command(self, job: Any, max_minutes: float | None) -> list[str]:
        device = "cpu" if self.on_cpu else "cuda"
        return job.command(python=self.python, device=device, evaluate=self.evaluate, max_minutes=max_minutes)

    def _start(self, job: Any, devices: list[str | None], max_minutes: float | None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{job.name}.log"
        cmd = self._command(job, max_minutes)
        where = "cpu" if self.on_cpu else ",".join(str(d) for d in devices)
        handle = open(log, "ab")  # noqa: SIM115 - closed when the job ends
        handle.write(f"\n=== {utc_now()} devices {where}: {' '.join(cmd)}\n".encode())
        handle.flush()
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=child_env(devices),
                                   start_new_session=True)  # fmt: skip
        self._running.append(_Running(process, job, log, time.time(), time.monotonic(), devices, handle))
        label = "cpu" if self.on_cpu else f"GPU {where}"
        budget = f", --max-minutes {max_minutes:.2f}" if max_minutes is not None else ""
        self.on_event(f"start {job.name} on {label} (log {log}{budget})")

    def _free(self) -> list[str | None]:
        busy = {d for r in self._running for d in r.devices}
        return [slot for slot in self.slots if slot not in busy]

    def _shadow(self, head_need: int, now: float) -> tuple[float | None, int]:
        """When ``head_need`` devices will be free (None: unknown) and how many beyond that then."""
        free = len(self._free())
        ends = sorted(
            ((r.expected_end, len(r.devices)) for r in self._running),
            key=lambda item: float("inf") if item[0] is None else item[0],
        )
        for end, count in ends:
            if end is None:
                return None, 0
            free += count
            if free >= head_need:
                return max(end, now), free - head_need
        return None, 0

    def _fill(self, ready: list[Any], order: dict[int, int]) -> list[Any]:
        """Start what fits (largest first, EASY backfilling around a waiting job); returns the started."""
        started = []
        now = time.monotonic()
        head = None
        shadow, extra = None, 0
        for job in sorted(ready, key=lambda j: (-needs(j, self.on_cpu), order[id(j)])):
            need = needs(job, self.on_cpu)
            free = self._free()
            if need > len(free):
                if head is None:
                    head = job
                    shadow, extra = self._shadow(need, now)
                continue
            if head is not None:
                seconds = getattr(job, "estimate_seconds", None)
                ends_in_time = shadow is not None and seconds is not None and now + seconds <= shadow
                if not ends_in_time and need > extra:
                    continue
                if not ends_in_time:
                    extra -= need
            max_minutes = None
            if self.deadline is not None:
                if not self.deadline.can_start(job, now):
                    continue
                max_minutes = self.deadline.budget_s(now) / 60
            self._start(job, free[:need], max_minutes)
            started.append(job)
        return started

    # -- stopping -------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """No new jobs; one SIGTERM to each running job that has not had one."""
        if not self.stop_reason:
            self.stop_reason = reason
        for run in self._running:
            if not run.signalled and run.process.poll() is None:
                run.process.send_signal(signal.SIGTERM)
                run.signalled = True

    def _abort(self) -> None:
        for run in self._running:
            if run.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)

    def _handle_signal(self, signum: int, _frame: Any) -> None:
        self.stop_requests += 1
        name = signal.Signals(signum).name
        running = len(self._running)
        if self.stop_requests == 1:
            self.on_event(
                f"{name}: no new jobs; SIGTERM to {running} running job(s) (they checkpoint and stop)"
            )
            self.request_stop(name)
        elif self.stop_requests == 2:
            self.on_event(
                f"{name}: the same stop request; {running} job(s) still checkpointing (a third signal aborts)"
            )
        else:
            self.on_event(f"{name}: third signal, aborting: killing {running} running job(s)")
            self.stop_reason = "aborted"
            self._abort()
            if not running:  # the jobs are gone: abort what the command is still doing
                raise KeyboardInterrupt(f"aborted by a third signal ({name})")

    @contextlib.contextmanager
    def signal_scope(self, *, until_exit_after_stop: bool = False) -> Iterator[None]:
        """The queue's signal handling (a first signal stops, the second is the same request, the third
        aborts), held for as long as the caller needs it. ``degan-bench sweep`` holds it over the whole
        command and, once a signal stopped it, ignores stop signals until the process exits
        (``until_exit_after_stop``): a CI cancel's second signal may arrive after the jobs stopped,
        while the leaderboards are written or the interpreter exits, and must never kill the sweep."""
        if self._handling_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._handling_signals = True
        try:
            yield
        finally:
            keep = until_exit_after_stop and self.stop_requests
            for sig, handler in previous.items():
                # After a signalled stop the command only exits: ignore further stop signals, which
                # would otherwise kill the interpreter while it shuts down (it restores the default
                # handlers then, but keeps SIG_IGN).
                signal.signal(sig, signal.SIG_IGN if keep else handler)
            self._handling_signals = False

    # -- the loop -------------------------------------------------------------------------------
    def _blocker(self, job: Any, queued: set[int]) -> tuple[str, bool]:
        """(name of a dependency that can no longer complete, or "", whether every one is complete)."""
        ready = True
        for dep in getattr(job, "depends_on", []):
            if dep.state == "complete":
                continue
            if id(dep) not in queued:  # failed, stopped, skipped, leased, or never part of this queue
                why = getattr(dep, "note", "") or dep.state
                return f"{dep.name} ({why})", False
            ready = False
        return "", ready

    def _finish(self, run: _Running, code: int) -> JobResult:
        run.handle.close()
        job = run.job
        self.refresh(job)
        if code == 0:
            outcome = "complete" if job.state == "complete" else "stopped"
        elif code == ExitCode.PROGRESS:
            outcome = "stopped"
        elif code == ExitCode.NOTHING_TO_DO:
            outcome = "leased"
        elif self.stop_reason == "aborted" and code < 0:
            outcome = "aborted"
        elif run.signalled and code in (-signal.SIGTERM, -signal.SIGINT):
            outcome = "stopped"  # stopped during its start-up, before it could catch the signal
        else:
            outcome = "failed"
        where = "cpu" if self.on_cpu else ",".join(str(d) for d in run.devices)
        result = JobResult(job, code, run.log, time.time() - run.started, where, outcome=outcome)
        if outcome != "complete" and not getattr(job, "note", ""):
            job.note = f"{outcome}, exit {code}"  # shown by the jobs it blocks
        self.on_event(f"{outcome} {job.name} (exit {code}, {result.seconds:.0f} s)")
        return result

    def run(self, jobs: list[Any]) -> list[JobResult]:
        """Run ``jobs`` (see the module docstring); returns one result per job, in job order."""
        pending = list(jobs)
        results: dict[int, JobResult] = {}
        order = {id(job): i for i, job in enumerate(jobs)}
        with self.signal_scope():
            while pending or self._running:
                queued = {id(j) for j in pending} | {id(r.job) for r in self._running}
                for job in list(pending):  # skip what a failed dependency blocks (transitively, in order)
                    blocker, _ = self._blocker(job, queued)
                    if blocker:
                        pending.remove(job)
                        queued.discard(id(job))
                        log = self.log_dir / f"{job.name}.log"
                        results[order[id(job)]] = JobResult(job, None, log, 0.0, "", blocked_by=blocker)
                        self.on_event(f"skipped {job.name}: dependency {blocker} is not complete")
                if self.deadline is not None and not self.stop_reason and self.deadline.backstop_due():
                    self.on_event("deadline: stopping the running job(s)")
                    self.request_stop("deadline")
                started: list[Any] = []
                if not self.stop_reason:
                    ready = [j for j in pending if self._blocker(j, queued)[1]]
                    for job in list(ready):
                        run_dir = getattr(job, "run_dir", None)
                        holder = live_lease(run_dir) if self.check_leases and run_dir else None
                        if holder is not None:
                            pending.remove(job)
                            ready.remove(job)
                            job.state, job.lease = "leased", holder
                            job.note = f"leased by {holder.describe()}"
                            log = self.log_dir / f"{job.name}.log"
                            results[order[id(job)]] = JobResult(job, None, log, 0.0, "", outcome="leased")
                            self.on_event(f"leased {job.name}: {job.note}; not started here")
                    started = self._fill(ready, order)
                    for job in started:
                        pending.remove(job)
                finished = 0
                for run in list(self._running):
                    code = run.process.poll()
                    if code is None:
                        continue
                    self._running.remove(run)
                    results[order[id(run.job)]] = self._finish(run, code)
                    finished += 1
                if not self._running and (self.stop_reason or not (started or finished)):
                    break  # nothing can change any more
                time.sleep(POLL_SECONDS)
        queued = {id(j) for j in pending}
        for job in pending:
            log = self.log_dir / f"{job.name}.log"
            blocker, _ = self._blocker(job, queued)
            if blocker:
                results[order[id(job)]] = JobResult(job, None, log, 0.0, "", blocked_by=blocker)
                continue
            deferred = self.deadline is not None and not self.stop_reason
            results[order[id(job)]] = JobResult(
                job, None, log, 0.0, "", outcome="deferred" if deferred else ""
            )
            if deferred:
                self.on_event(f"deferred {job.name}: it cannot reach a checkpoint before the deadline")
        return [results[i] for i in sorted(results)]


def sweep_exit_code(results: list[JobResult], jobs: list[Any], aborted: bool = False) -> int:
    """The documented exit code of a sweep over ``jobs`` (see :class:`ExitCode`)."""
    if aborted:
        return ABORTED
    outcomes = {r.outcome for r in results}
    if "failed" in outcomes or any(job.state in ("conflict", "failed") for job in jobs):
        return ExitCode.FAILED
    if all(job.state == "complete" for job in jobs):
        return ExitCode.COMPLETE
    if outcomes & {"complete", "stopped"}:
        return ExitCode.PROGRESS
    return ExitCode.NOTHING_TO_DO
