"""Charts with matplotlib (Agg canvas; pyplot and its global state are never touched).

:func:`draw_curve` is the one metric-over-training curve: the leaderboard pages (one panel per method of
a column) and the per-run figure (:mod:`degan_bench.results.plots`) both draw it. It shows the mean over
training seeds with a ± sd band, each seed as a thin line, the reported value with its tolerance band,
the x-axis up to the target kimg (optionally logarithmic), and stand-in values (non-standard Inception
weights) in grey, labelled; matplotlib places the legend where it hides least.

SVG output is byte-deterministic (:func:`svg_text`): ``svg.hashsalt`` fixed, no date in the metadata,
text kept as text (``svg.fonttype: none``), so the same data give the same file in every process.
Values are on the display scale of :mod:`degan_bench.results.numbers` (KID ×10³).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: 1012 px is GitHub's Markdown column; a 10.5 in wide figure at 96 px/in fills it
PAGE_WIDTH_IN = 10.5
SVG_RC = {"svg.hashsalt": "degan-bench", "svg.fonttype": "none", "font.size": 10.0}
SEED_COLOUR = "#1f77b4"
PAPER_COLOUR = "#d62728"
STANDIN_COLOUR = "#9a9a9a"


@dataclass
class SeedCurve:
    """One training seed's values over kimg; ``standin``: measured with non-standard weights."""

    label: str
    points: list[tuple[float, float]]
    standin: bool = False


@dataclass
class Reported:
    value: float
    band: float | None = None  # tolerance band half-width, in the value's units
    label: str = "paper"


@dataclass
class CurvePanel:
    title: str
    seeds: list[SeedCurve] = field(default_factory=list)
    reported: Reported | None = None
    target_kimg: float | None = None
    ylabel: str = ""


def new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def svg_text(figure: Figure) -> str:
    """The figure as deterministic SVG text."""
    buffer = io.StringIO()
    with mpl.rc_context(SVG_RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _mean_band(seeds: Sequence[SeedCurve]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """kimg, mean and sd over the seeds at the kimg every seed was evaluated at (two seeds or more)."""
    if len(seeds) < 2:
        return None
    common = set.intersection(*({x for x, _ in s.points} for s in seeds))
    if not common:
        return None
    xs = np.array(sorted(common))
    values = np.array([[dict(s.points)[x] for x in xs] for s in seeds])
    return xs, values.mean(axis=0), values.std(axis=0, ddof=1)


def _plot_seed(ax: Axes, seed: SeedCurve, **style: Any) -> None:
    """One seed's curve in ``style``, with a marker on each point where there are too few for a line."""
    xs, ys = zip(*sorted(seed.points), strict=True)
    ax.plot(xs, ys, marker="o" if len(xs) < 3 else None, ms=3, **style)


def draw_curve(
    ax: Axes,
    seeds: Sequence[SeedCurve],
    *,
    reported: Reported | None = None,
    target_kimg: float | None = None,
    log_x: bool = False,
    title: str = "",
    ylabel: str = "",
    legend: bool = True,
) -> None:
    """The metric over training on ``ax`` (see the module docstring)."""
    standard = [s for s in seeds if not s.standin and s.points]
    standin = [s for s in seeds if s.standin and s.points]
    # the mean and band are over the seeds that went furthest (a stopped run is drawn, not averaged)
    furthest = max((max(x for x, _ in s.points) for s in standard), default=0.0)
    band = _mean_band([s for s in standard if max(x for x, _ in s.points) == furthest])
    thin = 0.8 if band is not None else 1.6
    for i, seed in enumerate(standard):
        _plot_seed(
            ax,
            seed,
            color=SEED_COLOUR,
            lw=thin,
            alpha=0.45 if band is not None else 1.0,
            label=("seeds" if band is not None else seed.label) if i == 0 or band is None else None,
        )
    if band is not None:
        xs, mean, sd = band
        ax.plot(xs, mean, color=SEED_COLOUR, lw=2.0, label="mean over seeds")
        ax.fill_between(xs, mean - sd, mean + sd, color=SEED_COLOUR, alpha=0.18, lw=0, label="± sd")
    for i, seed in enumerate(standin):
        _plot_seed(
            ax,
            seed,
            color=STANDIN_COLOUR,
            lw=1.2,
            ls=":",
            label="stand-in weights (not comparable)" if i == 0 else None,
        )
    if reported is not None:
        ax.axhline(reported.value, color=PAPER_COLOUR, lw=1.2, ls="--", label=reported.label)
        if reported.band:
            ax.axhspan(
                reported.value - reported.band,
                reported.value + reported.band,
                color=PAPER_COLOUR,
                alpha=0.10,
                lw=0,
                label="tolerance",
            )
    if log_x:
        ax.set_xscale("symlog", linthresh=1.0)
    if target_kimg:
        ax.set_xlim(0, target_kimg)
    ax.set_xlabel("kimg")
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, lw=0.4, alpha=0.5)
    if not standard and not standin:
        ax.text(0.5, 0.5, "no values yet", ha="center", va="center", transform=ax.transAxes, color="#666")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8, framealpha=0.85)


