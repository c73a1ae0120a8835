"""The generic GAN training loop, counted in images shown to D (kimg).

Per global minibatch: the phases ``G`` [``Greg``] ``D`` [``Dreg``] (lazy regularization as in
StyleGAN2: a regularizer with interval k > 1 runs every k minibatches with its loss scaled by k, and the
optimizer's lr and betas are rescaled by k/(k+1)), then the G_ema update, then the method's
``end_of_minibatch``. Every ``kimg_per_tick`` kimg a tick does the maintenance: status line and
``stats.jsonl``, sample grids, checkpoint, evaluation and ``run.json``.

The loop never names a method: everything method-specific goes through
:class:`~degan_bench.methods.base.Method` hooks.

Stopping: SIGTERM/SIGINT (or ``stop_at_nimg``/``max_seconds``) end the current minibatch, write a
checkpoint and return with status ``stopped``; a second signal aborts at once. Resuming restores every
piece of state, so N + M minibatches with a stop in between equal N + M straight (tested on CPU).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.distributed import (
    ProcessGroup,
    any_process,
    average_gradients,
    barrier,
    broadcast_flag,
    broadcast_module,
    gather_objects,
)
from degan_bench.core.rundir import RunDir, RunInfo, Session, utc_now
from degan_bench.data.store import PreparedDataset
from degan_bench.errors import RecipeError, ResumeError
from degan_bench.methods import get_method
from degan_bench.methods.base import MethodContext
from degan_bench.models import build_models
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.ema import ema_beta, update_ema
from degan_bench.training.grids import grid_latents, render_fakes, save_grid
from degan_bench.training.losses import Networks, PhaseResult, StyleGAN2Loss
from degan_bench.training.sampler import RealImageSampler
from degan_bench.training.stats import (
    StatsCollector,
    TensorBoardWriter,
    cpu_memory_gb,
    gpu_peak_memory_gb,
    status_line,
)

#: signature of the evaluation function the loop calls (degan_bench.metrics.evaluate.evaluate_generator)
Evaluator = Callable[..., dict[str, Any]]


@dataclass
class TrainingSetup:
    """Everything the loop needs; built by :mod:`degan_bench.training.runner`."""

    resolved: ResolvedRecipe
    seed: int
    run: RunDir
    device: torch.device
    dataset: PreparedDataset
    resume: dict[str, Any] | None = None  # a loaded checkpoint payload
    process: ProcessGroup = field(default_factory=ProcessGroup)
    console: Console | None = None
    stop_at_nimg: int | None = None
    max_seconds: float | None = None
    evaluator: Evaluator | None = None
    tensorboard: bool = True
    handle_signals: bool = True


@dataclass
class TrainResult:
    status: str  # complete | stopped
    cur_nimg: int
    checkpoint: Path | None
    ticks: list[dict[str, Any]]


@dataclass
class Progress:
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    last_eval_nimg: int = 0
    best: dict[str, Any] | None = None  # {"protocol", "value", "kimg", "checkpoint"}
    train_seconds: float = 0.0  # wall time spent training (all sessions), excluding evaluation
    # A stop in the middle of a tick: the tick's training seconds and statistics so far, carried into
    # the resumed session so tick boundaries (and with them snapshot and evaluation points) do not move.
    partial_tick_seconds: float = 0.0


class StopRequest:
    """Turns the first SIGTERM/SIGINT into a graceful stop; the second one aborts."""

    def __init__(self, enabled: bool) -> None:
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.reason is not None:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        if self._enabled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def configure_backends(perf: Any, device: torch.device) -> None:
    torch.backends.cuda.matmul.allow_tf32 = bool(perf.tf32)
    torch.backends.cudnn.allow_tf32 = bool(perf.tf32)
    torch.backends.cudnn.benchmark = bool(perf.cudnn_benchmark) and device.type == "cuda"


def lazy_ratio(interval: int, active: bool) -> float:
    """lr/betas rescaling for lazy regularization (StyleGAN2 Appendix B)."""
    return interval / (interval + 1) if active and interval > 1 else 1.0


def make_optimizer(
    params: Any, lr: float, betas: tuple[float, float], eps: float, ratio: float
) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=eps)


class _Phase:
    def __init__(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, interval: int) -> None:
        self.name = name
        self.module = module
        self.opt = opt
        self.interval = interval


def _label_sampler(
    dataset: PreparedDataset, c_dim: int, device: torch.device
) -> Callable[[int], torch.Tensor]:
    """Labels for fakes drawn from the training set's label distribution (as stylegan2-ada does)."""
    if c_dim == 0:
        return lambda n: torch.zeros(n, 0, device=device)
    if dataset.labels is None:
        raise ValueError(f"the model is conditional (c_dim={c_dim}) but {dataset.name} has no labels")
    labels = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.long)

    def draw(n: int) -> torch.Tensor:
        idx = torch.randint(len(labels), (n,))
        return torch.nn.functional.one_hot(labels[idx], c_dim).float().to(device)

    return draw


