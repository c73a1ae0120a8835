"""One recipe's real training step outside the loop, for timing.

:func:`build_trainer` builds G, D, G_ema, the method and the objective of the recipe's ``loss.kind``
with :func:`degan_bench.training.parts.build_training_parts`, the construction
:func:`degan_bench.training.loop.train` uses (same seeding, backend switches, autocast/scaler,
channels_last), on seeded random real images of the recipe's resolution (the step's cost does not
depend on their content, so no dataset is needed), optionally with another ``torch.compile`` mode.
:meth:`BenchTrainer.run_cycle` then runs one full schedule cycle of the loop's minibatch step
(:meth:`~degan_bench.training.parts.TrainingParts.minibatch`): for StyleGAN2 the least common multiple
of the lazy intervals (paper256: 16 minibatches, so G, Greg every 4th, D, Dreg every 16th each run
exactly as often as in training), for the hinge objective one iteration (``d_steps`` D steps and the G
step).

``tests/test_bench.py`` checks that a bench trainer and the training loop produce the same weights from
the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from degan_bench.data.store import PreparedDataset
from degan_bench.errors import RecipeError
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.objectives.base import Objective, RealSource
from degan_bench.training.parts import TrainingParts, build_training_parts
from degan_bench.training.stats import StatsCollector

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
    parts: TrainingParts
    stats: StatsCollector
    cycle: int  # minibatches in one full schedule cycle
    batch_idx: int = 0
    cur_nimg: int = 0
    next_reals: RealSource | None = None  # replaces the sampler (FLOP counting on the meta device)

    @property
    def G(self) -> nn.Module:
        return self.parts.G

    @property
    def D(self) -> nn.Module:
        return self.parts.D

    @property
    def objective(self) -> Objective:
        return self.parts.objective

    @property
    def reals_per_cycle(self) -> int:
        return self.cycle * self.objective.reals_per_minibatch()

    def minibatch(self) -> int:
        """One minibatch through the objective (all its phases), then the method's end-of-minibatch."""
        return self.parts.minibatch(self, self.stats, self.next_reals)

    def run_cycle(self) -> int:
        """``cycle`` consecutive minibatches (any such run holds each phase as often as a cycle from a
        boundary does); returns the real images consumed."""
        consumed = sum(self.minibatch() for _ in range(self.cycle))
        self.stats.reset()
        return consumed

    def close(self) -> None:
        self.parts.sampler.close()


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
    tcfg = recipe.training
    if dataset is None:
        per_minibatch = tcfg.batch * (recipe.loss.d_steps if recipe.loss.kind == "hinge" else 1)
        dataset = random_dataset(resolved, count=max(4 * per_minibatch, 64), seed=seed)
    parts = build_training_parts(resolved, seed=seed, device=device, dataset=dataset, run_dir=workdir)
    objective = parts.objective
    if compile_mode is not None:
        _recompile(objective, compile_mode)
    return BenchTrainer(
        resolved=resolved,
        device=device,
        parts=parts,
        stats=StatsCollector(),
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
