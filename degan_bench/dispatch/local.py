"""The local queue: sweep jobs as subprocesses, one per GPU (or one at a time on the CPU).

Each job runs ``python -m degan_bench run ... --resume auto`` in its own process session with
``CUDA_VISIBLE_DEVICES`` set to its slot's GPU (empty, with ``--device cpu``, on the CPU slot), its output
appended to ``<log dir>/<run name>.log``. A failed job is recorded and the queue goes on.

Dependencies (``Job.depends_on``): a job starts only once every job it depends on is complete (on disk
already, or finished complete in this queue); the queue hands a free slot to the first such job in
order. A job whose dependency failed, stopped, was skipped or cannot run (a conflict) is skipped with
``blocked_by`` naming it; the jobs that do not depend on it go on.

Signals: the first SIGINT/SIGTERM (Ctrl-C) stops handing out jobs and forwards SIGTERM to every running
job, which checkpoints and exits (``degan-bench sweep`` later resumes it); a second one forwards SIGTERM
again, which makes the runs abort at once. Jobs live in their own sessions, so a terminal's Ctrl-C
reaches them only through this forwarding (never twice).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from degan_bench.core.rundir import utc_now
from degan_bench.dispatch.jobs import Job, refresh_state
from degan_bench.paths import repo_root

POLL_SECONDS = 0.2


@dataclass
class JobResult:
    job: Job
    returncode: int | None  # None: never started (the sweep was interrupted first)
    log: Path
    seconds: float
    slot: str
    blocked_by: str = ""  # the dependency that kept this job from starting

    @property
    def outcome(self) -> str:
        """complete | stopped | failed | skipped (a dependency is not complete) | not started."""
        if self.blocked_by:
            return "skipped"
        if self.returncode is None:
            return "not started"
        if self.returncode != 0:
            return "failed"
        return "complete" if self.job.state == "complete" else "stopped"


def parse_gpus(text: str | None, visible: int) -> list[str | None]:
    """``"0,1"`` -> ["0", "1"]; ``"cpu"`` -> [None] (one CPU slot); None -> every visible GPU, else CPU."""
    if text is None:
        return [str(i) for i in range(visible)] or [None]
    if text.strip().lower() == "cpu":
        return [None]
    slots = [part.strip() for part in text.split(",") if part.strip()]
    if not slots or any(not s.isdigit() for s in slots) or len(set(slots)) != len(slots):
        from degan_bench.errors import DeganError

        raise DeganError(
            f"--gpus {text!r} is not a list of distinct GPU indices", fix="e.g. --gpus 0,1 or --gpus cpu"
        )
    return slots


def child_env(slot: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = slot if slot is not None else ""
    # The child imports this same checkout even when it is not installed (PYTHONPATH=. runs).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), env.get("PYTHONPATH", "")) if p)
    return env


class LocalQueue:
    """Runs jobs over ``slots`` (GPU indices, or ``None`` for the CPU), one job per slot at a time."""

    def __init__(
        self,
        slots: list[str | None],
        log_dir: Path,
        *,
        python: str | None = None,
        evaluate: bool = True,
        on_event: Callable[[str], None] | None = None,
        refresh: Callable[[Job], object] = refresh_state,
    ) -> None:
        self.slots = slots
        self.log_dir = log_dir
        self.python = python
        self.evaluate = evaluate
        self.on_event = on_event or (lambda _message: None)
        self.refresh = refresh  # re-reads a finished job's run directory
        self.stop_requests = 0
        self._running: dict[str, tuple[subprocess.Popen[bytes], Job, Path, float, Any]] = {}

    def _command(self, job: Job, slot: str | None) -> list[str]:
        device = "cuda" if slot is not None else "cpu"
        return job.command(python=self.python, device=device, evaluate=self.evaluate)

    def _start(self, job: Job, slot: str | None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{job.name}.log"
        cmd = self._command(job, slot)
        handle = open(log, "ab")  # noqa: SIM115 - closed when the job ends
        handle.write(f"\n=== {utc_now()} slot {slot or 'cpu'}: {' '.join(cmd)}\n".encode())
        handle.flush()
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=child_env(slot),
                                   start_new_session=True)  # fmt: skip
        self._running[slot or "cpu"] = (process, job, log, time.time(), handle)
        self.on_event(f"start {job.name} on {'GPU ' + slot if slot is not None else 'cpu'} (log {log})")

    def _forward_stop(self) -> None:
        for process, *_ in self._running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def _handle_signal(self, signum: int, _frame: Any) -> None:
        self.stop_requests += 1
        name = signal.Signals(signum).name
        again = " again (runs abort now)" if self.stop_requests > 1 else " (runs checkpoint and stop)"
        self.on_event(
            f"{name}: no new jobs; forwarding SIGTERM to {len(self._running)} running job(s){again}"
        )
        self._forward_stop()

    def _blocker(self, job: Job, queued: set[int]) -> tuple[str, bool]:
        """(name of a dependency that can no longer complete, or "", whether every one is complete)."""
        ready = True
        for dep in getattr(job, "depends_on", []):
            if dep.state == "complete":
                continue
            if id(dep) not in queued:  # failed, stopped, skipped, or never part of this queue
                why = getattr(dep, "note", "") or dep.state
                return f"{dep.name} ({why})", False
            ready = False
        return "", ready

    def run(self, jobs: list[Job]) -> list[JobResult]:
        """Run ``jobs`` over the slots in order, each after its dependencies (see the module docstring);
        returns one result per job, in job order."""
        pending = list(jobs)
        results: dict[int, JobResult] = {}
        order = {id(job): i for i, job in enumerate(jobs)}
        install = threading.current_thread() is threading.main_thread()
        previous = {}
        if install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handle_signal)
        try:
            while pending or self._running:
                queued = {id(j) for j in pending} | {id(entry[1]) for entry in self._running.values()}
                for job in list(pending):  # skip what a failed dependency blocks (transitively, in order)
                    blocker, _ = self._blocker(job, queued)
                    if blocker:
                        pending.remove(job)
                        queued.discard(id(job))
                        log = self.log_dir / f"{job.name}.log"
                        results[order[id(job)]] = JobResult(job, None, log, 0.0, "", blocked_by=blocker)
                        self.on_event(f"skipped {job.name}: dependency {blocker} is not complete")
                if not self.stop_requests:
                    for slot in self.slots:
                        if (slot or "cpu") in self._running:
                            continue
                        ready = next((j for j in pending if self._blocker(j, queued)[1]), None)
                        if ready is not None:
                            pending.remove(ready)
                            self._start(ready, slot)
                for key, (process, job, log, started, handle) in list(self._running.items()):
                    code = process.poll()
                    if code is None:
                        continue
                    handle.close()
                    del self._running[key]
                    self.refresh(job)
                    result = JobResult(job, code, log, time.time() - started, key)
                    if result.outcome != "complete" and not getattr(job, "note", ""):
                        job.note = f"{result.outcome}, exit {code}"  # shown by the jobs it blocks
                    results[order[id(job)]] = result
                    self.on_event(f"{result.outcome} {job.name} (exit {code}, {result.seconds:.0f} s)")
                if self.stop_requests and not self._running:
                    break
                time.sleep(POLL_SECONDS)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for job in pending:
            results[order[id(job)]] = JobResult(job, None, self.log_dir / f"{job.name}.log", 0.0, "")
        return [results[i] for i in sorted(results)]