def train(setup: TrainingSetup) -> TrainResult:
    resolved, run, device, proc = setup.resolved, setup.run, setup.device, setup.process
    recipe = resolved.recipe
    tcfg, lcfg, perf = recipe.training, recipe.loss, recipe.performance
    console = setup.console or Console()
    is_main = proc.is_main

    def say(message: str) -> None:
        if is_main:
            console.print(message, highlight=False, soft_wrap=True)

    def log(message: str) -> None:
        if is_main:
            run.log(message)
            say(message)

    # -- construction (deterministic from the seed, identical on every process) -------------------
    seed_everything(setup.seed)
    configure_backends(perf, device)
    resolution = recipe.data.resolution
    G, D = build_models(resolved.model, resolution)
    G, D = G.to(device).train(), D.to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    batch_rank = tcfg.batch // proc.world_size
    batch_gpu = min(tcfg.batch_gpu or batch_rank, batch_rank)
    if tcfg.batch % proc.world_size or batch_rank % batch_gpu:
        raise RecipeError(
            f"training.batch {tcfg.batch} does not split into {proc.world_size} processes x rounds of "
            f"batch_gpu {batch_gpu}",
            fix="choose batch = processes x k x batch_gpu",
        )
    mbstd = getattr(resolved.model, "mbstd_group", 0)
    if mbstd and batch_gpu % min(mbstd, batch_gpu):
        raise RecipeError(
            f"the per-device batch {batch_gpu} is not divisible by model.mbstd_group {mbstd}",
            fix=f"use training.batch_gpu that is a multiple of {mbstd} (or smaller than it)",
        )
    rounds = batch_rank // batch_gpu
    sampler = RealImageSampler(
        setup.dataset.images,
        batch=tcfg.batch,
        seed=setup.seed,
        mirror=recipe.data.mirror,
        device=device,
        labels=setup.dataset.labels,
        rank=proc.rank,
        world_size=proc.world_size,
    )
    method_cls = get_method(recipe.method)
    method = method_cls(
        resolved.method_config,
        MethodContext(
            G=G,
            D=D,
            G_ema=G_ema,
            device=device,
            resolution=resolution,
            num_images=sampler.length,
            batch=tcfg.batch,
            batch_gpu=batch_gpu,
            total_kimg=tcfg.kimg,
            g_lr=tcfg.g_lr,
            d_lr=tcfg.d_lr,
            betas=tuple(tcfg.betas),
            world_size=proc.world_size,
            rank=proc.rank,
            recipe=recipe,
        ),
    )
    for module in (G, D, G_ema, *method.modules().values()):
        broadcast_module(module)
    if proc.world_size > 1:
        # From here on each process draws its own latents and augmentations (as stylegan2-ada does).
        seed_everything(setup.seed * proc.world_size + proc.rank)
    use_pl = lcfg.pl_weight > 0
    use_r1 = lcfg.r1_gamma > 0
    g_ratio = lazy_ratio(lcfg.pl_interval, use_pl)
    d_ratio = lazy_ratio(lcfg.r1_interval, use_r1)
    opt_G = make_optimizer(G.parameters(), tcfg.g_lr, tcfg.betas, tcfg.eps, g_ratio)
    opt_D = make_optimizer(D.parameters(), tcfg.d_lr, tcfg.betas, tcfg.eps, d_ratio)

    cuda = device.type == "cuda"
    if cuda and perf.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    synthesis_fast, D_fast = G.synthesis, D
    if perf.compile:
        synthesis_fast, D_fast = torch.compile(G.synthesis), torch.compile(D)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(perf.amp)
    autocast: Callable[[], Any] = contextlib.nullcontext
    scaler = None
    if amp_dtype is not None and cuda:
        autocast = lambda: torch.autocast("cuda", dtype=amp_dtype)  # noqa: E731
        if amp_dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
    elif amp_dtype is not None:
        log(f"performance.amp={perf.amp} applies to CUDA only; training in fp32 on {device.type}")
    loss = StyleGAN2Loss(
        Networks(G, D, synthesis_fast, D_fast),
        method,
        lcfg,
        autocast,
        scale=scaler.scale if scaler is not None else None,
    )
    draw_c = _label_sampler(setup.dataset, getattr(G, "c_dim", 0), device)

    # -- state: fresh or resumed ---------------------------------------------------------------
    prog = Progress()
    stats = StatsCollector()
    if setup.resume is not None:
        _restore(setup.resume, G, D, G_ema, opt_G, opt_D, method, loss, sampler, prog, scaler, proc, stats)
        log(f"resumed from kimg {prog.cur_nimg / 1000:.3f} (tick {prog.cur_tick})")

    total_nimg = round(tcfg.kimg * 1000)
    grid_z, grid_c = grid_latents(G, tcfg.grid_size[0] * tcfg.grid_size[1], device)
    if is_main and setup.resume is None:
        _save_reals_grid(run, setup.dataset, tcfg.grid_size)
        save_grid(render_fakes(G_ema, grid_z, grid_c, batch_gpu), run.path / "fakes_init.png", tcfg.grid_size)

    phases = [_Phase("G", G, opt_G, 1)]
    if use_pl and lcfg.pl_interval > 1:
        phases.append(_Phase("Greg", G, opt_G, lcfg.pl_interval))
    phases.append(_Phase("D", D, opt_D, 1))
    if use_r1 and lcfg.r1_interval > 1:
        phases.append(_Phase("Dreg", D, opt_D, lcfg.r1_interval))
    info = run.read_info() if is_main else None
    session = Session(
        started_utc=utc_now(),
        start_nimg=prog.cur_nimg,
        device=_device_name(device),
        device_count=proc.world_size,
        forced=bool(setup.resume and setup.resume.get("_forced")),
    )
    if info is not None:
        info.sessions.append(session)
        info.status = "running"
        info.device, info.device_count = session.device, proc.world_size
        info.torch_version = torch.__version__
        run.write_info(info)
    tensorboard = TensorBoardWriter(str(run.path), enabled=setup.tensorboard and is_main)
    ticks: list[dict[str, Any]] = []
    session_start = time.time()
    tick_start_time = time.time()
    maintenance_seconds = 0.0
    status = "complete"
    last_checkpoint: Path | None = None
    eval_interval = recipe.evaluation.interval_kimg

    log(
        f"training {recipe.method} on {recipe.dataset} ({recipe.preset}) for {tcfg.kimg} kimg, "
        f"batch {tcfg.batch} ({rounds} x {batch_gpu} per process), seed {setup.seed}, device {session.device}"
    )

    with (
        StopRequest(setup.handle_signals) as stop,
        _progress_bar(console, is_main, prog, total_nimg) as advance,
    ):
        while prog.cur_nimg < total_nimg:
            reals, real_labels = sampler.next()
            real_c = (
                torch.nn.functional.one_hot(real_labels, G.c_dim).float()
                if real_labels is not None and getattr(G, "c_dim", 0)
                else torch.zeros(len(reals), 0, device=device)
            )
            if cuda and perf.channels_last:
                reals = reals.contiguous(memory_format=torch.channels_last)
            for phase in phases:
                if prog.batch_idx % phase.interval:
                    continue
                _run_phase(
                    phase,
                    prog,
                    loss,
                    method,
                    stats,
                    reals,
                    real_c,
                    draw_c,
                    batch_gpu,
                    rounds,
                    lcfg,
                    use_r1,
                    G,
                    D,
                    scaler,
                )
            update_ema(
                G_ema,
                G,
                ema_beta(
                    batch=tcfg.batch,
                    cur_nimg=prog.cur_nimg,
                    ema_kimg=tcfg.ema_kimg,
                    ema_rampup=tcfg.ema_rampup,
                    ema_start_kimg=tcfg.ema_start_kimg,
                ),
            )
            prog.cur_nimg += tcfg.batch
            prog.batch_idx += 1
            method.end_of_minibatch(prog.cur_nimg, prog.batch_idx)
            advance(prog.cur_nimg)

            done = prog.cur_nimg >= total_nimg
            elapsed = time.time() - session_start
            stopping = (
                stop.reason is not None
                or (setup.stop_at_nimg is not None and prog.cur_nimg >= setup.stop_at_nimg)
                or (setup.max_seconds is not None and elapsed >= setup.max_seconds)
            )
            stopping = any_process(stopping, device)  # every process stops after the same minibatch
            tick_ends = (
                done
                or prog.cur_tick == 0
                or prog.cur_nimg >= prog.tick_start_nimg + tcfg.kimg_per_tick * 1000
            )
            if not tick_ends and not stopping:
                continue
            if not tick_ends:
                # Stop mid-tick: checkpoint the tick in progress without ending it, so the resumed run
                # keeps the straight run's tick boundaries, snapshots and evaluation points.
                prog.partial_tick_seconds += time.time() - tick_start_time
                last_checkpoint = _checkpoint(
                    run,
                    resolved,
                    setup.seed,
                    G,
                    D,
                    G_ema,
                    opt_G,
                    opt_D,
                    method,
                    loss,
                    sampler,
                    prog,
                    scaler,
                    tcfg.keep_checkpoints,
                    stats,
                    tick_ended=False,
                    mark_best=False,
                    is_main=is_main,
                )
                status = "stopped"
                reason = _stop_reason(stop, setup, elapsed)
                if info is not None:
                    session.wall_seconds = time.time() - session_start
                    session.end_nimg = prog.cur_nimg
                    _account(info, session, prog)
                    run.write_info(info)
                log(
                    f"stopped at kimg {prog.cur_nimg / 1000:.3f}, inside tick {prog.cur_tick} ({reason}); "
                    f"checkpoint {last_checkpoint}"
                )
                session.end_reason = reason
                break

            # -- tick: report, then maintenance ----------------------------------------------------
            tick_end_time = time.time()
            tick_seconds = tick_end_time - tick_start_time + prog.partial_tick_seconds
            prog.partial_tick_seconds = 0.0
            tick_kimg = (prog.cur_nimg - prog.tick_start_nimg) / 1000
            prog.train_seconds += tick_seconds
            record = {
                "tick": prog.cur_tick,
                "kimg": prog.cur_nimg / 1000,
                "cur_nimg": prog.cur_nimg,
                "total_seconds": prog.train_seconds,
                "sec_per_tick": tick_seconds,
                "sec_per_kimg": tick_seconds / max(tick_kimg, 1e-8),
                "img_per_sec": tick_kimg * 1000 / max(tick_seconds, 1e-8),
                "maintenance_seconds": maintenance_seconds,
                "gpu_mem_gb": gpu_peak_memory_gb(device),
                "cpu_mem_gb": cpu_memory_gb(),
                "losses": stats.means(),
                "method": {k: float(v) for k, v in method.tick_stats().items()},
                "timestamp": utc_now(),
            }
            stats.reset()
            ticks.append(record)
            if is_main:
                say(status_line(record))
                run.append_stats(record)
                tensorboard.write(record)
            maintenance_start = time.time()
            _check_finite(record, log)

            if is_main and (done or prog.cur_tick % tcfg.image_snapshot_ticks == 0):
                save_grid(
                    render_fakes(G_ema, grid_z, grid_c, batch_gpu),
                    run.path / f"fakes_{prog.cur_nimg // 1000:06d}.png",
                    tcfg.grid_size,
                )

            eval_due = bool(setup.evaluator and recipe.evaluation.protocols) and (
                done
                or (
                    eval_interval is not None
                    and prog.cur_nimg // int(eval_interval * 1000)
                    > prog.last_eval_nimg // int(eval_interval * 1000)
                )
            )
            new_best = False
            if eval_due and is_main:
                new_best, eval_seconds = _evaluate_headline(setup, G_ema, prog, recipe, log, done)
                if info is not None and cuda:
                    info.eval_gpu_hours += eval_seconds / 3600
            if eval_due:
                prog.last_eval_nimg = prog.cur_nimg
                new_best = broadcast_flag(new_best, device)

            if done or stopping or new_best or prog.cur_tick % tcfg.snapshot_ticks == 0:
                last_checkpoint = _checkpoint(
                    run,
                    resolved,
                    setup.seed,
                    G,
                    D,
                    G_ema,
                    opt_G,
                    opt_D,
                    method,
                    loss,
                    sampler,
                    prog,
                    scaler,
                    tcfg.keep_checkpoints,
                    stats,
                    tick_ended=True,
                    mark_best=new_best,
                    is_main=is_main,
                )

            if info is not None:
                session.wall_seconds = time.time() - session_start
                session.end_nimg = prog.cur_nimg
                _account(info, session, prog)
                run.write_info(info)

            prog.cur_tick += 1
            prog.tick_start_nimg = prog.cur_nimg
            maintenance_seconds = time.time() - maintenance_start
            tick_start_time = time.time()
            if done:
                break
            if stopping:
                status = "stopped"
                reason = _stop_reason(stop, setup, elapsed)
                log(f"stopped at kimg {prog.cur_nimg / 1000:.3f} ({reason}); checkpoint {last_checkpoint}")
                session.end_reason = reason
                break

    sampler.close()
    tensorboard.close()
    if status == "complete":
        session.end_reason = "complete"
        if is_main and setup.evaluator is not None:
            eval_seconds = _final_evaluation(setup, G_ema, prog, recipe, log)
            if info is not None and cuda:
                info.eval_gpu_hours += eval_seconds / 3600
    if info is not None:
        session.ended_utc = utc_now()
        session.end_nimg = prog.cur_nimg
        session.wall_seconds = time.time() - session_start
        info.sessions[-1] = session
        info.status = status
        _account(info, session, prog)
        run.write_info(info)
    return TrainResult(status=status, cur_nimg=prog.cur_nimg, checkpoint=last_checkpoint, ticks=ticks)


