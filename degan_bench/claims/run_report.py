"""The end of ``degan-bench run``: the paper's number for the run's cell next to ours, with the verdict.

Which reported numbers belong to a run:

1. the cells of the paper tables (``recipes/tables/``) whose recipe is the run's (same recipe hash, so a
   table row with ``set`` overrides, e.g. a dense lottery row, is found as well), with the row's source;
2. else, for a run of the committed recipe without ``--set`` overrides, every reported number of its
   method x dataset x backbone in ``results/reported.csv``.

Each is built as a one-cell leaderboard table over this one run (:func:`build_table`), so the numbers,
protocol checks and verdict (``within (n=1)``, ``outside (n=1)``, ``not comparable (protocol)``, ...) are
the leaderboards'. A run that is not complete prints nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from degan_bench.errors import DeganError
from degan_bench.paths import runs_dir
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.results import reported as rep
from degan_bench.results.store import StoredRun, load_run
from degan_bench.results.tables import (
    BuildOptions,
    ColumnDef,
    RowDef,
    SourceRef,
    TableDef,
    build_table,
    load_table,
    resolve_cell,
    table_names,
)


@dataclass
class Comparison:
    cell: str  # table: row x column
    protocol: str
    reported: float | None
    source: str
    ours: float | None
    delta: float | None
    verdict: str


def run_dir_of(resolved: ResolvedRecipe, seed: int, out: Path | None, resume: str | None) -> Path:
    """The run directory ``degan-bench run`` used (as :func:`degan_bench.training.runner.plan_run`)."""
    from degan_bench.training.runner import default_run_name

    if resume not in (None, "auto"):
        target = Path(resume)
        return target.parent.parent if target.is_file() else target
    return out if out is not None else runs_dir() / default_run_name(resolved, seed)


def _matching_cells(run: StoredRun, resolved: ResolvedRecipe) -> list[tuple[TableDef, RowDef, ColumnDef]]:
    """(table, row, column) of every paper table cell whose recipe is the run's."""
    found = []
    for name in table_names():
        table = load_table(name)
        if table.backbone != resolved.model.arch:
            continue
        for row in table.rows:
            if row.method != resolved.method:
                continue
            for column in table.columns:
                if column.dataset != resolved.dataset:
                    continue
                cell = resolve_cell(
                    table, row.method, column.dataset, resolved.preset, None, [*column.set, *row.set]
                )
                if cell.resolved is not None and cell.resolved.hash == run.recipe_hash:
                    found.append((table, row, column))
    return found


def _fallback_cells(
    resolved: ResolvedRecipe, reported: pd.DataFrame
) -> list[tuple[TableDef, RowDef, ColumnDef]]:
    """One synthetic cell per source that reports the run's method x dataset x backbone."""
    rows = reported[
        (reported["method"] == resolved.method)
        & (reported["dataset"] == resolved.dataset)
        & (reported["arch"].isin([resolved.model.arch, ""]))
    ]
    sources = rows[["paper", "table", "arxiv_version"]].drop_duplicates().itertuples(index=False)
    metrics = set(rows["metric"])
    protocols = [p for p in resolved.recipe.evaluation.protocols if _metric(p) in metrics]
    cells = []
    for paper, table_label, version in sources:
        table = TableDef(
            title=f"{paper} {table_label}",
            description="",
            backbone=resolved.model.arch,
            protocols=protocols,
            source=SourceRef(paper=paper, table=table_label, arxiv_version=version),
            columns=[ColumnDef(dataset=resolved.dataset, label=resolved.dataset)],
            rows=[RowDef(method=resolved.method, label=resolved.method)],
            name=f"{paper} {table_label}" + (f" {version}" if version else ""),
        )
        cells.append((table, table.rows[0], table.columns[0]))
    return cells


def _metric(protocol: str) -> str:
    from degan_bench.metrics.protocols import get_protocol

    return get_protocol(protocol).metric


def compare_run(
    resolved: ResolvedRecipe, run_path: Path, reported: pd.DataFrame | None = None
) -> tuple[list[Comparison], str]:
    """(comparisons, a one-line message when there are none) for a finished run."""
    run = load_run(run_path)
    if run.status != "complete":
        return [], ""
    reported = rep.load_reported() if reported is None else reported
    cells = _matching_cells(run, resolved)
    if not cells:
        if resolved.overrides:
            return [], (
                "no reported number for this recipe: it has --set overrides and no paper table cell uses it"
            )
        cells = _fallback_cells(resolved, reported)
    comparisons = []
    for table, row, column in cells:
        single = TableDef(
            title=table.title,
            description="",
            backbone=table.backbone,
            protocols=table.protocols,
            source=table.source,
            columns=[column],
            rows=[row],
            name=table.name,
            set=table.set,
            default_preset=resolved.preset,
            tolerance=table.tolerance,
        )
        result = build_table(single, [run], reported, BuildOptions(preset=resolved.preset))
        for _, cell in result.cells[~result.cells["variant"]].iterrows():
            ours = None if pd.isna(cell["mean"]) else float(cell["mean"])
            value = None if pd.isna(cell["reported"]) else float(cell["reported"])
            if ours is None and value is None:
                continue
            verdict = str(cell["verdict"])
            if verdict == "not comparable (protocol)":
                verdict = (
                    f"protocol differs ({cell['reported_protocol']} vs ours {cell['our_protocol']}): "
                    "not comparable"
                )
            elif verdict == "no reported value":
                verdict = "no reported number for this cell"
            version = f" arXiv {cell['reported_version']}" if cell["reported_version"] else ""
            source = (
                f"{cell['reported_paper']} {cell['reported_table']}{version}" if value is not None else ""
            )
            comparisons.append(
                Comparison(
                    cell=f"{table.name}: {row.label} × {column.label}",
                    protocol=str(cell["protocol"]),
                    reported=value,
                    source=source,
                    ours=ours,
                    delta=None if pd.isna(cell["delta"]) else float(cell["delta"]),
                    verdict=verdict,
                )
            )
    if not comparisons:
        return [], "no reported number for this cell"
    return comparisons, ""


def print_run_comparison(
    resolved: ResolvedRecipe,
    seed: int,
    *,
    out: Path | None = None,
    resume: str | None = None,
    console: Console | None = None,
) -> None:
    """What ``degan-bench run`` prints when it ends: the paper's number next to ours (rank 0 only; a
    problem reading the tables or reported numbers is reported in one line, never raised)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    console = console or Console()
    try:
        comparisons, message = compare_run(resolved, run_dir_of(resolved, seed, out, resume))
    except Exception as err:  # a report after training must never turn a finished run into a crash
        what = str(err) if isinstance(err, DeganError) else f"{type(err).__name__}: {err}"
        console.print(
            f"[yellow]note[/]: no comparison with the paper: {what}", highlight=False, soft_wrap=True
        )
        return
    if message:
        console.print(f"paper vs ours: {message}", highlight=False, soft_wrap=True)
    if not comparisons:
        return
    grid = Table(title="paper vs ours", title_justify="left")
    for name in ("cell", "protocol", "paper (source)", "ours", "Δ", "verdict"):
        grid.add_column(name, justify="right" if name in ("ours", "Δ") else "left")
    for c in comparisons:
        grid.add_row(
            c.cell,
            c.protocol,
            "—" if c.reported is None else f"{c.reported:g} ({c.source})",
            "—" if c.ours is None else f"{c.ours:.4g}",
            "—" if c.delta is None else f"{c.delta:+.3g}",
            c.verdict,
        )
    console.print(grid)
