"""Timing primitives of the bench: synchronized timers, spreads, interleaved A/B runs, a deadline.

Every timed repetition ends with a device synchronization, so asynchronous CUDA work is charged to the
repetition that queued it. Spreads are the median and the interquartile range (inclusive quartiles
of the repetitions; with fewer than 3 repetitions the quartiles are the extremes).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``fn()`` including the device work it queued."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Spread:
    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def scaled(self, factor: float) -> Spread:
        """The same spread of ``factor / value`` (e.g. seconds per repetition -> images per second);
        the quartiles swap since the map is decreasing."""
        return Spread(factor / self.median, factor / self.q3, factor / self.q1, self.n)

    def to_dict(self, digits: int = 6) -> dict[str, float | int]:
        return {
            "median": round(self.median, digits),
            "q1": round(self.q1, digits),
            "q3": round(self.q3, digits),
            "iqr": round(self.iqr, digits),
            "n": self.n,
        }


def spread(values: list[float]) -> Spread:
    if not values:
        raise ValueError("no repetitions to summarize")
    ordered = sorted(values)
    if len(ordered) < 3:
        return Spread(statistics.median(ordered), ordered[0], ordered[-1], len(ordered))
    q1, _q2, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return Spread(statistics.median(ordered), q1, q3, len(ordered))


class Deadline:
    """Seconds left of a time budget, from construction."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._end = time.monotonic() + self.seconds

    def left(self) -> float:
        return self._end - time.monotonic()

    def used(self) -> float:
        return self.seconds - self.left()


def interleave(
    contestants: dict[str, Callable[[], float]], reps: int, deadline: Deadline | None = None
) -> dict[str, list[float]]:
    """Run one repetition of each contestant in turn (A, B, A, B, ...), ``reps`` rounds; each callable
    returns the seconds its repetition took. A round is only started when the last round's duration
    still fits before ``deadline`` (the first round always runs). Returns the seconds per contestant,
    one entry per completed round, in round order, so ``out[b][i] / out[a][i]`` is a paired ratio."""
    samples: dict[str, list[float]] = {name: [] for name in contestants}
    last_round = 0.0
    for _ in range(reps):
        if deadline is not None and samples[next(iter(samples))] and deadline.left() < last_round:
            break
        start = time.perf_counter()
        for name, rep in contestants.items():
            samples[name].append(rep())
        last_round = time.perf_counter() - start
    return samples


def paired_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-round ratios of two interleaved contestants' seconds."""
    return [a / b for a, b in zip(numerator, denominator, strict=True) if b > 0]
