"""The one construction path of a run's training parts, shared by the loop and the bench.

:func:`build_training_parts` seeds, sets the backend switches, builds G, D and G_ema, splits the batch
over processes and accumulation rounds, and builds the real-image sampler, autocast/scaler, the method
(with its :class:`~degan_bench.methods.base.MethodContext`), the per-chunk random streams and the
objective of the recipe's ``loss.kind``, in that order (the order fixes every random draw).
:meth:`TrainingParts.minibatch` is the loop's minibatch step. :func:`degan_bench.training.loop.train`
and :func:`degan_bench.bench.trainer.build_trainer` both use them, so the bench times exactly what the
loop trains.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from degan_bench.core.distributed import ProcessGroup, broadcast_module
from degan_bench.data.store import PreparedDataset
from degan_bench.errors import RecipeError
from degan_bench.methods import get_method
from degan_bench.methods.base import Method, MethodContext
from degan_bench.models import build_models
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.objectives import get_objective
from degan_bench.training.objectives.base import MinibatchInfo, Objective, ObjectiveContext, RealSource
from degan_bench.training.sampler import RealImageSampler
from degan_bench.training.stats import StatsCollector
from degan_bench.training.streams import RandomStreams


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def configure_backends(perf: Any, device: torch.device) -> None:
    torch.backends.cuda.matmul.allow_tf32 = bool(perf.tf32)
    torch.backends.cudnn.allow_tf32 = bool(perf.tf32)
    torch.backends.cudnn.benchmark = bool(perf.cudnn_benchmark) and device.type == "cuda"


def autocast_and_scaler(perf: Any, device: torch.device, log: Callable[[str], None]) -> tuple[Any, Any]:
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(perf.amp)
    if amp_dtype is None:
        return contextlib.nullcontext, None
    if device.type != "cuda":
        log(f"performance.amp={perf.amp} applies to CUDA only; training in fp32 on {device.type}")
        return contextlib.nullcontext, None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=amp_dtype)), scaler


class MinibatchCounter(Protocol):
    """Where a minibatch step counts: the loop's :class:`~degan_bench.training.state.Progress`."""

    cur_nimg: int
    batch_idx: int


@dataclass
class TrainingParts:
    """A run's networks, method, objective and data, built by :func:`build_training_parts`."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    method: Method
    objective: Objective
    sampler: RealImageSampler
    streams: RandomStreams
    autocast: Callable[[], Any]
    scaler: Any  # torch.amp.GradScaler for fp16, else None
    batch_gpu: int  # per-device batch of one accumulation round
    rounds: int  # accumulation rounds per process and minibatch
    total_nimg: int  # the run's length in real images shown to D

    def minibatch(
        self, counter: MinibatchCounter, stats: StatsCollector, next_reals: RealSource | None = None
    ) -> int:
        """One minibatch through the objective (all its phases), the counters advanced, then the
        method's end-of-minibatch; returns the real images consumed by all processes."""
        self.streams.begin_minibatch(counter.batch_idx)
        consumed = self.objective.train_minibatch(
            next_reals or self.sampler.next,
            MinibatchInfo(batch_idx=counter.batch_idx, cur_nimg=counter.cur_nimg),
            stats,
        )
        self.streams.shared("end")
        counter.cur_nimg += consumed
        counter.batch_idx += 1
        self.method.end_of_minibatch(counter.cur_nimg, counter.batch_idx)
        return consumed


def build_training_parts(
    resolved: ResolvedRecipe,
    *,
    seed: int,
    device: torch.device,
    dataset: PreparedDataset,
    run_dir: Path,
    process: ProcessGroup | None = None,
    log: Callable[[str], None] = lambda _message: None,
) -> TrainingParts:
    """Everything one process trains with, deterministic from ``seed`` and identical on every process."""
    proc = process or ProcessGroup()
    recipe = resolved.recipe
    tcfg, perf = recipe.training, recipe.performance
    seed_everything(seed)
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
    rounds = batch_rank // batch_gpu
    sampler = RealImageSampler(
        dataset.images,
        batch=tcfg.batch,
        seed=seed,
        mirror=recipe.data.mirror,
        device=device,
        labels=dataset.labels,
        rank=proc.rank,
        world_size=proc.world_size,
    )
    autocast, scaler = autocast_and_scaler(perf, device, log)
    objective_cls = get_objective(recipe.loss.kind)
    method_cls = get_method(recipe.method)
    if method_cls.objectives is not None and objective_cls.kind not in method_cls.objectives:
        raise RecipeError(
            f"method {method_cls.name!r} is defined for loss.kind {', '.join(method_cls.objectives)}, "
            f"not {objective_cls.kind!r} (model.arch {resolved.model.arch})",
            fix="use a recipe of that backbone (degan-bench recipes list)",
        )
    total_nimg = round(tcfg.kimg * 1000)  # derived from training.epochs where the recipe gives epochs
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
            total_kimg=total_nimg / 1000,
            g_lr=tcfg.g_lr,
            d_lr=tcfg.d_lr,
            betas=tuple(tcfg.betas),
            world_size=proc.world_size,
            rank=proc.rank,
            recipe=recipe,
            objective=objective_cls.kind,
            autocast=autocast,
            scaler=scaler,
            run_dir=run_dir,
            seed=seed,
        ),
    )
    for module in (G, D, G_ema, *method.modules().values()):
        broadcast_module(module)
    # From here on every draw comes from a stream keyed by minibatch, phase and chunk of the global batch,
    # not by process (degan_bench/training/streams.py): the process count only changes the layout.
    streams = RandomStreams(seed, rank=proc.rank, world_size=proc.world_size)
    if device.type == "cuda" and perf.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    objective = objective_cls(
        ObjectiveContext(
            G=G,
            D=D,
            G_ema=G_ema,
            method=method,
            recipe=recipe,
            device=device,
            batch_gpu=batch_gpu,
            rounds=rounds,
            world_size=proc.world_size,
            autocast=autocast,
            scaler=scaler,
            labels=dataset.labels,
            streams=streams,
        )
    )
    return TrainingParts(
        G=G,
        D=D,
        G_ema=G_ema,
        method=method,
        objective=objective,
        sampler=sampler,
        streams=streams,
        autocast=autocast,
        scaler=scaler,
        batch_gpu=batch_gpu,
        rounds=rounds,
        total_nimg=total_nimg,
    )
