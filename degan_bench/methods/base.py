"""The interface between the generic training loop and a data-efficient GAN method.

The loop (``degan_bench.training.loop``) never names a method. Per minibatch it runs the phases
``G`` (main G loss), optional ``Greg`` (path length), ``D`` (main D loss) and optional ``Dreg``
(R1), and calls the method's hooks at fixed points:

1. ``augment(images)`` transforms every D input (reals and fakes, in the G and the D step). It must
   be differentiable w.r.t. ``images`` so gradients reach G.
2. ``g_loss_terms(step)`` / ``d_loss_terms(step)`` return extra scalar losses (name -> tensor) that
   the loop adds to the G / D objective and logs as ``Loss/<phase>/<name>``.
3. ``after_d_step(step)`` / ``after_g_step(step)`` run after the optimizer step of that network
   (e.g. momentum updates, queue pushes, re-applying pruning masks).
4. ``end_of_minibatch(cur_nimg, minibatch_index)`` runs once per global minibatch, after all phases
   (e.g. ADA's p adjustment, which must see every D step).

A method owns extra state through ``modules()`` (``nn.Module`` s moved to the device and
checkpointed), ``optimizers()`` (checkpointed, stepped by the method itself in its hooks) and
``state_dict()`` / ``load_state_dict()`` for everything else (augment p, queues, counters). The loop
checkpoints all three, so resume is exact.

The no-op method (the ``stylegan2`` baseline) is ``Method`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class NoOptions:
    """Config of a method without options."""


@dataclass
class MethodContext:
    """What a method may know about the run when it is built."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    device: torch.device
    resolution: int
    num_images: int  # training images seen by D per epoch (after mirror doubling)
    batch: int  # global minibatch
    batch_gpu: int  # per-device minibatch of one accumulation round
    total_kimg: float
    g_lr: float
    d_lr: float
    betas: tuple[float, float]
    world_size: int = 1
    rank: int = 0
    recipe: Any = None  # the resolved Recipe, for methods that need more


@dataclass
class GStep:
    """One accumulation round of the G phase. Tensors are part of the autograd graph."""

    z: torch.Tensor
    c: torch.Tensor
    fakes: torch.Tensor  # G(z), NCHW in [-1, 1], requires grad through G
    fakes_aug: torch.Tensor  # method.augment(fakes)
    fake_logits: torch.Tensor  # D(fakes_aug)
    fake_features: torch.Tensor | None  # D trunk features when method.needs_d_features
    G: nn.Module
    D: nn.Module
    cur_nimg: int
    ws: torch.Tensor | None = None  # mapped latents used for fakes (style mixing applied)


@dataclass
class DStep:
    """One accumulation round of a D phase. Fakes are detached from G.

    ``phase`` is ``"main"`` (the logistic loss; every field is set and ``d_loss_terms`` is called) or
    ``"reg"`` (a lazy R1 pass over reals only: the fake fields and ``z``/``c`` are None, and only
    ``after_d_step`` sees it, so statistics such as ADA's sign(D(real)) include it as officially).
    """

    reals: torch.Tensor  # un-augmented reals, NCHW in [-1, 1]
    reals_aug: torch.Tensor
    real_logits: torch.Tensor
    real_features: torch.Tensor | None
    G: nn.Module
    D: nn.Module
    cur_nimg: int
    phase: str = "main"
    z: torch.Tensor | None = None
    c: torch.Tensor | None = None
    real_c: torch.Tensor | None = None
    fakes: torch.Tensor | None = None  # G(z) detached
    fakes_aug: torch.Tensor | None = None
    fake_logits: torch.Tensor | None = None
    fake_features: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class and the no-op method (plain StyleGAN2)."""

    name: ClassVar[str] = "stylegan2"
    Config: ClassVar[type] = NoOptions
    summary: ClassVar[str] = "StyleGAN2 without augmentation (the baseline)"
    #: ask the loop for D trunk features in every D call (InsGen, FakeCLR)
    needs_d_features: ClassVar[bool] = False

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        self.config = config
        self.ctx = ctx

    # -- D inputs ---------------------------------------------------------------------------
    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return images

    # -- losses -----------------------------------------------------------------------------
    def g_loss_terms(self, step: GStep) -> dict[str, torch.Tensor]:
        return {}

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        return {}

    # -- state updates ----------------------------------------------------------------------
    def after_g_step(self, step: GStep) -> None:
        pass

    def after_d_step(self, step: DStep) -> None:
        pass

    def end_of_minibatch(self, cur_nimg: int, minibatch_index: int) -> None:
        pass

    # -- owned state ------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} has no state but the checkpoint holds {sorted(state)}")

    # -- reporting --------------------------------------------------------------------------
    def tick_stats(self) -> dict[str, float]:
        """Scalars for the tick status line and stats.jsonl, e.g. ``{"augment_p": 0.12}``."""
        return {}