# -- phases ------------------------------------------------------------------------------------
def _run_phase(
    phase: _Phase,
    prog: Progress,
    loss: StyleGAN2Loss,
    method: Any,
    stats: StatsCollector,
    reals: torch.Tensor,
    real_c: torch.Tensor,
    draw_c: Callable[[int], torch.Tensor],
    batch_gpu: int,
    rounds: int,
    lcfg: Any,
    use_r1: bool,
    G: torch.nn.Module,
    D: torch.nn.Module,
    scaler: Any,
) -> None:
    """One phase: rounds of forward/backward, gradient clean-up and averaging, one optimizer step, then
    the method's after-step hooks (a method steps its own optimizers there)."""
    G.requires_grad_(phase.module is G)
    D.requires_grad_(phase.module is D)
    phase.opt.zero_grad(set_to_none=True)
    device = reals.device
    z_dim = G.z_dim
    gain = 1.0 / rounds
    results: list[PhaseResult] = []
    if phase.name == "G":
        for _ in range(rounds):
            z = torch.randn(batch_gpu, z_dim, device=device)
            results.append(loss.g_main(z, draw_c(batch_gpu), gain, prog.cur_nimg))
        if lcfg.pl_weight > 0 and lcfg.pl_interval == 1:
            for _ in range(rounds):
                n = max(batch_gpu // lcfg.pl_batch_shrink, 1)
                results.append(loss.g_path_length(torch.randn(n, z_dim, device=device), draw_c(n), gain))
    elif phase.name == "Greg":
        for _ in range(rounds):
            n = max(batch_gpu // lcfg.pl_batch_shrink, 1)
            results.append(
                loss.g_path_length(torch.randn(n, z_dim, device=device), draw_c(n), gain * phase.interval)
            )
    elif phase.name == "D":
        with_r1 = use_r1 and lcfg.r1_interval == 1
        for real_chunk, c_chunk in zip(reals.split(batch_gpu), real_c.split(batch_gpu), strict=True):
            z = torch.randn(batch_gpu, z_dim, device=device)
            results.append(
                loss.d_main(
                    real_chunk,
                    c_chunk,
                    z,
                    draw_c(batch_gpu),
                    gain,
                    prog.cur_nimg,
                    with_r1=with_r1,
                    r1_gain=1.0,
                )
            )
    elif phase.name == "Dreg":
        for real_chunk, c_chunk in zip(reals.split(batch_gpu), real_c.split(batch_gpu), strict=True):
            results.append(loss.d_r1(real_chunk, c_chunk, gain, float(phase.interval), prog.cur_nimg))
    params = [p for p in phase.module.parameters()]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if scaler is not None:
        scaler.unscale_(phase.opt)
    for p in params:
        torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
    average_gradients(params)
    if scaler is not None:
        scaler.step(phase.opt)
        scaler.update()
    else:
        phase.opt.step()
    for result in results:
        stats.add(result.stats)
        if result.step is None:
            continue
        if phase.name == "G":
            method.after_g_step(result.step)
        elif phase.name in ("D", "Dreg"):
            method.after_d_step(result.step)


# -- checkpoint payload ----------------------------------------------------------------------------
def _stop_reason(stop: StopRequest, setup: TrainingSetup, elapsed: float) -> str:
    if stop.reason:
        return stop.reason
    return "max_seconds" if setup.max_seconds is not None and elapsed >= setup.max_seconds else "stop_at_nimg"


def _checkpoint(
    run: RunDir,
    resolved: ResolvedRecipe,
    seed: int,
    G: Any,
    D: Any,
    G_ema: Any,
    opt_G: Any,
    opt_D: Any,
    method: Any,
    loss: StyleGAN2Loss,
    sampler: RealImageSampler,
    prog: Progress,
    scaler: Any,
    keep: int,
    stats: StatsCollector,
    *,
    tick_ended: bool,
    mark_best: bool,
    is_main: bool,
) -> Path | None:
    """Write a checkpoint (collective: every process contributes its own random streams and path-length
    mean, each tracked per process as stylegan2-ada does). Returns the path on rank 0."""
    per_process = gather_objects(
        {
            "rng": ckpt.capture_rng_state(),
            "pl_mean": loss.pl_mean.detach().cpu(),
            "tick_stats": None if tick_ended else stats.state_dict(),
        }
    )
    path = None
    if is_main:
        payload = _payload(
            resolved,
            seed,
            G,
            D,
            G_ema,
            opt_G,
            opt_D,
            method,
            loss,
            sampler,
            prog,
            scaler,
            per_process,
            tick_ended=tick_ended,
        )
        path = ckpt.save_checkpoint(run, payload, keep)
        if mark_best:
            ckpt.mark_best(run, path)
    barrier()
    return path


def _payload(
    resolved: ResolvedRecipe,
    seed: int,
    G: Any,
    D: Any,
    G_ema: Any,
    opt_G: Any,
    opt_D: Any,
    method: Any,
    loss: StyleGAN2Loss,
    sampler: RealImageSampler,
    prog: Progress,
    scaler: Any,
    per_process: list[dict[str, Any]],
    *,
    tick_ended: bool,
) -> dict[str, Any]:
    # Written at the end of a tick, the next tick starts here; written inside one (a stop mid-tick),
    # the tick in progress is saved as it is, with its seconds and statistics so far.
    return {
        "recipe": resolved.data,
        "recipe_hash": resolved.hash,
        "seed": seed,
        "progress": {
            "cur_nimg": prog.cur_nimg,
            "cur_tick": prog.cur_tick + 1 if tick_ended else prog.cur_tick,
            "batch_idx": prog.batch_idx,
            "tick_start_nimg": prog.cur_nimg if tick_ended else prog.tick_start_nimg,
            "last_eval_nimg": prog.last_eval_nimg,
            "train_seconds": prog.train_seconds,
            "partial_tick_seconds": 0.0 if tick_ended else prog.partial_tick_seconds,
        },
        "tick_stats": [state["tick_stats"] for state in per_process],
        "cur_nimg": prog.cur_nimg,
        "best": prog.best,
        "G": G.state_dict(),
        "D": D.state_dict(),
        "G_ema": G_ema.state_dict(),
        "opt_G": opt_G.state_dict(),
        "opt_D": opt_D.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "method": {
            "name": method.name,
            "modules": {k: m.state_dict() for k, m in method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in method.optimizers().items()},
            "state": method.state_dict(),
        },
        "loss": {"pl_mean": [state["pl_mean"] for state in per_process]},
        "sampler": sampler.state_dict(),
        "rng": [state["rng"] for state in per_process],  # one entry per process, by rank
    }


def _restore(
    payload: dict[str, Any],
    G: Any,
    D: Any,
    G_ema: Any,
    opt_G: Any,
    opt_D: Any,
    method: Any,
    loss: StyleGAN2Loss,
    sampler: RealImageSampler,
    prog: Progress,
    scaler: Any,
    proc: ProcessGroup,
    stats: StatsCollector,
) -> None:
    G.load_state_dict(payload["G"])
    D.load_state_dict(payload["D"])
    G_ema.load_state_dict(payload["G_ema"])
    opt_G.load_state_dict(payload["opt_G"])
    opt_D.load_state_dict(payload["opt_D"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    saved = payload["method"]
    if saved["name"] != method.name:
        raise ValueError(f"checkpoint holds method {saved['name']!r}, the recipe says {method.name!r}")
    for name, module in method.modules().items():
        module.load_state_dict(saved["modules"][name])
    for name, opt in method.optimizers().items():
        opt.load_state_dict(saved["optimizers"][name])
    method.load_state_dict(saved["state"])
    sampler.load_state_dict(payload["sampler"])
    p = payload["progress"]
    prog.cur_nimg, prog.cur_tick, prog.batch_idx = p["cur_nimg"], p["cur_tick"], p["batch_idx"]
    prog.tick_start_nimg, prog.last_eval_nimg = p["tick_start_nimg"], p["last_eval_nimg"]
    prog.train_seconds = p["train_seconds"]
    prog.partial_tick_seconds = p.get("partial_tick_seconds", 0.0)
    prog.best = payload.get("best")
    states = payload["rng"]
    if len(states) != proc.world_size:
        raise ResumeError(
            f"the checkpoint was written by {len(states)} processes, this run has {proc.world_size}: "
            "the random streams cannot be continued exactly",
            fix=f"resume with {len(states)} processes",
        )
    ckpt.restore_rng_state(states[proc.rank])
    loss.pl_mean.copy_(payload["loss"]["pl_mean"][proc.rank])
    tick_stats = payload.get("tick_stats", [None] * len(states))[proc.rank]
    if tick_stats:
        stats.load_state_dict(tick_stats, loss.pl_mean.device)


# -- maintenance helpers ---------------------------------------------------------------------------
@contextlib.contextmanager
def _progress_bar(
    console: Console, is_main: bool, prog: Progress, total_nimg: int
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar in kimg on interactive terminals (tick lines print above it); a no-op in logs."""
    if not (is_main and console.is_terminal):
        yield lambda _nimg: None
        return
    bar = RichProgress(
        TextColumn("[bold]kimg"),
        BarColumn(),
        TextColumn("{task.completed:.1f} / {task.total:.1f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("train", total=total_nimg / 1000, completed=prog.cur_nimg / 1000)
    with bar:
        yield lambda nimg: bar.update(task, completed=nimg / 1000)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def _account(info: RunInfo, session: Session, prog: Progress) -> None:
    info.cur_nimg = prog.cur_nimg
    gpu = sum(s.wall_seconds * s.device_count for s in info.sessions if s.device != "cpu")
    cpu = sum(s.wall_seconds for s in info.sessions if s.device == "cpu")
    info.gpu_hours = gpu / 3600
    info.cpu_hours = cpu / 3600


def _check_finite(record: dict[str, Any], log: Callable[[str], None]) -> None:
    bad = [k for k, v in record["losses"].items() if not math.isfinite(v)]
    if bad:
        log(f"warning: non-finite losses at kimg {record['kimg']:.1f}: {', '.join(bad)}")


def _save_reals_grid(run: RunDir, dataset: PreparedDataset, grid: tuple[int, int]) -> None:
    count = min(grid[0] * grid[1], len(dataset))
    order = np.random.RandomState(0).permutation(len(dataset))[:count]
    save_grid(np.stack([dataset.images[i] for i in sorted(order)]), run.path / "reals.png", grid)


@contextlib.contextmanager
def _preserve_rng() -> Iterator[None]:
    """Evaluation must not perturb the training random streams (exact resume)."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(
        devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    ):
        yield
    random.setstate(py)
    np.random.set_state(np_state)


def _eval_record(setup: TrainingSetup, G_ema: Any, protocol: str, seed_offset: int) -> dict[str, Any]:
    recipe = setup.resolved.recipe
    assert setup.evaluator is not None
    with _preserve_rng():
        return setup.evaluator(
            G_ema,
            protocol,
            dataset=recipe.dataset,
            resolution=recipe.data.resolution,
            subset_rule=recipe.data.subset_rule,
            device=setup.device,
            seed=seed_offset,
            on_missing_weights="pending",
        )


def _evaluate_headline(
    setup: TrainingSetup, G_ema: Any, prog: Progress, recipe: Any, log: Callable[[str], None], done: bool
) -> tuple[bool, float]:
    """Evaluate the headline protocol (for best-checkpoint selection during training, and as the
    ``last`` number at the end). Returns (is a new best, seconds spent)."""
    protocol = recipe.evaluation.protocols[0]
    start = time.time()
    record = _eval_record(setup, G_ema, protocol, seed_offset=0)
    record.update(
        kimg=prog.cur_nimg / 1000,
        cur_nimg=prog.cur_nimg,
        checkpoint="last" if done else ckpt.checkpoint_name(prog.cur_nimg),
        checkpoint_file=ckpt.checkpoint_name(prog.cur_nimg),
        purpose="last" if done else "selection",
    )
    setup.run.append_metric(record)
    seconds = time.time() - start
    if record.get("status") != "ok":
        log(
            f"{protocol} left pending: {record.get('reason', 'unavailable')} -- the run is kept; "
            f"`degan-bench eval {setup.run.path}` fills it in once the weights are available"
        )
        return False, seconds
    log(f"{protocol} = {record['value']:.4f} at kimg {prog.cur_nimg / 1000:.1f}")
    if not recipe.evaluation.select_best:
        return False, seconds
    lower_is_better = record.get("lower_is_better", True)
    best = prog.best
    improved = best is None or (
        record["value"] < best["value"] if lower_is_better else record["value"] > best["value"]
    )
    if improved:
        prog.best = {
            "protocol": protocol,
            "value": record["value"],
            "kimg": prog.cur_nimg / 1000,
            "cur_nimg": prog.cur_nimg,
            "split": record.get("protocol_record", {}).get("reference_split"),
        }
    return improved, seconds


def _final_evaluation(
    setup: TrainingSetup, G_ema: Any, prog: Progress, recipe: Any, log: Callable[[str], None]
) -> float:
    """The other protocols on the last G_ema, and the headline on ``best`` with fresh evaluation seeds.
    Returns the seconds spent."""
    run = setup.run
    start = time.time()
    for protocol in recipe.evaluation.protocols[1:]:
        record = _eval_record(setup, G_ema, protocol, seed_offset=0)
        record.update(kimg=prog.cur_nimg / 1000, cur_nimg=prog.cur_nimg, checkpoint="last", purpose="last")
        run.append_metric(record)
    best = prog.best
    best_path = run.checkpoint_dir / ckpt.BEST_NAME
    if best is None or best["cur_nimg"] == prog.cur_nimg or not best_path.exists():
        return time.time() - start
    G_best, _recipe = ckpt.load_generator(best_path, setup.device)
    # Fresh evaluation seeds: the selection run's noise must not flatter the reported number.
    record = _eval_record(setup, G_best, best["protocol"], seed_offset=1)
    record.update(
        kimg=best["kimg"],
        cur_nimg=best["cur_nimg"],
        checkpoint="best",
        purpose="best",
        selection={
            "protocol": best["protocol"],
            "split": best.get("split"),
            "value": best["value"],
            "eval_seed": 0,
        },
    )
    run.append_metric(record)
    if record.get("status") == "ok":
        log(
            f"best ({best['protocol']} at kimg {best['kimg']:.1f}) re-evaluated with fresh seeds: "
            f"{record['value']:.4f}"
        )
    return time.time() - start
