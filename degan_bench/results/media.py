"""Pictures of a leaderboard page, built in memory and stored once under the pages' ``media/`` folder.

- **Curves** (per column and protocol): one :func:`~degan_bench.results.charts.draw_curve` panel per
  method with runs (seeds, mean ± sd, the paper's value and tolerance band where comparable).
- **Who wins** (per protocol): our means with 95 % intervals per column, best first.
- **Sample panel** (per column): a row of real images, then one row per method, each the first row of
  the method's ``fakes_<kimg>.png`` grid. Every run draws its grids from the same fixed latents
  (:data:`degan_bench.training.grids.GRID_SEED`), so the rows show the same latents at the same kimg
  (the latest kimg every method has reached); for the 100-shot sets each fake is followed by its
  nearest training image and the row is labelled with precision / recall
  (:mod:`degan_bench.results.memorisation`), which exposes memorisation.

Names are stable (table, column, protocol, preset): rebuilding a page overwrites its pictures, and a
sample panel that several tables share is one file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from degan_bench.results import numbers
from degan_bench.results.charts import (
    PAGE_WIDTH_IN,
    CurvePanel,
    Interval,
    Reported,
    SeedCurve,
    curves_svg,
    intervals_svg,
    new_figure,
    png_bytes,
)
from degan_bench.results.store import StoredRun, is_best_record
from degan_bench.results.tables import TableResult

GRID_FILE = re.compile(r"^fakes_(\d{6})\.png$")
#: most samples per row of a sample panel
PANEL_COLUMNS = 8
#: tile size (px) in a sample panel
TILE = 96


@dataclass
class Picture:
    """One file under ``media/``: ``name`` (relative to it), SVG text or PNG bytes, alt text."""

    name: str
    data: str | bytes
    alt: str


def slug(*parts: object) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", str(p).lower()).strip("-") for p in parts if str(p))


def sample_grids(run_path: Path, limit: int | None = None) -> list[tuple[int, Path]]:
    """``fakes_<kimg>.png`` grids of a run by kimg; with ``limit``, that many spread evenly over training
    (the newest always included)."""
    grids = sorted(
        (int(m.group(1)), p) for p in run_path.glob("fakes_*.png") if (m := GRID_FILE.match(p.name))
    )
    if limit is None or len(grids) <= limit:
        return grids
    picks = np.linspace(0, len(grids) - 1, limit).round().astype(int)
    return [grids[i] for i in sorted(set(picks.tolist()))]


def curve_points(run: StoredRun, protocol: str, *, standard: bool = True) -> list[tuple[float, float]]:
    """(kimg, value) of the run's ``ok`` records of ``protocol`` over training, with the standard weights
    (``standard``) or stand-in ones; the ``best`` re-evaluation is not a point of the curve."""
    points = {
        float(r["kimg"]): float(r["value"])
        for r in run.metrics
        if r.get("protocol") == protocol
        and r.get("status") == "ok"
        and bool(r.get("standard_weights")) == standard
        and r.get("value") is not None
        and r.get("kimg") is not None
        and not is_best_record(r)
    }
    return sorted(points.items())


def seed_curves(runs: list[StoredRun], protocol: str, metric: str) -> list[SeedCurve]:
    scale = numbers.SCALE.get(metric, 1.0)
    curves = []
    for run in runs:
        label = f"seed {run.seed}" if run.seed is not None else run.run_id
        for standard in (True, False):
            points = [(x, y * scale) for x, y in curve_points(run, protocol, standard=standard)]
            if points:
                curves.append(SeedCurve(label, points, standin=not standard))
    return curves


def _finite(value: Any) -> bool:
    return numbers.present(value)


def comparable(cell: pd.Series | dict[str, Any]) -> bool:
    """Whether the cell's reported number was made under the protocol of ours (drawn beside ours)."""
    return _finite(cell["reported"]) and cell["reported_protocol"] == cell["our_protocol"]


