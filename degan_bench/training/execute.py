"""Run one resolved recipe end to end: lease and plan the run directory, prepare data, train, evaluate.

Shared by ``degan-bench run`` and the sweep dispatcher, so both behave identically.

The main process leases the run directory (:mod:`degan_bench.core.lease`) before it decides what to
resume, keeps the lease alive from a heartbeat thread while it trains and evaluates, and releases it at
the end whatever happens; a second writer is refused (:class:`~degan_bench.core.lease.LeaseHeld`, exit
code 3). ``max_seconds`` counts from the call, so a budget forwarded by a sweep's deadline also covers
resuming and data loading.
"""

from __future__ import annotations

import _thread
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from degan_bench.core.checkpoint import clean_temp_files, list_checkpoints, load_checkpoint
from degan_bench.core.distributed import ProcessGroup, init_from_env
from degan_bench.core.fileio import DiskFullError, is_disk_full
from degan_bench.core.lease import Lease, LeaseHeld
from degan_bench.core.lease import acquire as acquire_lease
from degan_bench.core.rundir import RunDir, utc_now
from degan_bench.errors import DeganError
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.loop import TrainingSetup, TrainResult, train
from degan_bench.training.runner import RunPlan, plan_run, run_dir_for, select_device


def load_evaluator() -> Any:
    """The metrics entry point, imported lazily (it pulls in torch-fidelity / clean-fid)."""
    from degan_bench.metrics.evaluate import evaluate_generator

    return evaluate_generator


def share_plan(plan: RunPlan | None, process: ProcessGroup, problem: DeganError | None = None) -> RunPlan:
    """Rank 0's run plan on every process (each loads the resume checkpoint itself); rank 0's error
    (a held lease, a missing dataset) is raised on every process instead."""
    if process.world_size == 1:
        if problem is not None:
            raise problem
        assert plan is not None
        return plan
    import torch.distributed as dist

    box: list[Any] = [None]
    if process.is_main:
        if problem is not None:
            box[0] = ("error", isinstance(problem, LeaseHeld), str(problem))
        else:
            assert plan is not None
            source = plan.resume_payload.get("_source") if plan.resume_payload else None
            box[0] = (str(plan.run.path), source, plan.already_complete, plan.forced)
    dist.broadcast_object_list(box, src=0)
    if len(box[0]) == 3 and box[0][0] == "error":
        if problem is not None:
            raise problem
        raise (LeaseHeld if box[0][1] else DeganError)(box[0][2])
    if process.is_main:
        assert plan is not None
        return plan
    path, source, complete, forced = box[0]
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
    lease: bool = True,
) -> TrainResult | None:
    """Train (or continue) the run of ``resolved`` x ``seed``. Returns None when it was already complete."""
    from degan_bench.data.prepare import ensure_prepared, load_prepared

    called = time.monotonic()
    console = console or Console()
    dev = select_device(device)
    process = init_from_env(dev.type)
    if dev.type == "cuda" and process.world_size > 1:
        import torch

        dev = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(dev)
    recipe = resolved.recipe
    # Rank 0 leases the run directory, decides what to resume and prepares the data; the others follow.
    plan, held, problem = None, None, None
    if process.is_main:
        try:
            if lease:
                held = _lease(run_dir_for(resolved, seed, out=out, resume=resume), console)
            plan = plan_run(resolved, seed, out=out, resume=resume, force=force)
            if not plan.already_complete:
                ensure_prepared(recipe.dataset, recipe.data.resolution)
        except BaseException as err:
            if held is not None:
                held.release()
            if plan is not None and _never_started(plan):
                _discard(plan)  # the same command can simply be run again
            if not isinstance(err, DeganError):
                raise
            problem = err
    plan = share_plan(plan, process, problem)
    if plan.resume_payload is not None:
        # --force also accepts a resume with another process count that is not exact (state.py)
        plan.resume_payload["_force"] = force
    if process.is_main and plan.notice:
        console.print(f"[yellow]note[/]: {plan.notice}", highlight=False, soft_wrap=True)
    if plan.already_complete:
        if held is not None:
            held.release()
        if process.is_main:
            console.print(
                f"{plan.run.path} is already complete; nothing to do (metrics: {plan.run.metrics_path})",
                highlight=False,
            )
        return None
    discarded = False
    try:
        if held is not None:
            # Another writer took the lease over (this process stalled past the TTL): stop writing now.
            held.on_lost = lambda _message: _thread.interrupt_main()
            held.start_heartbeat()
        try:
            dataset = load_prepared(recipe.dataset, recipe.data.resolution, "train", recipe.data.subset_rule)
        except BaseException:
            if process.is_main and _never_started(plan):
                discarded = _discard(plan, held)
            raise
        if evaluate and evaluator is None:
            evaluator = load_evaluator()
        if max_seconds is not None:
            max_seconds = max(max_seconds - (time.monotonic() - called), 0.0)
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
        result = train(setup)
    except BaseException as err:
        if held is not None and held.lost:
            raise LeaseHeld(held.lost, fix="the other writer continues this run") from None
        if not process.is_main or discarded:
            raise
        if isinstance(err, DeganError) and _never_started(plan):
            _discard(plan, held)  # bad input found while building the run: nothing was trained
            raise
        raised = _record_end(plan, err)
        if raised is err:
            raise
        raise raised from None
    finally:
        if held is not None:
            held.release()
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
                + _layout_options(process)
                + " --resume auto`",
                highlight=False,
                soft_wrap=True,
            )
    return result


