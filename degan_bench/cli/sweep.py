"""``degan-bench sweep``: run every cell of paper tables (recipe x seed), resume what is unfinished, skip
what is complete, then rebuild the leaderboards."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from degan_bench.cli.app import app, console
from degan_bench.recipes.schema import PRESETS


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@app.command("sweep")
def sweep_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Table name(s) from recipes/tables/.", show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every table marked in_all.")] = False,
    preset: Annotated[
        str | None,
        typer.Option(
            help=f"{' | '.join(PRESETS)} (default: each table's, paper for paper tables).", show_default=False
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            help="Training seeds per cell (0..N-1) (default: each table's).", min=1, show_default=False
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="GPU indices for the local queue, e.g. 0,1 (one job per GPU), "
            "or 'cpu' (default: every visible GPU, else cpu).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the jobs and a GPU-hour estimate; run nothing.")
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="local (a queue on this machine) | slurm (an sbatch job array; chained runs such as IMP "
            "rounds: one sbatch each with --dependency=afterok)."
        ),
    ] = "local",
    submit: Annotated[
        bool, typer.Option(help="slurm: submit the script with sbatch (default: only write and print it).")
    ] = False,
    runs: Annotated[
        Path | None,
        typer.Option(
            "--runs", help="Run root the jobs write to (default: the runs dir).", show_default=False
        ),
    ] = None,
    no_eval: Annotated[
        bool, typer.Option("--no-eval", help="Train only; evaluate later with `degan-bench eval RUN`.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where the rebuilt leaderboards go (default: results/leaderboards/).", show_default=False
        ),
    ] = None,
    no_table: Annotated[
        bool, typer.Option("--no-table", help="Do not rebuild the leaderboards at the end.")
    ] = False,
    slurm_time: Annotated[
        str, typer.Option(help="slurm: --time per allocation (runs continue over requeues).")
    ] = "24:00:00",
    slurm_partition: Annotated[
        str | None, typer.Option(help="slurm: --partition.", show_default=False)
    ] = None,
    slurm_account: Annotated[str | None, typer.Option(help="slurm: --account.", show_default=False)] = None,
    slurm_cpus: Annotated[int, typer.Option(help="slurm: --cpus-per-task.", min=1)] = 8,
    slurm_max_parallel: Annotated[
        int | None, typer.Option(help="slurm: at most N array tasks at once.", min=1, show_default=False)
    ] = None,
) -> None:
    """Expand tables into (recipe x seed) jobs; skip complete runs (same recipe hash and seed), resume
    incomplete ones with --resume auto, run the rest (one job per GPU), then rebuild the leaderboards.

    Example: degan-bench sweep diffaugment-lowshot --gpus 0,1,2,3 --dry-run
    """
    from degan_bench.dispatch import jobs as jobs_mod
    from degan_bench.errors import DeganError
    from degan_bench.paths import runs_dir
    from degan_bench.results.store import scan_runs
    from degan_bench.results.tables import load_tables

    if backend not in ("local", "slurm"):
        raise DeganError(f"--backend {backend!r} is unknown", fix="use local or slurm")
    if preset is not None and preset not in PRESETS:
        raise DeganError(f"--preset {preset!r} is unknown", fix=f"use one of {', '.join(PRESETS)}")
    if names and all_:
        raise DeganError("give table names or --all, not both", fix="drop one of them")
    tables = load_tables(names, all_tables=all_)
    root = runs or runs_dir()
    jobs, skipped = jobs_mod.expand_jobs(tables, root, preset=preset, seeds=seeds)
    _print_plan(jobs, skipped, root)
    if dry_run:
        stored = scan_runs([root])
        _print_estimate(jobs, stored, jobs_mod.load_costs())
        return
    todo = [job for job in jobs if job.state in ("new", "incomplete")]
    log_dir = root / "sweep-logs"
    if backend == "slurm":
        _slurm(todo, log_dir, submit=submit, evaluate=not no_eval, options=dict(
            time=slurm_time, partition=slurm_partition, account=slurm_account, cpus_per_task=slurm_cpus,
            max_parallel=slurm_max_parallel))  # fmt: skip
        return
    from degan_bench.dispatch.local import LocalQueue, parse_gpus

    slots = parse_gpus(gpus, 0 if gpus is not None else _visible_gpus())
    where = ", ".join(f"GPU {s}" for s in slots if s is not None) or "the CPU (one job at a time)"
    console.print(f"running {len(todo)} job(s) on {where}; logs in {log_dir}", highlight=False)
    queue = LocalQueue(
        slots,
        log_dir,
        evaluate=not no_eval,
        on_event=lambda message: console.print(message, highlight=False, soft_wrap=True),
    )
    results = queue.run(todo)
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    console.print(
        "sweep: " + (", ".join(f"{n} {o}" for o, n in outcomes.items()) or "nothing to run"), highlight=False
    )
    for result in results:
        if result.outcome == "failed":
            console.print(
                f"[red]failed[/] {result.job.name}: see {result.log}", highlight=False, soft_wrap=True
            )
    if not no_table:
        _rebuild_tables(tables, root, preset, out)
    if queue.stop_requests:
        raise typer.Exit(130)
    if outcomes.get("failed"):
        raise typer.Exit(1)


def _print_plan(jobs: list, skipped: list, root: Path) -> None:
    states: dict[str, int] = {}
    for job in jobs:
        states[job.state] = states.get(job.state, 0) + 1
    reasons: dict[str, int] = {}
    for reason in {(c.method, c.dataset, c.reason): c.reason for c in skipped}.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    console.print(
        f"{len(jobs)} job(s) under {root}: " + ", ".join(f"{n} {s}" for s, n in states.items()),
        highlight=False,
    )
    if reasons:
        console.print(
            "method x dataset cells without a job: " + ", ".join(f"{n} {r}" for r, n in reasons.items()),
            highlight=False,
        )
    for job in jobs:
        if job.state == "conflict":
            console.print(f"[yellow]conflict[/] {job.name}: {job.note}", highlight=False, soft_wrap=True)


def _print_estimate(jobs: list, stored: list, costs: list) -> None:
    from degan_bench.dispatch.costs import kind_shares
    from degan_bench.dispatch.jobs import estimate_job, summarize_estimates

    estimates = {job.name: estimate_job(job, stored, costs) for job in jobs}
    console.print(
        f"{'state':<11}{'kimg done/total':>17}{'dev-s/kimg':>12}{'est. h':>9}  {'kind':<13}run [tables]",
        highlight=False,
    )
    for job in jobs:
        estimate = estimates[job.name]
        rate = (
            f"{estimate.device_sec_per_kimg:.3g}" if estimate.device_sec_per_kimg is not None else "unknown"
        )
        hours = estimate.hours(job.remaining_kimg) if job.state in ("new", "incomplete") else 0.0
        shown = "-" if hours is None else f"{hours:.2f}"
        console.print(
            f"{job.state:<11}{f'{job.done_kimg:g}/{job.total_kimg:g}':>17}{rate:>12}{shown:>9}  "
            f"{estimate.kind:<13}{job.name} [{', '.join(job.tables)}]"
            + (f" after {', '.join(d.name for d in job.depends_on)}" if job.depends_on else ""),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    console.print("rates:", highlight=False)
    for source in sorted({e.source for e in estimates.values()}):
        console.print(f"  {source}", highlight=False, soft_wrap=True, markup=False)
    totals = summarize_estimates(jobs, estimates)

    def shares(by_kind: dict) -> str:
        parts = kind_shares({k: v for k, v in by_kind.items() if k != "unknown"})
        return ", ".join(f"{parts[k]:.0%} {k}" for k in ("measured", "published", "extrapolated"))

    console.print("GPU-hours per table (a job shared by tables counts in each):", highlight=False)
    for table, line in sorted(totals["by_table"].items()):
        unknown = f", {line['unknown']} of unknown cost" if line["unknown"] else ""
        console.print(
            f"  {table:<32}{line['jobs']:>5} job(s){line['gpu_hours']:>11.1f} GPU-h  "
            f"({shares(line['by_kind'])}{unknown})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    devices = ", ".join(
        f"{h:.0f} h on {d}" for d, h in sorted(totals["by_device"].items(), key=lambda kv: -kv[1])
    )
    console.print(
        f"to run: {totals['jobs']} job(s), about {totals['gpu_hours']:.1f} GPU-hours"
        + (f" + {totals['cpu_hours']:.2f} CPU-hours" if totals["cpu_hours"] else "")
        + f" ({shares(totals['by_kind'])}"
        + (f"; {len(totals['unknown'])} job(s) of unknown cost" if totals["unknown"] else "")
        + f"); {totals['wall_hours']:.1f} h of wall clock over the recipes' GPU counts"
        + (f"; by GPU type of the figures: {devices}" if devices else "")
        + " (training only; evaluation not included)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _slurm(todo: list, log_dir: Path, *, submit: bool, evaluate: bool, options: dict) -> None:
    """Independent jobs as one array script; chained ones (``depends_on``) as a driver that submits one
    sbatch per job with ``--dependency=afterok`` (see degan_bench/dispatch/slurm.py)."""
    from degan_bench.core.rundir import utc_now
    from degan_bench.dispatch.jobs import chain
    from degan_bench.dispatch.slurm import SlurmOptions, chain_script, sbatch_script
    from degan_bench.dispatch.slurm import submit as sbatch_submit

    queued = {id(job) for job in todo}
    runnable, blocked = [], []
    for job in todo:  # in dependency order, so a blocked dependency is known before its dependents
        bad = [d for d in job.depends_on if d.state != "complete" and (id(d) not in queued
               or d in blocked)]  # fmt: skip
        (blocked if bad else runnable).append(job)
        if bad:
            console.print(f"[yellow]not submitted[/] {job.name}: its dependency {bad[0].name} is "
                          f"{bad[0].state}", highlight=False, soft_wrap=True)  # fmt: skip
    linked = {id(link) for job in runnable if job.depends_on for link in chain(job)}
    chained = [job for job in runnable if id(job) in linked]
    single = [job for job in runnable if id(job) not in linked]
    if not runnable:
        console.print("nothing to submit: every job is complete (or blocked)", highlight=False)
        return
    opts = SlurmOptions(**options)
    stamp = utc_now().replace(":", "")
    log_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, bool]] = []
    if single:
        path = log_dir / f"sweep-{stamp}.sbatch"
        path.write_text(sbatch_script(single, log_dir, opts, python=sys.executable, workdir=Path.cwd(),
                                      evaluate=evaluate), encoding="utf-8")  # fmt: skip
        written.append((path, False))
    if chained:
        path = log_dir / f"sweep-{stamp}-chains.sh"
        path.write_text(chain_script(chained, log_dir, opts, python=sys.executable, workdir=Path.cwd(),
                                     evaluate=evaluate), encoding="utf-8")  # fmt: skip
        written.append((path, True))
    for path, is_driver in written:
        console.print(path.read_text(encoding="utf-8"), highlight=False, markup=False, soft_wrap=True)
        if submit:
            console.print(_run_driver(path) if is_driver else sbatch_submit(path), highlight=False)
        else:
            how = f"bash {path}" if is_driver else f"sbatch {path}"
            console.print(f"wrote {path}; submit it with `{how}` (or rerun with --submit)", highlight=False)


def _run_driver(path: Path) -> str:
    import subprocess

    from degan_bench.errors import DeganError

    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DeganError(
            f"{path} failed: {done.stderr.strip() or done.stdout.strip()}",
            fix="check that sbatch is on PATH; the jobs it printed before failing were submitted",
        )
    return done.stdout.strip()


def _rebuild_tables(tables: list, root: Path, preset: str | None, out: Path | None) -> None:
    from degan_bench.cli.table import default_out
    from degan_bench.results.render import write_leaderboards
    from degan_bench.results.reported import load_reported
    from degan_bench.results.store import scan_runs
    from degan_bench.results.tables import BuildOptions, build_table

    stored = scan_runs([root])
    reported = load_reported()
    results = [build_table(t, stored, reported, BuildOptions(preset=preset)) for t in tables]
    target = out or default_out()
    write_leaderboards(results, stored, target)
    console.print(f"leaderboards rebuilt in {target}", highlight=False)
