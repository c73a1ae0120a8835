"""Toy networks and contexts for the method tests of the hinge (BigGAN) objective: 3 x 4 x 4 images, a
linear G and a linear D, a MethodContext, and the hinge objective around a method."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from degan_bench.methods.base import Method, MethodContext
from degan_bench.recipes.schema import LossConfig, Recipe, TrainingConfig
from degan_bench.training.objectives import get_objective
from degan_bench.training.objectives.base import Objective, ObjectiveContext

SHAPE = (3, 4, 4)
CPU = torch.device("cpu")


class ToyG(nn.Module):
    z_dim, c_dim = 3, 0

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 48)

    def forward(self, z: torch.Tensor, c: Any = None, **_: Any) -> torch.Tensor:
        return self.fc(z).view(-1, *SHAPE)


class LinearD(nn.Module):
    """D(x) = w . x (so grad_x D = w for every sample), recording the batch size of every forward (to
    count D passes)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(SHAPE))
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor, c: Any = None, return_features: bool = False) -> Any:
        self.calls.append(len(x))
        logits = (x * self.w).flatten(1).sum(1, keepdim=True)
        return (logits, x.flatten(1)) if return_features else logits


def method_context(
    D: nn.Module, G: nn.Module | None = None, objective: str = "hinge", **changes: Any
) -> MethodContext:
    """A method's context around the toy networks (G and G_ema: ``G`` or the identity); ``changes``
    replace any field."""
    fields: dict[str, Any] = dict(
        G=G or nn.Identity(), D=D, G_ema=G or nn.Identity(), device=CPU, resolution=4, num_images=10,
        batch=4, batch_gpu=4, total_kimg=1.0, g_lr=1e-3, d_lr=1e-3, betas=(0.0, 0.99), objective=objective,
    )  # fmt: skip
    return MethodContext(**{**fields, **changes})


def hinge_recipe(method: str, batch: int) -> Recipe:
    """4 D steps per G step, no R1 or path length, batch_gpu 3 (``batch`` / 3 accumulation rounds)."""
    return Recipe(
        method=method, dataset="cifar10", purpose="demo",
        loss=LossConfig(kind="hinge", d_steps=4, r1_gamma=0.0, pl_weight=0.0),
        training=TrainingConfig(batch=batch, batch_gpu=3, ema_decay=0.9, ema_start_step=1),
    )  # fmt: skip


def hinge_objective(method: Method, G: nn.Module, D: nn.Module, recipe: Recipe) -> Objective:
    """The hinge objective of ``recipe`` (:func:`hinge_recipe`) training ``G`` and ``D`` with ``method``."""
    batch_gpu = recipe.training.batch_gpu or recipe.training.batch
    return get_objective("hinge")(
        ObjectiveContext(
            G=G, D=D, G_ema=method.ctx.G_ema, method=method, recipe=recipe, device=CPU, batch_gpu=batch_gpu,
            rounds=recipe.training.batch // batch_gpu, world_size=1, autocast=contextlib.nullcontext,
            scaler=None, labels=None,
        )
    )  # fmt: skip
