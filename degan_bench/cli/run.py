"""``degan-bench run METHOD DATASET``: resolve the recipe, train, evaluate, record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from degan_bench.cli.app import app, console, print_yaml
from degan_bench.core.exitcodes import ExitCode
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.recipes.schema import PRESETS


@app.command()
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
            help="Checkpoint and stop cleanly after this many minutes "
            "(time-limited allocations); continue with --resume auto.",
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

    Example: degan-bench run diffaugment obama-100 --preset short --seed 1
    """
    from degan_bench.core.device import parse_device
    from degan_bench.core.threads import apply_cpu_threads, choose_cpu_threads
    from degan_bench.training.runner import default_run_name

    resolved = resolve_recipe(method, dataset, preset, set_ or [], backbone=backbone)
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
            f"{', '.join(recipe.evaluation.protocols) or 'none'}\ncpu: {threads.describe()}\n"
            "(dry run: nothing was written)",
            highlight=False,
            soft_wrap=True,
        )
        return
    from degan_bench.training.execute import execute_run

    apply_cpu_threads(threads)
    console.print(f"[dim]cpu: {threads.describe()}[/]", highlight=False, soft_wrap=True)
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
