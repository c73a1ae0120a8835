"""``degan-bench run METHOD DATASET``: resolve the recipe, train, evaluate, record."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from degan_bench.cli.app import app, console, print_yaml
from degan_bench.core import launch
from degan_bench.core.exitcodes import ExitCode
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.recipes.schema import PRESETS

#: shown in ``run --help`` and ``sweep --help`` (and in README.md)
EXIT_CODES_HELP = (
    "Exit codes:\n\n"
    f"  {ExitCode.COMPLETE:>2}  every selected run is complete (now or before)\n"
    f"  {ExitCode.FAILED:>2}  a run failed (or a selected job is a conflict)\n"
    f"  {ExitCode.USAGE:>2}  bad input: one line naming the fix\n"
    f"  {ExitCode.NOTHING_TO_DO:>2}  work remains but none could start here (leased elsewhere,\n"
    "      a dependency not complete, too little time before the deadline)\n"
    f"  {ExitCode.PROGRESS:>2}  stopped cleanly with a checkpoint (deadline, --max-minutes,\n"
    "      a signal): run the same command again to continue"
)


@app.command(epilog=EXIT_CODES_HELP)
def run(
    method: Annotated[str, typer.Argument(help="Method: stylegan2, ada, diffaugment, fakeclr, insgen, ...")],
    dataset: Annotated[
        str, typer.Argument(help="Dataset: obama-100, animalface-cat, ffhq-1k, shapes-100, ...")
    ],
    preset: Annotated[
        str,
        typer.Option(
            help=f"{' | '.join(PRESETS)}: paper = the official recipe; short = "
            "same model, fewer kimg; smoke = tiny model for a CPU check."
        ),
    ] = "paper",
    seed: Annotated[int, typer.Option(help="Training seed (runs are recipe hash x seed).", min=0)] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a recipe key, e.g. --set training.kimg=50 (repeatable; validated)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default: RUNS_DIR/METHOD-DATASET-PRESET-sSEED-HASH8)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="'auto' continues the run directory's newest checkpoint; "
            "or a run directory / checkpoint file."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Resume even if the recipe or seed changed (logged).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved recipe and plan; do nothing.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto | cuda | cuda:N | cpu")] = "auto",
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="Start no minibatch after this many minutes from now, checkpoint and exit 75 "
            "(time-limited jobs); continue with --resume auto.",
            min=0.0,
        ),
    ] = None,
    no_eval: Annotated[
        bool,
        typer.Option(
            "--no-eval", help="Skip metric evaluation (fill in later with `degan-bench eval RUN_DIR`)."
        ),
    ] = False,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="stylegan2 | biggan: the backbone of the cell (default: the dataset's, e.g. biggan for "
            "CIFAR, or a baseline's own)."
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="Processes per node, started through torchrun (one per GPU; CPU processes with --device "
            "cpu): N, or 'recipe' for the recipe's resources.gpus. Default: this process only. The total "
            "batch and the recipe hash do not change.",
            rich_help_panel="Several GPUs",
        ),
    ] = None,
    nnodes: Annotated[
        int | None,
        typer.Option(help="Nodes of the run (same command on each).", min=1, rich_help_panel="Several GPUs"),
    ] = None,
    node_rank: Annotated[
        int | None,
        typer.Option(
            help="This node's rank for a static rendezvous (the endpoint is rank 0); default: c10d "
            "rendezvous assigns ranks.",
            min=0,
            rich_help_panel="Several GPUs",
        ),
    ] = None,
    rdzv_endpoint: Annotated[
        str | None,
        typer.Option(
            help="HOST[:PORT] every node reaches (torchrun rendezvous).", rich_help_panel="Several GPUs"
        ),
    ] = None,
    rdzv_id: Annotated[
        str | None,
        typer.Option(
            help="Rendezvous id shared by the nodes (default $SLURM_JOB_ID).", rich_help_panel="Several GPUs"
        ),
    ] = None,
    cpu_threads: Annotated[
        int | None,
        typer.Option(
            "--cpu-threads",
            min=1,
            help="torch CPU threads (default: performance.cpu_threads, else $OMP_NUM_THREADS, else the "
            "idle cores, at most 4, on a CPU device). Not part of the recipe hash.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train METHOD on DATASET with its recipe, evaluate under the recipe's protocols, and record the run.

    The run directory is leased while it trains: a second writer (here or on another host sharing the
    run store) is refused with exit code 3; a lease without heartbeat for 10 minutes is taken over.
    SIGINT/SIGTERM stop after the minibatch with a checkpoint (a second signal is the same request; a
    third aborts).

    Example: degan-bench run diffaugment obama-100 --preset short --seed 1
    """
    from degan_bench.core.device import parse_device
    from degan_bench.core.threads import apply_cpu_threads, choose_cpu_threads
    from degan_bench.training.runner import default_run_name

    resolved = resolve_recipe(method, dataset, preset, set_ or [], backbone=backbone)
    processes = launch.plan_launch(
        gpus=gpus, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id,
        device=device, resources=resolved.recipe.resources, check_devices=not dry_run,
    )  # fmt: skip
    recipe = resolved.recipe
    threads = choose_cpu_threads(
        cpu_threads if cpu_threads is not None else recipe.performance.cpu_threads,
        parse_device(device, present=not dry_run),
    )
    if dry_run:
        from degan_bench.paths import runs_dir

        target = out or runs_dir() / default_run_name(resolved, seed)
        console.print(
            f"# recipe {resolved.source} preset={preset} hash={resolved.hash}",
            highlight=False,
            soft_wrap=True,
        )
        print_yaml(resolved.to_yaml())
        console.print(
            f"run directory: {target}\nseed: {seed}\nbackbone: {resolved.model.arch} ({recipe.loss.kind})\n"
            f"training: {recipe.training.kimg:g} kimg at "
            f"{recipe.data.resolution}px, batch {recipe.training.batch}\nevaluation: "
            f"{', '.join(recipe.evaluation.protocols) or 'none'}\n"
            f"processes: {processes.describe() if processes else 'this one'} (the recipe's official set-up: "
            f"{recipe.resources.gpus} GPU{'s' if recipe.resources.gpus > 1 else ''}"
            f"{f' on {recipe.resources.nodes} nodes' if recipe.resources.nodes > 1 else ''}"
            f"{f', from {recipe.resources.source}' if recipe.resources.source else ''})\n"
            f"cpu: {threads.describe()}\n"
            "(dry run: nothing was written)",
            highlight=False,
            soft_wrap=True,
        )
        return
    if processes is not None:
        raise typer.Exit(launch.launch(processes, launch.command_line_args()))
    from degan_bench.training.execute import execute_run

    apply_cpu_threads(threads)
    console.print(f"[dim]cpu: {threads.describe()}[/]", highlight=False, soft_wrap=True)
    with launch.worker_exit_report():
        result = execute_run(
            resolved,
            seed=seed,
            out=out,
            resume=resume,
            force=force,
            device=device,
            max_seconds=None if max_minutes is None else max_minutes * 60,
            evaluate=not no_eval,
            console=console,
        )
        if result is not None and result.status == "diverged":
            raise typer.Exit(int(ExitCode.FAILED))
        if result is not None and result.status != "complete":
            if os.environ.get("TORCHELASTIC_RUN_ID") and not os.environ.get(launch.STATUS_DIR_ENV):
                # Under a hand-written torchrun any non-zero exit fails the whole group: exit 0 and let
                # the caller read run.json (status stopped), as the SLURM wrapper and the local queue do.
                # Under our own launcher (``--gpus N``) the worker report turns 75 into the group's code.
                return
            raise typer.Exit(ExitCode.PROGRESS)
    from degan_bench.claims.run_report import print_run_comparison

    print_run_comparison(resolved, seed, out=out, resume=resume, console=console)
