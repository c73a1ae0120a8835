"""The per-run figure (matplotlib, Agg canvas; pyplot and its global state are never touched): the
headline metric over training drawn by the leaderboards' own curve function
(:func:`degan_bench.results.charts.draw_curve`: the same seeds, stand-in and target-kimg rules as the
pages), the best checkpoint, the loss curves from ``stats.jsonl`` and the sample grids over time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from degan_bench.results import numbers
from degan_bench.results.charts import Reported, draw_curve, new_figure, png_bytes
from degan_bench.results.media import sample_grids, seed_curves
from degan_bench.results.store import StoredRun, is_best_record

DPI = 100


def headline_protocol(run: StoredRun) -> str | None:
    """The recipe's first protocol, else the protocol of the first metric record."""
    protocols = (run.recipe or {}).get("evaluation", {}).get("protocols") or []
    if protocols:
        return str(protocols[0])
    return next((str(r["protocol"]) for r in run.metrics if r.get("protocol")), None)


def run_figure_png(run: StoredRun, *, max_grids: int = 4, reported: Reported | None = None) -> bytes:
    """Metric vs kimg, losses vs kimg and sample grids over time, as PNG bytes."""
    grids = sample_grids(run.path, max_grids)
    figure = new_figure(11, 7.5 if grids else 4.2)
    rows = 2 if grids else 1
    spec = figure.add_gridspec(rows, max(len(grids), 2), height_ratios=[1.0, 1.1] if grids else [1.0])
    half = max(len(grids), 2) // 2
    ax_metric = figure.add_subplot(spec[0, :half])
    ax_loss = figure.add_subplot(spec[0, half:])
    protocol = headline_protocol(run)
    metric = protocol[:3].rstrip("0123456789") if protocol else "fid"
    metric = metric if metric in numbers.SCALE else "fid"
    scale = numbers.SCALE[metric]
    draw_curve(
        ax_metric,
        seed_curves([run], protocol, metric) if protocol else [],
        reported=reported,
        target_kimg=run.total_kimg or None,
        title="metric",
        ylabel=f"{numbers.metric_name(metric)} ({protocol})" if protocol else "metric",
        legend=False,
    )
    best = [
        (float(r["kimg"]), float(r["value"]) * scale)
        for r in run.metrics
        if r.get("protocol") == protocol
        and r.get("status") == "ok"
        and r.get("value") is not None
        and r.get("kimg") is not None
        and is_best_record(r)
    ]
    if best:
        ax_metric.plot(
            *zip(*best, strict=True),
            ls="none",
            marker="*",
            ms=11,
            color="#ff7f0e",
            label="best (fresh eval seeds)",
        )
    pending = sum(1 for r in run.metrics if r.get("status") == "pending")
    if pending:
        ax_metric.set_title(f"metric ({pending} pending)", fontsize=10)
    if ax_metric.get_legend_handles_labels()[0]:
        ax_metric.legend(loc="best", fontsize=8)
    stats = run.stats()
    keys = sorted({k for s in stats for k in s.get("losses", {}) if k.startswith("Loss/")})
    for key in keys:
        points = [
            (float(s["kimg"]), float(s["losses"][key]))
            for s in stats
            if key in s.get("losses", {}) and math.isfinite(float(s["losses"][key]))
        ]
        if points:
            ax_loss.plot(*zip(*points, strict=True), lw=1.0, label=key.removeprefix("Loss/"))
    if keys:
        ax_loss.legend(loc="best", fontsize=7, ncol=2)
    ax_loss.set(xlabel="kimg", title="losses")
    if run.total_kimg:
        ax_loss.set_xlim(0, run.total_kimg)
    for i, (kimg, path) in enumerate(grids):
        ax = figure.add_subplot(spec[1, i])
        with Image.open(path) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        ax.set_title(f"kimg {kimg}", fontsize=8)
        ax.axis("off")
    status = run.status + (f" at {run.kimg:g}/{run.total_kimg:g} kimg" if run.status != "complete" else "")
    figure.suptitle(f"{run.run_id} ({status}, {run.device})", fontsize=10)
    return png_bytes(figure, DPI)


def plot_run(run: StoredRun, out: Path, *, max_grids: int = 4) -> Path:
    """:func:`run_figure_png` written to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(run_figure_png(run, max_grids=max_grids))
    return out
