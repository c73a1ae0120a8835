"""How many CPU threads torch uses for a run (``performance.cpu_threads``, ``run --cpu-threads``).

torch's default is one intra-op thread per core. The models a CPU trains here are small (the smoke
presets: 32 px, 16-32 channels), so a second thread buys little, and threads that compete with other
processes for the same cores spin-wait in OpenMP: measured on 2 loaded cores, the demo ran 6x slower
with 2 threads than with 1 (``make bench`` measures 1 vs 2 vs auto on the smoke preset). Hence:

1. an explicit count (``--cpu-threads N``, else ``performance.cpu_threads``) is used as given;
2. else ``$OMP_NUM_THREADS`` when set (schedulers and the test suite set it);
3. else, on a CPU device, the cores of this process's CPU set not already busy (cores minus the 1-minute
   load average, rounded), at least 1 and at most :data:`MAX_AUTO_THREADS`;
4. on a GPU, torch's default (the CPU only feeds the device).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

#: small models stop scaling at a few threads; more only adds contention
MAX_AUTO_THREADS = 4


@dataclass(frozen=True)
class ThreadChoice:
    threads: int | None  # None: leave torch's default
    reason: str

    def describe(self) -> str:
        count = self.threads if self.threads is not None else torch.get_num_threads()
        return f"{count} CPU thread{'s' if count != 1 else ''} ({self.reason})"


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # not on every platform
        return 0.0


def choose_cpu_threads(
    requested: int | None, device: torch.device, *, cores: int | None = None, load: float | None = None
) -> ThreadChoice:
    """The thread count for a run on ``device`` (see the module docstring for the order)."""
    if requested is not None:
        return ThreadChoice(int(requested), "set")
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return ThreadChoice(int(env), "OMP_NUM_THREADS")
    if device.type != "cpu":
        return ThreadChoice(None, f"torch's default on {device.type}")
    cores = available_cores() if cores is None else cores
    load = load_average() if load is None else load
    idle = int(max(1.0, cores - load) + 0.5)
    threads = max(1, min(idle, cores, MAX_AUTO_THREADS))
    return ThreadChoice(threads, f"auto: {cores} cores, load {load:.1f}")


def apply_cpu_threads(choice: ThreadChoice) -> None:
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
