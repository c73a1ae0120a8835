"""Figures (matplotlib, Agg canvas; pyplot and its global state are never touched).

- :func:`plot_run`: one figure per run -- the headline metric vs kimg (selection points, the last
  number, the best checkpoint), the loss curves from ``stats.jsonl``, and the sample grids over time.

The per-table reported-vs-reproduced chart and the per-cell curves are deterministic SVG
(:mod:`degan_bench.results.svg`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from degan_bench.results.store import StoredRun, is_best_record

GRID_FILE = re.compile(r"^fakes_(\d{6})\.png$")
DPI = 100


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=DPI)
    return out


def headline_protocol(run: StoredRun) -> str | None:
    """The recipe's first protocol, else the protocol of the first metric record."""
    protocols = (run.recipe or {}).get("evaluation", {}).get("protocols") or []
    if protocols:
        return str(protocols[0])
    return next((str(r["protocol"]) for r in run.metrics if r.get("protocol")), None)


def sample_grids(run_path: Path, limit: int) -> list[tuple[int, Path]]:
    """Up to ``limit`` ``fakes_<kimg>.png`` grids spread evenly over training, the newest always included."""
    grids = sorted(
        (int(m.group(1)), p) for p in run_path.glob("fakes_*.png") if (m := GRID_FILE.match(p.name))
    )
    if len(grids) <= limit:
        return grids
    picks = np.linspace(0, len(grids) - 1, limit).round().astype(int)
    return [grids[i] for i in sorted(set(picks.tolist()))]


def plot_run(run: StoredRun, out: Path, *, max_grids: int = 4) -> Path:
    """Metric vs kimg, losses vs kimg and sample grids over time, as one PNG."""
    grids = sample_grids(run.path, max_grids)
    fig = Figure(figsize=(11, 7.5 if grids else 4.2))
    rows = 2 if grids else 1
    spec = fig.add_gridspec(rows, max(len(grids), 2), height_ratios=[1.0, 1.1] if grids else [1.0])
    half = max(len(grids), 2) // 2
    ax_metric = fig.add_subplot(spec[0, :half])
    ax_loss = fig.add_subplot(spec[0, half:])
    protocol = headline_protocol(run)
    ok = [
        r
        for r in run.metrics
        if r.get("protocol") == protocol
        and r.get("status") == "ok"
        and r.get("value") is not None
        and r.get("kimg") is not None
    ]
    curve = sorted((float(r["kimg"]), float(r["value"])) for r in ok if not is_best_record(r))
    best = [(float(r["kimg"]), float(r["value"])) for r in ok if is_best_record(r)]
    if curve:
        ax_metric.plot(*zip(*curve, strict=True), marker="o", ms=3, lw=1.2, label=protocol)
    if best:
        ax_metric.plot(
            *zip(*best, strict=True), ls="none", marker="*", ms=11, label="best (fresh eval seeds)"
        )
    if curve or best:
        ax_metric.legend(fontsize=8)
    else:
        pending = sum(1 for r in run.metrics if r.get("status") == "pending")
        ax_metric.text(
            0.5,
            0.5,
            f"no {protocol or 'metric'} values yet" + (f"\n({pending} pending)" if pending else ""),
            ha="center",
            va="center",
            transform=ax_metric.transAxes,
            fontsize=9,
        )
    ax_metric.set(xlabel="kimg", ylabel=protocol or "metric", title="metric")
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
        ax_loss.legend(fontsize=7, ncol=2)
    ax_loss.set(xlabel="kimg", title="losses")
    for i, (kimg, path) in enumerate(grids):
        ax = fig.add_subplot(spec[1, i])
        with Image.open(path) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        ax.set_title(f"kimg {kimg}", fontsize=8)
        ax.axis("off")
    status = run.status + (f" at {run.kimg:g}/{run.total_kimg:g} kimg" if run.status != "complete" else "")
    fig.suptitle(f"{run.run_id} ({status}, {run.device})", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)
