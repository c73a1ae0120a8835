"""One recipe's real training step outside the loop, for timing.

:func:`build_trainer` builds G, D, G_ema, the method and the objective of the recipe's ``loss.kind``
the way :func:`degan_bench.training.loop.train` builds them (same seeding, backend switches,
autocast/scaler, channels_last and ``torch.compile`` handling), on seeded random real images of the
recipe's resolution (the step's cost does not depend on their content, so no dataset is needed).
:meth:`BenchTrainer.run_cycle` then runs one full schedule cycle through the objective's own
``train_minibatch``: for StyleGAN2 the least common multiple of the lazy intervals (paper256: 16
minibatches, so G, Greg every 4th, D, Dreg every 16th each run exactly as often as in training), for
the hinge objective one iteration (``d_steps`` D steps and the G step).

``tests/test_bench.py`` checks that a bench trainer and the training loop produce the same weights from
the same seed, so this construction cannot drift from the loop's unnoticed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from degan_bench.data.store import PreparedDataset
from degan_bench.errors import RecipeError
from degan_bench.methods import get_method
from degan_bench.methods.base import Method, MethodContext
from degan_bench.models import build_models
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.loop import _autocast_and_scaler, configure_backends, seed_everything
from degan_bench.training.objectives import get_objective
from degan_bench.training.objectives.base import MinibatchInfo, Objective, ObjectiveContext, RealSource
from degan_bench.training.sampler import RealImageSampler
from degan_bench.training.stats import StatsCollector
from degan_bench.training.streams import RandomStreams

#: ``torch.compile`` modes the bench can apply to the StyleGAN2 objective's single-backward passes
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def random_dataset(resolved: ResolvedRecipe, *, count: int, seed: int = 0) -> PreparedDataset:
    """``count`` seeded random uint8 images (and labels for conditional models) at the recipe's size."""
    resolution = resolved.recipe.data.resolution
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (count, resolution, resolution, 3), dtype=np.uint8)
    c_dim = int(getattr(resolved.model, "c_dim", 0) or 0)
    labels = (np.arange(count) % c_dim).astype(np.int64) if c_dim else None
    return PreparedDataset(name=resolved.dataset, split="train", images=images, labels=labels)


@dataclass
class BenchTrainer:
    """The objective of one recipe with its networks, stepping minibatches as the loop does."""

    resolved: ResolvedRecipe
    device: torch.device
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    method: Method
    objective: Objective
    sampler: RealImageSampler
    stats: StatsCollector
    streams: RandomStreams
    cycle: int  # minibatches in one full schedule cycle
    batch_idx: int = 0
    cur_nimg: int = 0
    next_reals: RealSource | None = None  # replaces the sampler (FLOP counting on the meta device)

    @property
    def reals_per_cycle(self) -> int:
        return self.cycle * self.objective.reals_per_minibatch()

    def minibatch(self) -> int:
        """One minibatch through the objective (all its phases), then the method's end-of-minibatch."""
        self.streams.begin_minibatch(self.batch_idx)
        consumed = self.objective.train_minibatch(
            self.next_reals or self.sampler.next,
            MinibatchInfo(batch_idx=self.batch_idx, cur_nimg=self.cur_nimg),
            self.stats,
        )
        self.streams.shared("end")
        self.cur_nimg += consumed
        self.batch_idx += 1
        self.method.end_of_minibatch(self.cur_nimg, self.batch_idx)
        return consumed

    def run_cycle(self) -> int:
        """``cycle`` consecutive minibatches (any such run holds each phase as often as a cycle from a
        boundary does); returns the real images consumed."""
        consumed = sum(self.minibatch() for _ in range(self.cycle))
        self.stats.reset()
        return consumed

    def close(self) -> None:
        self.sampler.close()


def schedule_cycle(objective: Objective) -> int:
    """Minibatches after which the objective's phase pattern repeats (1 without lazy phases)."""
    intervals = [int(phase.interval) for phase in getattr(objective, "phases", [])]
    return math.lcm(*intervals) if intervals else 1


def build_trainer(
    resolved: ResolvedRecipe,
    device: torch.device,
    *,
    workdir: Path,
    seed: int = 0,
    dataset: PreparedDataset | None = None,
    compile_mode: str | None = None,
) -> BenchTrainer:
    """The recipe's objective, method and networks on ``device`` (see the module docstring).

    ``compile_mode`` (StyleGAN2 only) compiles the objective's single-backward passes (``G.synthesis``
    and ``D``, as ``performance.compile`` does) with that ``torch.compile`` mode instead of the default;
    ``reduce-overhead`` adds CUDA graphs. The R1 and path-length passes stay eager either way.
    """
    recipe = resolved.recipe
    tcfg, perf = recipe.training, recipe.performance
    if dataset is None:
        per_minibatch = tcfg.batch * (recipe.loss.d_steps if recipe.loss.kind == "hinge" else 1)
        dataset = random_dataset(resolved, count=max(4 * per_minibatch, 64), seed=seed)
    seed_everything(seed)
    configure_backends(perf, device)
    G, D = build_models(resolved.model, recipe.data.resolution)
    G, D = G.to(device).train(), D.to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    batch_gpu = min(tcfg.batch_gpu or tcfg.batch, tcfg.batch)
    if tcfg.batch % batch_gpu:
        raise RecipeError(f"training.batch {tcfg.batch} is not a multiple of batch_gpu {batch_gpu}")
    rounds = tcfg.batch // batch_gpu
    sampler = RealImageSampler(
        dataset.images,
        batch=tcfg.batch,
        seed=seed,
        mirror=recipe.data.mirror,
        device=device,
        labels=dataset.labels,
    )
    autocast, scaler = _autocast_and_scaler(perf, device, lambda _message: None)
    objective_cls = get_objective(recipe.loss.kind)
    method_cls = get_method(recipe.method)
    method = method_cls(
        resolved.method_config,
        MethodContext(
            G=G,
            D=D,
            G_ema=G_ema,
            device=device,
            resolution=recipe.data.resolution,
            num_images=sampler.length,
            batch=tcfg.batch,
            batch_gpu=batch_gpu,
            total_kimg=float(tcfg.kimg),
            g_lr=tcfg.g_lr,
            d_lr=tcfg.d_lr,
            betas=tuple(tcfg.betas),
            recipe=recipe,
            objective=objective_cls.kind,
            autocast=autocast,
            scaler=scaler,
            run_dir=workdir,
            seed=seed,
        ),
    )
    streams = RandomStreams(seed, rank=0, world_size=1)  # every draw keyed as the loop keys it
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
            world_size=1,
            autocast=autocast,
            scaler=scaler,
            labels=dataset.labels,
            streams=streams,
        )
    )
    if compile_mode is not None:
        _recompile(objective, compile_mode)
    return BenchTrainer(
        resolved=resolved,
        device=device,
        G=G,
        D=D,
        G_ema=G_ema,
        method=method,
        objective=objective,
        sampler=sampler,
        stats=StatsCollector(),
        streams=streams,
        cycle=schedule_cycle(objective),
    )


def _recompile(objective: Objective, mode: str) -> None:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}: choose one of {', '.join(COMPILE_MODES)}")
    nets: Any = getattr(getattr(objective, "loss", None), "nets", None)
    if nets is None:
        raise RecipeError(
            f"compile_mode applies to the StyleGAN2 objective (loss.kind ns_r1), not {objective.kind!r}"
        )
    options: dict[str, Any] = {} if mode == "default" else {"mode": mode}
    nets.synthesis_fast = torch.compile(nets.G.synthesis, **options)
    nets.D_fast = torch.compile(nets.D, **options)
