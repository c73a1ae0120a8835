"""Pictures of leaderboard cells: for every cell with runs, its metric over kimg (one line per seed, from
the runs' ``metrics.jsonl``) and its newest sample grid (``fakes_<kimg>.png`` of the cell's first run),
plus one reported-vs-ours chart per sub-table. Built in memory; :mod:`~degan_bench.results.render` writes
them next to the Markdown or inlines them in the HTML page."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
from PIL import Image

from degan_bench.metrics.protocols import get_protocol
from degan_bench.results.plots import sample_grids
from degan_bench.results.store import StoredRun, is_best_record
from degan_bench.results.svg import Point, Series, cells_svg, curve_svg
from degan_bench.results.tables import TableResult

#: widest sample-grid thumbnail (px); grids of 256 px images are several MB at full size
THUMBNAIL_WIDTH = 512
CellKey = tuple[str, str, str]  # (protocol, row label, dataset)


@dataclass
class CellMedia:
    slug: str  # unique within the table, safe as a file name and an HTML id
    curve: str  # SVG
    grid: bytes | None  # PNG thumbnail of the newest sample grid, if any
    grid_caption: str


def slug(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def cell_key(cell: pd.Series | dict[str, Any]) -> CellKey:
    return (str(cell["protocol"]), str(cell["row"]), str(cell["dataset"]))


def comparable(cell: pd.Series | dict[str, Any]) -> bool:
    """Whether the cell's reported number was made under the protocol of ours (drawn beside ours)."""
    reported = cell["reported"]
    return (
        reported is not None
        and not (isinstance(reported, float) and math.isnan(reported))
        and cell["reported_protocol"] == cell["our_protocol"]
    )


def curve_points(run: StoredRun, protocol: str) -> list[tuple[float, float]]:
    """(kimg, value) of the run's standard-weights records of ``protocol`` over training (the ``best``
    re-evaluation is not a point of the curve)."""
    points = {
        float(r["kimg"]): float(r["value"])
        for r in run.metrics
        if r.get("protocol") == protocol
        and r.get("status") == "ok"
        and r.get("standard_weights")
        and r.get("value") is not None
        and r.get("kimg") is not None
        and not is_best_record(r)
    }
    return sorted(points.items())


def thumbnail(path: Any) -> bytes:
    with Image.open(path) as image:
        picture = image.convert("RGB")
    if picture.width > THUMBNAIL_WIDTH:
        height = max(1, round(picture.height * THUMBNAIL_WIDTH / picture.width))
        picture = picture.resize((THUMBNAIL_WIDTH, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def cell_media(result: TableResult, runs: list[StoredRun]) -> dict[CellKey, CellMedia]:
    """Media of every (non-variant) cell of ``result`` that has runs."""
    by_id = {run.run_id: run for run in runs}
    media: dict[CellKey, CellMedia] = {}
    cells = result.cells[~result.cells["variant"]]
    for _, cell in cells.iterrows():
        cell_runs = sorted(
            (by_id[i] for i in cell["run_ids"] if i in by_id and by_id[i].info is not None),
            key=lambda r: (r.status != "complete", r.seed if r.seed is not None else 0, r.run_id),
        )
        if not cell_runs:
            continue
        metric = get_protocol(cell["our_protocol"]).metric.upper()
        series = [
            Series(f"seed {r.seed}" if r.seed is not None else r.run_id, points)
            for r in cell_runs
            if (points := curve_points(r, cell["our_protocol"]))
        ]
        curve = curve_svg(
            series,
            title=f"{cell['row']} · {cell['column']}: {metric} over training",
            ylabel=str(cell["our_protocol"]),
            reported=float(cell["reported"]) if comparable(cell) else None,
        )
        grid, caption = None, "no sample grid yet"
        for run in cell_runs:
            grids = sample_grids(run.path, 1_000_000)
            if grids:
                kimg, path = grids[-1]
                grid, caption = thumbnail(path), f"{run.run_id} at {kimg} kimg"
                break
        key = cell_key(cell)
        media[key] = CellMedia(slug(result.table.name, *key), curve, grid, caption)
    return media


def table_charts(result: TableResult) -> dict[str, str]:
    """One reported-vs-ours SVG per protocol: reported values only where comparable with ours."""
    table = result.table
    charts = {}
    for protocol in table.protocols:
        cells = result.cells[~result.cells["variant"] & (result.cells["protocol"] == protocol)]
        labels = [r.label for r in table.rows]
        points = []
        for _, cell in cells.iterrows():
            shown_reported = float(cell["reported"]) if comparable(cell) else None
            mean = float(cell["mean"]) if cell["n"] and _finite(cell["mean"]) else None
            low = high = None
            if mean is not None and _finite(cell["ci_low"]):
                low, high = float(cell["ci_low"]), float(cell["ci_high"])
            elif mean is not None and _finite(cell["std"]):
                low, high = mean - float(cell["std"]), mean + float(cell["std"])
            if shown_reported is None and mean is None:
                continue
            points.append(
                Point(
                    column=[c.dataset for c in table.columns].index(cell["dataset"]),
                    row=labels.index(cell["row"]),
                    reported=shown_reported,
                    mean=mean,
                    low=low,
                    high=high,
                )
            )
        used = sorted({p.row for p in points})
        remap = {old: new for new, old in enumerate(used)}
        for p in points:
            p.row = remap[p.row]
        metric = get_protocol(protocol).metric.upper()
        charts[protocol] = cells_svg(
            points,
            columns=[c.label for c in table.columns],
            rows=[labels[i] for i in used],
            title=f"{metric} ({protocol}): reported (hollow, same protocol only) vs ours (filled)",
            ylabel=protocol,
        )
    return charts


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(float(value))