def _cell_runs(cell: pd.Series, by_id: dict[str, StoredRun]) -> list[StoredRun]:
    runs = [by_id[i] for i in cell["run_ids"] if i in by_id and by_id[i].info is not None]
    return sorted(runs, key=lambda r: (r.status != "complete", r.seed if r.seed is not None else 0, r.run_id))


def curve_pictures(result: TableResult, runs: list[StoredRun]) -> dict[tuple[str, str], Picture]:
    """(protocol, dataset) -> small multiples of our curves, one panel per row with runs."""
    by_id = {run.run_id: run for run in runs}
    cells = result.cells[~result.cells["variant"].astype(bool)]
    pictures = {}
    for (protocol, dataset), group in cells.groupby(["protocol", "dataset"], sort=False):
        panels = []
        for _, cell in group.iterrows():
            cell_runs = _cell_runs(cell, by_id)
            if not cell_runs:
                continue
            metric = str(cell["metric"])
            reported = None
            if comparable(cell):
                band = (
                    cell["band"] if _finite(cell["band"]) else result.tolerance.band(metric, cell["reported"])
                )
                value = float(numbers.scaled(metric, cell["reported"]) or 0.0)
                reported = Reported(
                    value,
                    float(numbers.scaled(metric, band) or 0.0),
                    f"paper {numbers.value(metric, cell['reported'])}",
                )
            title = str(cell["row"]) + (
                "" if reported or not _finite(cell["reported"]) else " (paper value: other protocol)"
            )
            panels.append(
                CurvePanel(
                    title=title,
                    seeds=seed_curves(cell_runs, str(cell["our_protocol"]), metric),
                    reported=reported,
                    target_kimg=max(r.total_kimg for r in cell_runs) or None,
                    ylabel=f"{numbers.metric_name(metric)} ({cell['our_protocol']})",
                )
            )
        if panels:
            name = f"{slug(result.table.name, dataset, protocol, result.preset)}-curves.svg"
            alt = f"{group['column'].iloc[0]}: {protocol} over training"
            pictures[(str(protocol), str(dataset))] = Picture(name, curves_svg(panels), alt)
    return pictures


def intervals_pictures(result: TableResult, ranking: pd.DataFrame) -> dict[str, Picture]:
    """protocol -> our means with 95 % intervals per column (best first)."""
    pictures = {}
    for protocol, block in ranking.groupby("protocol", sort=False):
        metric = str(block["metric"].iloc[0])
        groups = []
        for _column, entries in block.groupby("column", sort=False):
            items = [
                Interval(
                    label=f"{e['row']} (n={int(e['n'])})",
                    mean=float(numbers.scaled(metric, e["mean"]) or 0.0),
                    low=numbers.scaled(metric, e["ci_low"]),
                    high=numbers.scaled(metric, e["ci_high"]),
                    bold=bool(e["bold"]),
                )
                for _, e in entries.sort_values("rank").iterrows()
            ]
            groups.append((f"{_column} · {entries['our_protocol'].iloc[0]}", items))
        svg = intervals_svg(
            groups, xlabel=numbers.metric_name(metric), lower_is_better=numbers.LOWER_IS_BETTER[metric]
        )
        name = f"{slug(result.table.name, protocol, result.preset)}-who-wins.svg"
        pictures[str(protocol)] = Picture(name, svg, f"who wins: our {protocol} numbers with 95 % intervals")
    return pictures


# -- sample panels ---------------------------------------------------------------------------------------
def _grid_shape(run: StoredRun) -> tuple[int, int]:
    size = (run.recipe or {}).get("training", {}).get("grid_size") or (8, 4)
    return int(size[0]), int(size[1])


def grid_tiles(path: Path, grid: tuple[int, int], count: int) -> list[Image.Image]:
    """The first ``count`` tiles (row-major) of a sample grid of ``grid`` = (columns, rows)."""
    with Image.open(path) as image:
        picture = image.convert("RGB")
    cols, rows = grid
    width, height = picture.width // cols, picture.height // rows
    tiles = []
    for i in range(min(count, cols * rows)):
        r, c = divmod(i, cols)
        tiles.append(picture.crop((c * width, r * height, (c + 1) * width, (r + 1) * height)))
    return tiles


