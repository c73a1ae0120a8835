"""Run one resolved recipe end to end: plan the run directory, prepare data, train, evaluate.

Shared by ``degan-bench run`` and the sweep dispatcher, so both behave identically.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from degan_bench.core.checkpoint import clean_temp_files, list_checkpoints, load_checkpoint
from degan_bench.core.distributed import ProcessGroup, init_from_env
from degan_bench.core.fileio import DiskFullError, is_disk_full
from degan_bench.core.rundir import RunDir
from degan_bench.errors import DeganError
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.loop import TrainingSetup, TrainResult, train
from degan_bench.training.runner import RunPlan, plan_run, select_device


def load_evaluator() -> Any:
    """The metrics entry point, imported lazily (it pulls in torch-fidelity / clean-fid)."""
    from degan_bench.metrics.evaluate import evaluate_generator

    return evaluate_generator


def share_plan(plan: RunPlan | None, process: ProcessGroup) -> RunPlan:
    """Rank 0's run plan on every process (each loads the resume checkpoint itself)."""
    if process.world_size == 1:
        assert plan is not None
        return plan
    import torch.distributed as dist

    box: list[Any] = [None]
    if process.is_main:
        assert plan is not None
        source = plan.resume_payload.get("_source") if plan.resume_payload else None
        box[0] = (str(plan.run.path), source, plan.already_complete, plan.forced)
    dist.broadcast_object_list(box, src=0)
    if process.is_main:
        return plan
    path, source, complete, forced = box[0]
    payload = None
    if source is not None:
        payload = load_checkpoint(Path(source))
        payload["_forced"] = forced
    return RunPlan(run=RunDir(path), resume_payload=payload, already_complete=complete, forced=forced)


def _never_started(plan: RunPlan) -> bool:
    """A directory this plan created that holds no training yet (no tick, no checkpoint)."""
    run = plan.run
    return plan.created and not run.stats_path.exists() and not list_checkpoints(run.path)


def _discard(plan: RunPlan) -> None:
    """Remove the directory of a run that did not start, so the same command can simply be run again
    (instead of finding an empty run that asks for --resume auto)."""
    shutil.rmtree(plan.run.path, ignore_errors=True)


def _record_end(plan: RunPlan, err: BaseException) -> BaseException:
    """``run.json`` after an exception: ``stopped`` for an interrupt or a full disk (resumable),
    ``failed`` otherwise. Returns the error to raise (a full disk becomes one line)."""
    run = plan.run
    disk_full = err if isinstance(err, DiskFullError) else None
    if disk_full is None and is_disk_full(err):
        disk_full = DiskFullError(Path(getattr(err, "filename", None) or run.path / "?"))
    clean_temp_files(run)  # a partial checkpoint must not keep the disk full
    try:
        info = run.read_info()
        if disk_full is not None:
            info.status, info.status_detail = "stopped", disk_full.problem  # "disk full writing ..."
        elif isinstance(err, KeyboardInterrupt):
            info.status = "stopped"
        else:
            info.status, info.status_detail = "failed", f"{type(err).__name__}: {err}"[:300]
        run.write_info(info)
        run.log(f"{info.status}: {type(err).__name__}: {err}\n{traceback.format_exc()}")
    except (OSError, DeganError):  # the disk may still be full: the error itself matters more
        pass
    return disk_full if disk_full is not None else err


def execute_run(
    resolved: ResolvedRecipe,
    *,
    seed: int,
    out: Path | None = None,
    resume: str | None = None,
    force: bool = False,
    device: str = "auto",
    max_seconds: float | None = None,
    stop_at_nimg: int | None = None,
    evaluate: bool = True,
    evaluator: Any = None,
    console: Console | None = None,
    handle_signals: bool = True,
    tensorboard: bool = True,
) -> TrainResult | None:
    """Train (or continue) the run of ``resolved`` x ``seed``. Returns None when it was already complete."""
    from degan_bench.data.prepare import ensure_prepared, load_prepared

    console = console or Console()
    dev = select_device(device)
    process = init_from_env(dev.type)
    if dev.type == "cuda" and process.world_size > 1:
        import torch

        dev = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(dev)
    recipe = resolved.recipe
    # Rank 0 decides the run directory and prepares the data; the others follow its decision.
    plan = None
    if process.is_main:
        plan = plan_run(resolved, seed, out=out, resume=resume, force=force)
        if not plan.already_complete:
            try:
                ensure_prepared(recipe.dataset, recipe.data.resolution)
            except BaseException:
                if _never_started(plan):
                    _discard(plan)
                raise
    plan = share_plan(plan, process)
    if process.is_main and plan.notice:
        console.print(f"[yellow]note[/]: {plan.notice}", highlight=False, soft_wrap=True)
    if plan.already_complete:
        if process.is_main:
            console.print(
                f"{plan.run.path} is already complete; nothing to do (metrics: {plan.run.metrics_path})",
                highlight=False,
            )
        return None
    try:
        dataset = load_prepared(recipe.dataset, recipe.data.resolution, "train", recipe.data.subset_rule)
    except BaseException:
        if process.is_main and _never_started(plan):
            _discard(plan)
        raise
    if evaluate and evaluator is None:
        evaluator = load_evaluator()
    setup = TrainingSetup(
        resolved=resolved,
        seed=seed,
        run=plan.run,
        device=dev,
        dataset=dataset,
        resume=plan.resume_payload,
        process=process,
        console=console,
        stop_at_nimg=stop_at_nimg,
        max_seconds=max_seconds,
        evaluator=evaluator if evaluate else None,
        tensorboard=tensorboard,
        handle_signals=handle_signals,
    )
    try:
        result = train(setup)
    except BaseException as err:
        if not process.is_main:
            raise
        if isinstance(err, DeganError) and _never_started(plan):
            _discard(plan)  # bad input found while building the run: nothing was trained
            raise
        raised = _record_end(plan, err)
        if raised is err:
            raise
        raise raised from None
    if process.is_main:
        if result.status == "complete":
            console.print(f"[bold green]complete[/]: {plan.run.path}", highlight=False, soft_wrap=True)
        elif result.status == "diverged":
            console.print(
                f"[bold red]diverged[/]: {result.detail} ({plan.run.path}) -> lower the learning rates "
                "(training.g_lr / d_lr) or check the recipe's --set overrides, then start a new run",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(
                f"[yellow]stopped[/] at kimg {result.cur_nimg / 1000:.3f}: continue with "
                f"`degan-bench run {resolved.method} {resolved.dataset} --preset {resolved.preset} "
                f"--seed {seed}"
                + "".join(f" --set {o}" for o in resolved.overrides)
                + (f" --out {out}" if out else "")
                + " --resume auto`",
                highlight=False,
                soft_wrap=True,
            )
    return result
