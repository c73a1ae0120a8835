"""What every objective shares: its context, the optimizer step, label sampling, and the contract.

An objective owns a backbone family's schedule: which phases run in one minibatch, in which order,
with which optimizers, and when G_ema is updated. The loop only asks it to train one minibatch and
counts the real images it consumed; everything else (ticks, checkpoints, evaluation) is the loop's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from degan_bench.core.distributed import average_gradients
from degan_bench.methods.base import DStep, GStep, Method
from degan_bench.training.stats import StatsCollector
from degan_bench.training.streams import RandomStreams

#: draws the next minibatch of reals for this process: float NCHW images in [-1, 1] and labels or None
RealSource = Callable[[], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class ObjectiveContext:
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    method: Method
    recipe: Any  # the resolved Recipe
    device: torch.device
    batch_gpu: int  # per-device batch of one accumulation round
    rounds: int  # accumulation rounds per process and minibatch
    world_size: int
    autocast: Callable[[], Any]
    scaler: Any  # torch.amp.GradScaler for fp16, else None
    labels: np.ndarray | None  # training-set labels (conditional models)
    # per-chunk random streams (None: the draws continue the process's own stream, e.g. in unit tests)
    streams: RandomStreams | None = None


@dataclass
class MinibatchInfo:
    batch_idx: int  # minibatches (BigGAN: iterations) completed before this one
    cur_nimg: int  # real images shown to D before this minibatch


class Objective:
    """Base class: subclasses set ``kind`` (the recipe's ``loss.kind``) and implement the schedule."""

    kind: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, ctx: ObjectiveContext) -> None:
        self.ctx = ctx

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``{"G": ..., "D": ...}``; checkpointed by the loop as ``opt_G`` / ``opt_D``."""
        raise NotImplementedError

    def train_minibatch(self, next_reals: RealSource, info: MinibatchInfo, stats: StatsCollector) -> int:
        """Run every phase of one minibatch, including the optimizer steps and the G_ema update.
        Returns the number of real images consumed by all processes together."""
        raise NotImplementedError

    def reals_per_minibatch(self) -> int:
        """Real images (all processes) one ``train_minibatch`` consumes."""
        return self.ctx.recipe.training.batch

    # Per-process state (each process writes its own into the checkpoint, like the random streams).
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"objective {self.kind!r} has no state but the checkpoint holds {sorted(state)}")

    @classmethod
    def reshard_states(cls, states: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]] | None:
        """The per-process ``states`` of a checkpoint written by ``len(states)`` processes, redistributed
        over ``world_size`` processes that run the same chunks; None when that cannot be done exactly."""
        if any(states):
            return None
        return [{} for _ in range(world_size)]

    # -- shared pieces ---------------------------------------------------------------------------
    def enter_round(self, phase: str, index: int, rounds: int) -> None:
        """Draw round ``index`` of ``rounds`` (this process's) of ``phase`` from its chunk's stream, so the
        draws do not depend on how the chunks are spread over processes."""
        if self.ctx.streams is not None:
            self.ctx.streams.round(phase, index, rounds)

    def enter_shared(self, tag: str) -> None:
        """Work done identically by every process (e.g. after an optimizer step) draws from one stream."""
        if self.ctx.streams is not None:
            self.ctx.streams.shared(tag)

    def one_hot(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        c_dim = getattr(self.ctx.G, "c_dim", 0)
        if labels is None or not c_dim:
            return torch.zeros(n, 0, device=self.ctx.device)
        return torch.nn.functional.one_hot(labels, c_dim).float()

    def step_optimizer(
        self, phase: str, module: nn.Module, opt: torch.optim.Optimizer, steps: list[GStep | DStep]
    ) -> None:
        """Gradient clean-up and averaging, one optimizer step, then the method's hook."""
        params = list(module.parameters())
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        scaler = self.ctx.scaler
        if scaler is not None:
            scaler.unscale_(opt)
        for p in params:
            torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
        average_gradients(params)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        self.enter_shared(f"after-{phase}")
        self.ctx.method.after_optimizer_step(phase, steps)


def lazy_ratio(interval: int, active: bool) -> float:
    """lr/betas rescaling for lazy regularization (StyleGAN2 Appendix B)."""
    return interval / (interval + 1) if active and interval > 1 else 1.0


def make_optimizer(
    params: Any, lr: float, betas: tuple[float, float], eps: float, ratio: float
) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=eps)


def dataset_label_sampler(
    labels: np.ndarray | None, c_dim: int, device: torch.device
) -> Callable[[int], torch.Tensor]:
    """Labels for fakes drawn from the training set's label distribution (as stylegan2-ada does)."""
    if c_dim == 0:
        return lambda n: torch.zeros(n, 0, device=device)
    if labels is None:
        raise ValueError(f"the model is conditional (c_dim={c_dim}) but the dataset has no labels")
    table = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def draw(n: int) -> torch.Tensor:
        idx = torch.randint(len(table), (n,))
        return torch.nn.functional.one_hot(table[idx], c_dim).float().to(device)

    return draw


def uniform_label_sampler(c_dim: int, device: torch.device) -> Callable[[int], torch.Tensor]:
    """Labels for fakes uniform over the classes (BigGAN-PyTorch's categorical ``y_``)."""
    if c_dim == 0:
        return lambda n: torch.zeros(n, 0, device=device)

    def draw(n: int) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.randint(c_dim, (n,), device=device), c_dim).float()

    return draw