def _strip(tiles: list[Image.Image], size: int = TILE) -> np.ndarray:
    resized = [np.asarray(t.resize((size, size), Image.Resampling.LANCZOS)) for t in tiles]
    gap = np.full((size, 2, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for tile in resized:
        parts += [tile, gap]
    return np.concatenate(parts[:-1], axis=1) if parts else np.zeros((size, size, 3), dtype=np.uint8)


@dataclass
class PanelRow:
    label: str
    tiles: list[Image.Image]


def panel_png(rows: list[PanelRow], title: str) -> bytes:
    """Rows of tiles with their labels on the left, at page width."""
    height = 0.35 + 1.0 * len(rows)
    figure = new_figure(PAGE_WIDTH_IN, height)
    axes = figure.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows, strict=True):
        ax.imshow(_strip(row.tiles), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(row.label, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(title, fontsize=10)
    return png_bytes(figure, dpi=96)


def _panel_runs(group: pd.DataFrame, by_id: dict[str, StoredRun]) -> list[tuple[str, StoredRun]]:
    chosen = []
    for _, cell in group.iterrows():
        runs = [r for r in _cell_runs(cell, by_id) if sample_grids(r.path)]
        if runs:
            chosen.append((str(cell["row"]), runs[0]))
    return chosen


def sample_pictures(
    result: TableResult, runs: list[StoredRun], memorisation: bool = True
) -> dict[str, tuple[Picture, str]]:
    """dataset -> (sample panel, caption) for every column with sample grids."""
    from degan_bench.results.memorisation import memorisation_rows

    by_id = {run.run_id: run for run in runs}
    first = result.table.protocols[0]
    cells = result.cells[~result.cells["variant"].astype(bool) & (result.cells["protocol"] == first)]
    pictures = {}
    for dataset, group in cells.groupby("dataset", sort=False):
        chosen = _panel_runs(group, by_id)
        if not chosen:
            continue
        grids = [dict(sample_grids(run.path)) for _, run in chosen]
        common = set.intersection(*(set(g) for g in grids))
        rows: list[PanelRow] = []
        reals = next((run.path / "reals.png" for _, run in chosen if (run.path / "reals.png").exists()), None)
        if reals is not None:
            rows.append(PanelRow("real", grid_tiles(reals, _grid_shape(chosen[0][1]), PANEL_COLUMNS)))
        kimgs = []
        for (label, run), by_kimg in zip(chosen, grids, strict=True):
            kimg = max(common) if common else max(by_kimg)
            kimgs.append(kimg)
            tiles = grid_tiles(by_kimg[kimg], _grid_shape(run), PANEL_COLUMNS)
            rows.append(PanelRow(f"{label}\n(seed {run.seed}, {kimg} kimg)", tiles))
        caption = (
            f"same fixed latents, all at {kimgs[0]} kimg"
            if common
            else "same fixed latents; the methods have no common kimg yet, each row is its newest grid"
        )
        if memorisation:
            rows, note = memorisation_rows(str(dataset), rows, [run for _, run in chosen], kimgs)
            caption += note
        identity = "|".join(f"{label}:{run.run_id}" for label, run in chosen) + f"|{sorted(common)}"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
        name = f"samples/{slug(dataset, result.preset)}-{digest}.png"
        title = f"{group['column'].iloc[0]}: real images, then each method"
        pictures[str(dataset)] = (Picture(name, panel_png(rows, title), f"{dataset} samples"), caption)
    return pictures


def run_picture(run: StoredRun) -> Picture:
    from degan_bench.results.plots import run_figure_png

    return Picture(f"runs/{run.run_id}.png", run_figure_png(run), f"{run.run_id}: metric, losses, samples")
