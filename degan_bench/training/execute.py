"""Run one resolved recipe end to end: plan the run directory, prepare data, train, evaluate.

Shared by ``degan-bench run`` and the sweep dispatcher, so both behave identically.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from degan_bench.core.checkpoint import load_checkpoint
from degan_bench.core.distributed import ProcessGroup, init_from_env
from degan_bench.core.rundir import RunDir
from degan_bench.errors import DeganError
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.loop import TrainingSetup, TrainResult, train
from degan_bench.training.runner import RunPlan, plan_run, select_device


def load_evaluator() -> Any:
    """The metrics entry point, imported lazily (it pulls in torch-fidelity / clean-fid)."""
    from degan_bench.metrics.evaluate import evaluate_generator

    return evaluate_generator


def share_plan(plan: RunPlan | DeganError | None, process: ProcessGroup) -> RunPlan:
    """Rank 0's run plan on every process (each loads the resume checkpoint itself). When rank 0 could
    not plan the run (``plan`` is its error), every process raises the same one-line error at once
    instead of waiting for rank 0 in a collective."""
    if process.world_size == 1:
        if isinstance(plan, DeganError):
            raise plan
        assert plan is not None
        return plan
    import torch.distributed as dist

    box: list[Any] = [None]
    if process.is_main:
        assert plan is not None
        if isinstance(plan, DeganError):
            box[0] = ("error", str(plan))
        else:
            source = plan.resume_payload.get("_source") if plan.resume_payload else None
            box[0] = ("plan", (str(plan.run.path), source, plan.already_complete, plan.forced))
    dist.broadcast_object_list(box, src=0)
    kind, content = box[0]
    if kind == "error":
        raise plan if isinstance(plan, DeganError) else DeganError(content)
    if process.is_main:
        assert isinstance(plan, RunPlan)
        return plan
    path, source, complete, forced = content
    payload = None
    if source is not None:
        payload = load_checkpoint(Path(source))
        payload["_forced"] = forced
    return RunPlan(run=RunDir(path), resume_payload=payload, already_complete=complete, forced=forced)


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
    planned: RunPlan | DeganError | None = None
    if process.is_main:
        try:
            planned = plan_run(resolved, seed, out=out, resume=resume, force=force)
            if not planned.already_complete:
                ensure_prepared(recipe.dataset, recipe.data.resolution)
        except DeganError as err:
            planned = err
    plan = share_plan(planned, process)
    if plan.resume_payload is not None:
        # --force also accepts a resume with another process count that is not exact (state.py)
        plan.resume_payload["_force"] = force
    if process.is_main and plan.notice:
        console.print(f"[yellow]note[/]: {plan.notice}", highlight=False, soft_wrap=True)
    if plan.already_complete:
        if process.is_main:
            console.print(
                f"{plan.run.path} is already complete; nothing to do (metrics: {plan.run.metrics_path})",
                highlight=False,
            )
        return None
    dataset = load_prepared(recipe.dataset, recipe.data.resolution, "train", recipe.data.subset_rule)
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
        if process.is_main:
            info = plan.run.read_info()
            info.status = "failed" if not isinstance(err, KeyboardInterrupt) else "stopped"
            plan.run.write_info(info)
            plan.run.log(f"{info.status}: {type(err).__name__}: {err}\n{traceback.format_exc()}")
        raise
    if process.is_main:
        if result.status == "complete":
            console.print(f"[bold green]complete[/]: {plan.run.path}", highlight=False, soft_wrap=True)
        else:
            console.print(
                f"[yellow]stopped[/] at kimg {result.cur_nimg / 1000:.3f}: continue with "
                f"`degan-bench run {resolved.method} {resolved.dataset} --preset {resolved.preset} "
                f"--seed {seed}"
                + "".join(f" --set {o}" for o in resolved.overrides)
                + (f" --out {out}" if out else "")
                + _layout_options(process)
                + " --resume auto`",
                highlight=False,
                soft_wrap=True,
            )
    return result


def _layout_options(process: ProcessGroup) -> str:
    """The ``run`` options that start this run's processes again (in the continue hint)."""
    if process.world_size == 1:
        return ""
    import os

    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", process.world_size))
    nodes = process.world_size // per_node
    return f" --gpus {per_node}" + (f" --nnodes {nodes} --rdzv-endpoint HOST:PORT" if nodes > 1 else "")
