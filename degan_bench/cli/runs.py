"""``degan-bench runs``: the run store as a whole: who writes what (status), export, import, nightly check."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from degan_bench.cli.app import app, console
from degan_bench.cli.options import RunStore
from degan_bench.core.exitcodes import ExitCode

runs_app = typer.Typer(
    help="The run store: status (leases, state, kimg), export without checkpoints, import/merge, "
    "nightly check.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(runs_app, name="runs")


def _lease_text(record, now: float) -> str:  # LeaseRecord | None
    if record is None:
        return "-"
    state = record.state(now)
    since = record.started_utc or "?"
    text = f"{record.host} pid {record.pid} since {since}, beat {now - record.heartbeat:.0f} s ago"
    return text if state == "live" else f"[dim]{state}: {text}[/]"


@runs_app.callback()
def runs_callback(ctx: typer.Context, runs: RunStore = None) -> None:
    """Without a subcommand: the status of every run under the store."""
    if ctx.invoked_subcommand is None:
        status(runs)


@runs_app.command("status")
def status(runs: RunStore = None) -> None:
    """Every run of the store: state, kimg done/total, and who holds its lease (host, pid, heartbeat)."""
    from degan_bench.core.lease import read_lease
    from degan_bench.paths import runs_dir
    from degan_bench.results.store import scan_runs

    root = runs or runs_dir()
    now = time.time()
    table = Table(title=f"runs under {root}", show_lines=False)
    for column in ("run", "state", "kimg", "updated", "lease"):
        table.add_column(column, overflow="fold")
    stored = scan_runs([root])
    for run in stored:
        kimg = f"{run.kimg:g}/{run.total_kimg:g}" if run.info else "?"
        updated = run.info.updated_utc if run.info else ""
        table.add_row(
            str(run.path.relative_to(root)), run.status, kimg, updated, _lease_text(read_lease(run.path), now)
        )
    console.print(table)
    held = sum(1 for run in stored if (r := read_lease(run.path)) is not None and r.state(now) == "live")
    console.print(f"{len(stored)} run(s), {held} leased by a live writer", highlight=False)


def print_job_status(jobs: list, states: dict) -> None:
    """``sweep --status``: the selected jobs with their plan state, kimg and lease."""
    from degan_bench.core.lease import read_lease

    now = time.time()
    table = Table(title="sweep status", show_lines=False)
    for column in ("job", "state", "kimg", "GPUs", "lease"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        table.add_row(
            job.name,
            states.get(id(job), job.state),
            f"{job.done_kimg:g}/{job.total_kimg:g}",
            str(job.gpus),
            _lease_text(read_lease(job.run_dir), now),
        )
    console.print(table)


@runs_app.command("export")
def export(
    dest: Annotated[Path, typer.Argument(help="Folder to write (created).")],
    runs: RunStore = None,
    no_checkpoints: Annotated[
        bool,
        typer.Option(
            "--no-checkpoints",
            help="Only run.json, recipe, metrics, stats, logs and grids (what tables need; a few MB a run).",
        ),
    ] = False,
) -> None:
    """Copy the store's runs to DEST (a CI artifact); lease files are never copied.

    Example: degan-bench runs export --no-checkpoints export/
    """
    from degan_bench.dispatch.transfer import export_runs
    from degan_bench.paths import runs_dir

    root = runs or runs_dir()
    exported = export_runs(root, dest, checkpoints=not no_checkpoints)
    what = "without checkpoints" if no_checkpoints else "with checkpoints"
    console.print(f"exported {len(exported)} run(s) from {root} to {dest} ({what})", highlight=False)


@runs_app.command("import")
def import_(
    sources: Annotated[list[Path], typer.Argument(help="Exports or run stores to merge in.")],
    into: Annotated[
        Path | None,
        typer.Option("--into", help="The store to merge into (default: the runs dir).", show_default=False),
    ] = None,
) -> None:
    """Merge runs into a store: new ones are added, a more complete copy replaces a less complete one,
    nothing more complete is overwritten; conflicts (another recipe or seed under the same name) are
    listed and exit 1.

    Example: degan-bench runs import artifacts/*/ --into merged && degan-bench table --all --runs merged
    """
    from degan_bench.dispatch.transfer import import_runs
    from degan_bench.paths import runs_dir

    target = into or runs_dir()
    results = import_runs(sources, target)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.action] = counts.get(result.action, 0) + 1
        if result.action in ("conflict", "leased", "updated"):
            console.print(
                f"{result.action} {result.run}: {result.detail}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
    console.print(
        f"import into {target}: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())), highlight=False
    )
    if counts.get("conflict"):
        raise typer.Exit(ExitCode.FAILED)


@runs_app.command("check")
def check(
    runs: RunStore = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference JSON (see degan_bench/dispatch/nightly.py).", show_default=False),
    ] = None,
    write_reference: Annotated[
        Path | None, typer.Option(help="Write the measured values as a reference JSON.", show_default=False)
    ] = None,
    speed_tolerance: Annotated[float, typer.Option(help="Allowed slowdown (0.15 = 15 %).", min=0.0)] = 0.15,
    metric_rel: Annotated[float, typer.Option(help="Allowed relative metric regression.", min=0.0)] = 0.10,
    metric_abs: Annotated[float, typer.Option(help="Allowed absolute metric regression.", min=0.0)] = 1.0,
) -> None:
    """The nightly check: every run complete, losses finite, no throughput or metric regression against
    the reference. Exit 1 naming each problem.

    Example: degan-bench runs check --runs $STORE/nightly --reference $STORE/nightly-reference.json
    """
    import json

    from degan_bench.core.fileio import atomic_write_text
    from degan_bench.dispatch.nightly import Tolerance, check_runs, load_reference
    from degan_bench.paths import runs_dir

    report = check_runs(
        runs or runs_dir(), load_reference(reference), Tolerance(speed_tolerance, metric_rel, metric_abs)
    )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    for problem in report.problems:
        console.print(f"[red]problem[/]: {problem}", highlight=False, soft_wrap=True)
    if write_reference is not None:
        atomic_write_text(write_reference, json.dumps(report.measured, indent=2, sort_keys=True) + "\n")
        console.print(f"measured values written to {write_reference}", highlight=False)
    if report.problems:
        raise typer.Exit(ExitCode.FAILED)
    console.print("nightly check: no problem", highlight=False)
