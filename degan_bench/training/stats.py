"""Per-tick statistics: the status line, ``stats.jsonl`` and (optional) TensorBoard."""

from __future__ import annotations

import os
import resource
import sys
from collections import defaultdict
from typing import Any

import torch

from degan_bench.core.distributed import gather_objects

# Short names for the status line; everything is in stats.jsonl under its full name.
STATUS_KEYS = {
    "Loss/G/loss": "G",
    "Loss/D/loss": "D",
    "Loss/Dreg/r1_penalty": "R1",
    "Loss/Greg/pl_penalty": "PL",
    "Scores/real": "D(x)",
    "Scores/fake_d": "D(G)",
}


class StatsCollector:
    """Averages scalars reported during a tick. Values may be 0-d tensors: they are summed where they
    live and read back once per tick, so reporting does not stall the GPU every step."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] += 1

    def means(self) -> dict[str, float]:
        """Means over every value reported since the last reset by every process (a collective under
        torch.distributed: all processes call it at the same tick), so ``stats.jsonl`` does not depend on
        how the chunks of a minibatch are spread over processes."""
        local = {k: (float(self._sums[k]), self._counts[k]) for k in self._sums}
        totals: dict[str, list[float]] = {}
        for part in gather_objects(local):
            for key, (value, count) in part.items():  # type: ignore[attr-defined]
                total = totals.setdefault(key, [0.0, 0])
                total[0] += value
                total[1] += count
        return {k: totals[k][0] / totals[k][1] for k in sorted(totals)}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def state_dict(self) -> dict[str, Any]:
        """The running sums of an unfinished tick (a stop mid-tick), so the resumed tick reports the
        same means as a straight run."""
        return {
            k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v, self._counts[k])
            for k, v in self._sums.items()
        }

    @staticmethod
    def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
        """One state holding the sums and counts of several (e.g. every process of a checkpoint)."""
        merged: dict[str, Any] = {}
        for state in states:
            for key, (value, count) in state.items():
                value = float(value)
                old_value, old_count = merged.get(key, (0.0, 0))
                merged[key] = (old_value + value, old_count + int(count))
        return merged

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        self.reset()
        for key, (value, count) in state.items():
            self._sums[key] = value.to(device) if isinstance(value, torch.Tensor) and device else value
            self._counts[key] = int(count)


def cpu_memory_gb() -> float:
    """Resident memory of this process (current where /proc exists, else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**30 if sys.platform == "darwin" else 2**20)


def gpu_peak_memory_gb(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    value = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return value


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s"


def status_line(record: dict[str, Any]) -> str:
    parts = [
        f"tick {record['tick']:<5d}",
        f"kimg {record['kimg']:<9.1f}",
        f"time {format_duration(record['total_seconds']):<12s}",
        f"sec/tick {record['sec_per_tick']:<7.1f}",
        f"sec/kimg {record['sec_per_kimg']:<7.2f}",
        f"img/s {record['img_per_sec']:<7.1f}",
        f"maint {record['maintenance_seconds']:<5.1f}",
        f"gpumem {record['gpu_mem_gb']:<5.2f}",
        f"cpumem {record['cpu_mem_gb']:<5.2f}",
    ]
    for key, value in sorted(record.get("method", {}).items()):
        parts.append(f"{key} {value:.3f}")
    for key, short in STATUS_KEYS.items():
        if key in record.get("losses", {}):
            parts.append(f"{short} {record['losses'][key]:.3f}")
    return "  ".join(parts)


class TensorBoardWriter:
    """Writes tick scalars to TensorBoard when the ``tensorboard`` package is installed; else nothing."""

    def __init__(self, log_dir: str, enabled: bool = True) -> None:
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self._writer = SummaryWriter(log_dir)

    @property
    def active(self) -> bool:
        return self._writer is not None

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        step = int(record["kimg"] * 1000)
        for key, value in record.get("losses", {}).items():
            self._writer.add_scalar(key, value, step)
        for key, value in record.get("method", {}).items():
            self._writer.add_scalar(f"Method/{key}", value, step)
        for key in ("sec_per_kimg", "img_per_sec", "gpu_mem_gb", "cpu_mem_gb"):
            self._writer.add_scalar(f"Timing/{key}", record[key], step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