def _lease(path: Path, console: Console) -> Lease:
    """Lease the run directory; a takeover of an expired lease is logged there and shown (one line)."""

    def log(message: str) -> None:
        RunDir(path).log(message)
        console.print(f"[yellow]{message}[/]", highlight=False, soft_wrap=True)

    return acquire_lease(path, command=shlex.join(sys.argv), log=log)


def _never_started(plan: RunPlan) -> bool:
    """A directory this plan created that holds no training yet (no tick, no checkpoint)."""
    run = plan.run
    return plan.created and not run.stats_path.exists() and not list_checkpoints(run.path)


def _discard(plan: RunPlan, held: Lease | None = None) -> bool:
    """Remove the directory of a run that did not start, so the same command can simply be run again
    (instead of finding an empty run that asks for --resume auto). The lease goes first: releasing it
    afterwards would write into the directory again."""
    if held is not None:
        held.release()
    shutil.rmtree(plan.run.path, ignore_errors=True)
    return True


def _record_end(plan: RunPlan, err: BaseException) -> BaseException:
    """``run.json`` after an exception: ``stopped`` for an interrupt or a full disk (resumable),
    ``failed`` otherwise, with the session's end. Returns the error to raise (a full disk becomes one
    line)."""
    run = plan.run
    disk_full = err if isinstance(err, DiskFullError) else None
    if disk_full is None and is_disk_full(err):
        disk_full = DiskFullError(Path(getattr(err, "filename", None) or run.path / "?"))
    clean_temp_files(run)  # a partial checkpoint must not keep the disk full
    try:
        info = run.read_info()
        aborted = isinstance(err, KeyboardInterrupt)
        if disk_full is not None:
            info.status, info.status_detail = "stopped", disk_full.problem  # "disk full writing ..."
        elif aborted:
            info.status = "stopped"
        else:
            info.status, info.status_detail = "failed", f"{type(err).__name__}: {err}"[:300]
        if info.sessions and info.sessions[-1].end_reason is None:
            session = info.sessions[-1]
            session.end_reason = (
                "disk full"
                if disk_full is not None
                else "aborted"
                if aborted
                else f"error: {type(err).__name__}"
            )
            session.ended_utc = utc_now()
        run.write_info(info)
        run.log(f"{info.status}: {type(err).__name__}: {err}\n{traceback.format_exc()}")
    except (OSError, DeganError):  # the disk may still be full: the error itself matters more
        pass
    return disk_full if disk_full is not None else err


def _layout_options(process: ProcessGroup) -> str:
    """The ``run`` options that start this run's processes again (in the continue hint)."""
    if process.world_size == 1:
        return ""
    import os

    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", process.world_size))
    nodes = process.world_size // per_node
    return f" --gpus {per_node}" + (f" --nnodes {nodes} --rdzv-endpoint HOST:PORT" if nodes > 1 else "")