def curves_svg(panels: Sequence[CurvePanel], *, columns: int = 3, log_x: bool = False) -> str:
    """Small multiples, one :func:`draw_curve` panel each, as deterministic SVG at page width."""
    columns = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // columns)
    height = 3.1 * rows
    figure = new_figure(PAGE_WIDTH_IN, height, layout=None)  # fixed margins: a layout engine costs 2x
    figure.subplots_adjust(
        left=0.07, right=0.99, bottom=0.55 / height, top=1 - 0.3 / height, wspace=0.3, hspace=0.9 / 3.1
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        draw_curve(
            ax,
            panel.seeds,
            reported=panel.reported,
            target_kimg=panel.target_kimg,
            log_x=log_x,
            title=panel.title,
            ylabel=panel.ylabel,
        )
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    return svg_text(figure)


@dataclass
class Interval:
    """One method's value on the who-wins chart: ``low``/``high`` ends of its bar (None: a dot)."""

    label: str
    mean: float
    low: float | None
    high: float | None
    bold: bool = False


def intervals_svg(
    groups: Sequence[tuple[str, Sequence[Interval]]], *, xlabel: str, lower_is_better: bool
) -> str:
    """Our numbers per column as dots with their 95 % intervals (a forest plot), one panel per column,
    best first; a dot without a bar has fewer seeds than an interval needs."""
    columns = max(1, min(3, len(groups)))
    rows = -(-len(groups) // columns)
    tallest = max((len(items) for _, items in groups), default=1)
    figure = new_figure(PAGE_WIDTH_IN, 0.5 + rows * (0.45 + 0.28 * tallest))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, (title, items) in zip(axes.flat, groups, strict=False):
        ys = np.arange(len(items))[::-1]
        for y, item in zip(ys, items, strict=True):
            colour = SEED_COLOUR if item.low is not None else STANDIN_COLOUR
            if item.low is not None and item.high is not None:
                ax.plot([item.low, item.high], [y, y], color=colour, lw=2.0)
            ax.plot([item.mean], [y], "o", color=colour, ms=6 if item.bold else 4.5)
        ax.set_yticks(ys, [i.label for i in items], fontsize=8)
        for tick, item in zip(ax.get_yticklabels(), items, strict=True):
            tick.set_fontweight("bold" if item.bold else "normal")
        ax.set_ylim(-0.6, tallest - 0.4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"{xlabel} ({'lower' if lower_is_better else 'higher'} is better)", fontsize=9)
        ax.grid(True, axis="x", lw=0.4, alpha=0.5)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    return svg_text(figure)


def heatmap_svg(rows: Sequence[str], columns: Sequence[str], counts: Sequence[Sequence[int]]) -> str:
    """Cells per table (rows) and verdict (columns), each count printed in its square."""
    values = np.array(counts, dtype=float)
    figure = new_figure(PAGE_WIDTH_IN, 0.9 + 0.32 * len(rows))
    ax = figure.subplots()
    shares = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (i, j), count in np.ndenumerate(values):
        if count:
            ax.text(
                j,
                i,
                f"{int(count)}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.6 else "#1f2328",
            )
    ax.set_xticks(range(len(columns)), list(columns), fontsize=8)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return svg_text(figure)
