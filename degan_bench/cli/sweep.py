"""``degan-bench sweep``: run every cell of paper tables (recipe x seed), resume what is unfinished, skip
what is complete, then rebuild the leaderboards."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from degan_bench.cli.app import app, console
from degan_bench.cli.options import (
    AllTables,
    GpusPerJob,
    MaxGpusPerJob,
    SelectChain,
    SelectDataset,
    SelectJob,
    SelectMethod,
    SelectShard,
    TableNames,
    TablePreset,
    TableSeeds,
)
from degan_bench.cli.run import EXIT_CODES_HELP
from degan_bench.recipes.schema import PRESETS


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@app.command("sweep", epilog=EXIT_CODES_HELP)
def sweep_command(
    names: TableNames = None,
    all_: AllTables = False,
    preset: TablePreset = None,
    seeds: TableSeeds = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="GPU indices for the local queue, e.g. 0,1,2,3 (jobs packed by their GPU count), "
            "or 'cpu' (default: every visible GPU, else cpu).",
            show_default=False,
        ),
    ] = None,
    job: SelectJob = None,
    chain: SelectChain = None,
    shard: SelectShard = None,
    method: SelectMethod = None,
    dataset: SelectDataset = None,
    gpus_per_job: GpusPerJob = None,
    max_gpus_per_job: MaxGpusPerJob = None,
    deadline_minutes: Annotated[
        float | None,
        typer.Option(
            help="Exit within this many minutes: start only jobs that can reach a checkpoint in time, give "
            "each the budget left (--max-minutes), stop with exit 75 when work remains.",
            min=0.0,
            show_default=False,
        ),
    ] = None,
    deadline_reserve_minutes: Annotated[
        float | None,
        typer.Option(
            help="Kept free before the deadline for the last checkpoint and an evaluation under way "
            "(default 10 % of the deadline, at most 15).",
            min=0.0,
            show_default=False,
        ),
    ] = None,
    min_job_minutes: Annotated[
        float | None,
        typer.Option(
            help="A job's start-up allowance: it starts only if its budget covers this plus one minibatch "
            "(default 5 % of the deadline, at most 5).",
            min=0.0,
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the jobs and a GPU-hour estimate; run nothing.")
    ] = False,
    plan_json: Annotated[
        bool,
        typer.Option(
            "--plan-json", help="Print the selected plan as JSON (`degan-bench plan`); run nothing."
        ),
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show who holds which run (leases), state and kimg; run nothing.")
    ] = False,
    summary_json: Annotated[
        Path | None,
        typer.Option(
            help="Write outcomes and the exit code to this JSON file (for CI steps).", show_default=False
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="local (a queue on this machine) | slurm (sbatch job arrays, one per GPU shape; chained "
            "runs such as IMP rounds: one sbatch each with --dependency=afterok)."
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
    slurm_cpus: Annotated[
        int, typer.Option(help="slurm: CPUs per GPU (--cpus-per-task = this x GPUs per node).", min=1)
    ] = 8,
    slurm_max_parallel: Annotated[
        int | None, typer.Option(help="slurm: at most N array tasks at once.", min=1, show_default=False)
    ] = None,
) -> None:
    """Expand tables into (recipe x seed) jobs; skip complete runs (same recipe hash and seed), resume
    incomplete ones with --resume auto, run the rest (packed by GPU count), then rebuild the leaderboards.

    Runs leased by another live writer (another sweep, runner or person on the same store) are left
    alone. SIGINT/SIGTERM: no new jobs, the running ones checkpoint and stop (a second signal is the
    same request, a third aborts). In CI, start it with `exec` so the runner's signal reaches it.

    Example: degan-bench sweep diffaugment-lowshot --gpus 0,1,2,3 --deadline-minutes 340
    """
    from degan_bench.dispatch import jobs as jobs_mod
    from degan_bench.dispatch.plan import jobs_of
    from degan_bench.errors import DeganError
    from degan_bench.paths import runs_dir

    if backend not in ("local", "slurm"):
        raise DeganError(f"--backend {backend!r} is unknown", fix="use local or slurm")
    root = runs or runs_dir()
    selection = make_selection(job, chain, shard, method, dataset, None)
    tables, _jobs, skipped, chains, states = expand_plan(
        names, all_, preset, seeds, root, gpus_per_job=gpus_per_job, max_gpus_per_job=max_gpus_per_job
    )
    from degan_bench.dispatch.plan import select

    chosen = select(chains, states, selection)
    selected = jobs_of(chosen)
    if plan_json:
        write_plan(chosen, states, selected, root, tables, preset, skipped, fmt="json", output=None)
        return
    if status:
        from degan_bench.cli.runs import print_job_status

        print_job_status(selected, states)
        return
    _print_plan(selected, skipped if selection.empty else [], root)
    if dry_run:
        from degan_bench.results.store import scan_runs

        _print_estimate(selected, scan_runs([root]), jobs_mod.load_costs())
        return
    todo = [j for j in selected if j.state in jobs_mod.RUNNABLE_STATES]
    log_dir = root / "sweep-logs"
    if backend == "slurm":
        _slurm(todo, log_dir, submit=submit, evaluate=not no_eval, options=dict(
            time=slurm_time, partition=slurm_partition, account=slurm_account, cpus_per_gpu=slurm_cpus,
            max_parallel=slurm_max_parallel))  # fmt: skip
        return
    from degan_bench.dispatch.deadline import Deadline
    from degan_bench.dispatch.local import LocalQueue, check_fits, parse_gpus, sweep_exit_code

    deadline = None
    if deadline_minutes is not None:
        deadline = Deadline.from_minutes(
            deadline_minutes, reserve_minutes=deadline_reserve_minutes, min_job_minutes=min_job_minutes
        )
    slots = parse_gpus(gpus, 0 if gpus is not None else _visible_gpus())
    check_fits(todo, slots)
    _attach_estimates(todo, root)
    where = ", ".join(f"GPU {s}" for s in slots if s is not None) or "the CPU (one job at a time)"
    limit = f", deadline in {deadline_minutes:g} min" if deadline_minutes is not None else ""
    console.print(f"running {len(todo)} job(s) on {where}{limit}; logs in {log_dir}", highlight=False)
    queue = LocalQueue(
        slots,
        log_dir,
        evaluate=not no_eval,
        on_event=lambda message: console.print(message, highlight=False, soft_wrap=True, markup=False),
        deadline=deadline,
    )
    # a second signal after the jobs stopped (tables, exit) is still the same stop request
    with queue.signal_scope(until_exit_after_stop=True):
        results = queue.run(todo)
        outcomes: dict[str, int] = {}
        for result in results:
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        counts = ", ".join(f"{n} {o}" for o, n in outcomes.items())
        console.print(f"sweep: {counts or 'nothing to run'}", highlight=False)
        for result in results:
            if result.outcome == "failed":
                console.print(
                    f"[red]failed[/] {result.job.name}: see {result.log}", highlight=False, soft_wrap=True
                )
        aborted = queue.stop_reason == "aborted"
        code = sweep_exit_code(results, selected, aborted=aborted)
        if summary_json is not None:
            _write_summary(summary_json, code, results, queue.stop_reason)
        if not no_table and not aborted:
            _rebuild_tables(tables, root, preset, out)
        console.print(f"exit {int(code)}: {_EXIT_WORDS.get(int(code), 'aborted')}", highlight=False)
        if code:
            raise typer.Exit(int(code))


_EXIT_WORDS = {
    0: "every selected run is complete",
    1: "a run failed or is a conflict (see above)",
    3: "work remains but none could start here",
    75: "stopped with progress; run the same command again to continue",
}


def make_selection(
    job: list[str] | None,
    chain: list[str] | None,
    shard: str | None,
    method: list[str] | None,
    dataset: list[str] | None,
    state: list[str] | None,
):  # -> Selection
    from degan_bench.dispatch.plan import Selection, parse_shard

    return Selection(
        jobs=list(job or []),
        chains=list(chain or []),
        shard=parse_shard(shard) if shard else None,
        methods=list(method or []),
        datasets=list(dataset or []),
        states=[part for text in state or [] for part in text.split(",") if part],
    )


def expand_plan(
    names: list[str] | None,
    all_: bool,
    preset: str | None,
    seeds: int | None,
    root: Path,
    *,
    gpus_per_job: int | None = None,
    max_gpus_per_job: int | None = None,
) -> tuple[list, list, list, list, dict]:
    """(tables, jobs, skipped cells, chains, effective states) of the named tables (or --all)."""
    from degan_bench.dispatch.jobs import expand_jobs, override_gpus
    from degan_bench.dispatch.plan import build_chains, effective_states
    from degan_bench.errors import DeganError
    from degan_bench.results.tables import load_tables

    if preset is not None and preset not in PRESETS:
        raise DeganError(f"--preset {preset!r} is unknown", fix=f"use one of {', '.join(PRESETS)}")
    if names and all_:
        raise DeganError("give table names or --all, not both", fix="drop one of them")
    if gpus_per_job is not None and max_gpus_per_job is not None:
        raise DeganError("--gpus-per-job and --max-gpus-per-job exclude each other", fix="keep one")
    tables = load_tables(names, all_tables=all_)
    jobs, skipped = expand_jobs(tables, root, preset=preset, seeds=seeds)
    override_gpus(jobs, gpus=gpus_per_job, max_gpus=max_gpus_per_job)
    return tables, jobs, skipped, build_chains(jobs), effective_states(jobs)


def estimates_for(jobs: list, root: Path) -> dict:
    from degan_bench.dispatch.jobs import estimate_job, load_costs
    from degan_bench.results.store import scan_runs

    stored, costs = scan_runs([root]), load_costs()
    return {job.name: estimate_job(job, stored, costs) for job in jobs}


def _attach_estimates(jobs: list, root: Path) -> None:
    """Expected wall seconds of each job (the queue's backfill and the deadline's minibatch time)."""
    estimates = estimates_for(jobs, root)
    for job in jobs:
        hours = estimates[job.name].hours(job.remaining_kimg)
        job.estimate_seconds = None if hours is None else hours * 3600 / max(job.gpus, 1)


def write_plan(chosen: list, states: dict, selected: list, root: Path, tables: list, preset: str | None,
               skipped: list, *, fmt: str, output: Path | None, labels: dict | None = None,
               wave_size: int = 256, wave: int = 0) -> dict:  # fmt: skip
    """Print (or write) the plan of ``chosen`` chains as json | matrix | gitlab | summary."""
    import json
    import sys

    from degan_bench.dispatch.plan import matrix, plan_document

    document = plan_document(
        chosen, states, estimates_for(selected, root), runs_root=root, tables=[t.name for t in tables],
        preset=preset, labels=labels, wave_size=wave_size, skipped=len(skipped),
    )  # fmt: skip
    if fmt == "json":
        text = json.dumps(document, indent=2) + "\n"
    elif fmt == "matrix":
        text = json.dumps(matrix(document, wave)) + "\n"
    elif fmt == "gitlab":
        from degan_bench.dispatch.ci import gitlab_child_pipeline

        text = gitlab_child_pipeline(document, wave)
    else:
        text = summary_text(document)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return document


def summary_text(plan: dict) -> str:
    s = plan["summary"]
    lines = [
        f"plan of {', '.join(plan['tables']) or 'no table'} (preset {plan['preset'] or 'per table'}) under "
        f"{plan['runs_root']}",
        f"jobs: {s['jobs']} ({', '.join(f'{n} {k}' for k, n in s['job_states'].items()) or 'none'})",
        f"chains: {s['chains']}, {s['multi_job_chains']} of them with several jobs "
        f"({', '.join(f'{n} {k}' for k, n in s['chain_states'].items()) or 'none'})",
        f"to run: {s['jobs_to_run']} job(s), {s['gpu_hours_remaining_known']:.1f} GPU-hours where known, "
        f"{s['jobs_of_unknown_cost']} job(s) of unknown cost (training only)",
        f"CI matrix: {s['dispatch_chains']} chain(s) "
        f"({', '.join(f'{n} on {k}' for k, n in s['dispatch_by_runner'].items()) or 'none'}); "
        f"waves of {plan['wave_size']}: {s['waves'] or [0]}",
    ]
    if s["not_on_ci"]:
        lines.append(f"multi-node, not on CI (use --backend slurm): {', '.join(s['not_on_ci'])}")
    if s["cells_without_job"]:
        lines.append(f"table cells without a job (reference only, no recipe yet): {s['cells_without_job']}")
    return "\n".join(lines) + "\n"


def _write_summary(path: Path, code: int, results: list, stop_reason: str) -> None:
    import json

    from degan_bench.core.fileio import atomic_write_text

    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    data = {
        "exit_code": int(code),
        "stop_reason": stop_reason,
        "outcomes": outcomes,
        "jobs": [
            {
                "id": r.job.name,
                "outcome": r.outcome,
                "exit": r.returncode,
                "seconds": round(r.seconds, 1),
                "devices": r.slot,
                "log": str(r.log),
                "blocked_by": r.blocked_by,
            }
            for r in results
        ],
    }
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


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
        if job.state in ("conflict", "leased", "failed"):
            console.print(f"[yellow]{job.state}[/] {job.name}: {job.note}", highlight=False, soft_wrap=True)


def _print_estimate(jobs: list, stored: list, costs: list) -> None:
    """The dry run's table: state, kimg, rate, hours and GPUs per job, then the totals."""
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
            + (f" {job.gpus} GPUs" if job.gpus > 1 else "")
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
    from degan_bench.dispatch.slurm import SlurmOptions, chain_script, group_by_shape, sbatch_script
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
    for (gpus, nodes), group in group_by_shape(single).items():
        shape = "" if (gpus, nodes) == (1, 1) else f"-{nodes}x{gpus}gpu"
        path = log_dir / f"sweep-{stamp}{shape}.sbatch"
        path.write_text(sbatch_script(group, log_dir, opts, python=sys.executable, workdir=Path.cwd(),
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
