"""The nightly GPU check: did the short runs train, stay finite, keep their speed and their numbers?

``degan-bench runs check RUNS --reference FILE`` reads every run under ``RUNS`` and reports a problem
for:

- a run that is not complete (failed, stopped, or never finished);
- a non-finite loss in any tick of ``stats.jsonl``;
- a median sec/kimg (ticks after the first) slower than the reference for the same cell and GPU by
  more than ``speed`` (default 15 %);
- a metric worse than the reference by more than ``metric_rel`` x reference + ``metric_abs`` (the
  direction from the record's ``lower_is_better``).

The reference is JSON: ``{"cells": {"<method>/<dataset>/<arch>/<preset>": {"<GPU name>":
{"sec_per_kimg": s, "metrics": {"<protocol>": value}}}}}``. A cell or GPU without a reference is
reported as new, not as a problem; ``--write-reference OUT`` writes the measured values in the same
format (the nightly workflow keeps the last good one on the runner volume; maintainers may commit it).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from degan_bench.results.store import StoredRun, scan_runs


@dataclass
class Tolerance:
    speed: float = 0.15
    metric_rel: float = 0.10
    metric_abs: float = 1.0


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=lambda: {"cells": {}})


def cell_key(run: StoredRun) -> str:
    return f"{run.method}/{run.dataset}/{run.arch}/{run.preset}"


def median_sec_per_kimg(run: StoredRun) -> float | None:
    values = [
        float(t["sec_per_kimg"]) for t in run.stats() if t.get("tick", 0) >= 1 and t.get("sec_per_kimg")
    ]
    return statistics.median(values) if values else None


def non_finite(run: StoredRun) -> list[str]:
    bad = []
    for tick in run.stats():
        for name, value in (tick.get("losses") or {}).items():
            if isinstance(value, (int, float)) and not math.isfinite(value):
                bad.append(f"{name}={value} at kimg {tick.get('kimg')}")
    return bad


def final_metrics(run: StoredRun) -> dict[str, tuple[float, bool]]:
    """protocol -> (value, lower is better) of the newest ok record of each protocol."""
    found: dict[str, tuple[float, bool]] = {}
    for record in run.metrics:
        if record.get("status") == "ok" and record.get("value") is not None:
            found[str(record.get("protocol"))] = (
                float(record["value"]),
                bool(record.get("lower_is_better", True)),
            )
    return found


def check_runs(root: Path, reference: dict[str, Any], tolerance: Tolerance | None = None) -> CheckReport:
    tol = tolerance or Tolerance()
    report = CheckReport()
    runs = scan_runs([root])
    if not runs:
        report.problems.append(f"no runs under {root}")
    for run in runs:
        name = run.path.name
        if run.status != "complete":
            report.problems.append(
                f"{name}: {run.status} ({run.problem or f'at {run.kimg:g}/{run.total_kimg:g} kimg'})"
            )
        for bad in non_finite(run):
            report.problems.append(f"{name}: non-finite loss {bad}")
        if run.info is None:
            continue
        key, gpu = cell_key(run), run.device
        speed = median_sec_per_kimg(run)
        metrics = final_metrics(run)
        report.measured["cells"].setdefault(key, {})[gpu] = {
            "sec_per_kimg": speed,
            "metrics": {p: v for p, (v, _) in metrics.items()},
        }
        ref = reference.get("cells", {}).get(key, {}).get(gpu)
        if ref is None:
            report.notes.append(f"{name}: no reference for {key} on {gpu} yet (measured {speed} sec/kimg)")
            continue
        if speed is not None and ref.get("sec_per_kimg") and speed > ref["sec_per_kimg"] * (1 + tol.speed):
            report.problems.append(
                f"{name}: {speed:.3g} sec/kimg is slower than the reference {ref['sec_per_kimg']:.3g} by "
                f"more than {tol.speed:.0%}"
            )
        for protocol, (value, lower) in metrics.items():
            expected = ref.get("metrics", {}).get(protocol)
            if expected is None:
                continue
            margin = tol.metric_rel * abs(expected) + tol.metric_abs
            worse = value > expected + margin if lower else value < expected - margin
            if worse:
                report.problems.append(
                    f"{name}: {protocol} {value:.4g} is worse than the reference {expected:.4g} "
                    f"(margin {margin:.3g})"
                )
    return report


def load_reference(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {"cells": {}}
    return json.loads(path.read_text(encoding="utf-8"))
