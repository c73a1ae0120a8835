"""``degan-bench table``: build leaderboards (reported vs reproduced) from the run store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from degan_bench.cli.app import app, console
from degan_bench.recipes.schema import PRESETS


def default_out() -> Path:
    from degan_bench.paths import results_dir

    return results_dir() / "leaderboards"


@app.command("table")
def table_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Table name(s) from recipes/tables/ (e.g. diffaugment-lowshot), or a path to a table YAML.",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every table marked in_all.")] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="md (GitHub pages, pictures in media/) | html (one page, glossary and legend once) | "
            "latex (tables and notes for an appendix) | csv (the tidy frame) | json",
        ),
    ] = "md",
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: results/leaderboards/).", show_default=False)
    ] = None,
    runs: Annotated[
        list[Path] | None,
        typer.Option(
            "--runs", help="Run root to scan (repeatable) (default: the runs dir).", show_default=False
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help=f"Which runs count: {' | '.join(PRESETS)} (default: the table's, paper for paper tables).",
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        str,
        typer.Option(
            help="last (default: the final checkpoint) | best (the best "
            "headline checkpoint; flagged when selected on the reporting "
            "split)."
        ),
    ] = "last",
    reported: Annotated[
        Path | None,
        typer.Option(help="Reported numbers CSV (default: results/reported.csv).", show_default=False),
    ] = None,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw charts, curves and sample grids.")
    ] = True,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(
            "--tolerance",
            help="Override one metric's band, METRIC:rel=R,abs=A (e.g. fid:rel=0.05,abs=0.5; repeatable).",
            show_default=False,
        ),
    ] = None,
    confidence: Annotated[
        float | None,
        typer.Option(help="Confidence of the t-interval over seeds (default 0.95).", show_default=False),
    ] = None,
) -> None:
    """Build paper tables from the run store: per dataset Paper | Ours (mean ± sd, n) | Δ | source, who
    wins (our numbers ranked, each paper's own ordering beside them), sample panels and curves.

    Example: degan-bench table diffaugment-lowshot --runs runs/ --runs /scratch/runs
    """
    from degan_bench.errors import DeganError
    from degan_bench.paths import runs_dir
    from degan_bench.results.render import write_leaderboards
    from degan_bench.results.reported import load_reported
    from degan_bench.results.store import describe_runs, scan_runs
    from degan_bench.results.tables import BuildOptions, build_table, load_tables, parse_tolerance

    if fmt not in ("md", "html", "latex", "csv", "json"):
        raise DeganError(f"--format {fmt!r} is not supported", fix="use md, html, latex, csv or json")
    if checkpoint not in ("last", "best"):
        raise DeganError(f"--checkpoint {checkpoint!r} is not supported", fix="use last or best")
    if preset is not None and preset not in PRESETS:
        raise DeganError(f"--preset {preset!r} is unknown", fix=f"use one of {', '.join(PRESETS)}")
    if names and all_:
        raise DeganError("give table names or --all, not both", fix="drop one of them")
    tables = load_tables(names, all_tables=all_)
    roots = runs or [runs_dir()]
    stored = scan_runs(roots)
    console.print(
        f"run store: {describe_runs(stored)} under {', '.join(str(r) for r in roots)}", highlight=False
    )
    for run in stored:
        if run.status == "unreadable":
            console.print(f"[yellow]unreadable[/] {run.path}: {run.problem}", highlight=False, soft_wrap=True)
    table_data = load_reported(reported)
    recipe_cache: dict = {}  # the tables share most cells' recipes
    results = [
        build_table(
            table,
            stored,
            table_data,
            BuildOptions(
                preset=preset,
                checkpoint=checkpoint,  # type: ignore[arg-type]
                tolerance=parse_tolerance(tolerance or [], confidence, table.tolerance),
            ),
            recipe_cache=recipe_cache,
        )
        for table in tables
    ]
    extra_pages = []
    if all_ and fmt in ("md", "html"):
        from degan_bench.claims.page import claims_leaderboard_page

        extra_pages.append(claims_leaderboard_page(stored, table_data))
    written = write_leaderboards(
        results, stored, out or default_out(), fmt=fmt, plots=plots, extra_pages=extra_pages
    )
    for result in results:
        main = result.cells[~result.cells["variant"] & ~result.cells["reference_only"]]
        counts = main["verdict"].str.replace(r" \(n=\d+\)$", "", regex=True).value_counts()
        summary = ", ".join(f"{count} {verdict}" for verdict, count in counts.items())
        console.print(f"{result.table.name} ({result.preset}): {summary}", highlight=False)
    documents = [p for p in written if p.suffix in (".md", ".html", ".tex", ".csv", ".json")]
    console.print(
        f"wrote {len(documents)} page(s) and {len(written) - len(documents)} picture(s) to "
        f"{(out or default_out())}",
        highlight=False,
    )
