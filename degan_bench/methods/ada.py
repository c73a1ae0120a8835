"""ADA (Karras et al., NeurIPS 2020): the stylegan2-ada-pytorch augmentation pipe with an adaptive p.

Every D input (reals and fakes, G and D steps) goes through :class:`~degan_bench.augment.ada.AdaAugment`
with strength p. ``adaptive`` tunes p from the sign of D's real outputs (the official heuristic),
``linear`` ramps it from 0 to ``target`` over training (InsGen/FakeCLR ``--ada_linear``), ``fixed``
keeps ``p_init``. With R1 on the raw reals (the official setting) the penalty's gradient passes through
the pipe, which is twice differentiable for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from degan_bench.augment.ada import AdaAugment, AdaHeuristic
from degan_bench.methods import register_method
from degan_bench.methods.base import DStep, GStep, Method, MethodContext
from degan_bench.schema import param


@dataclass
class AdaConfig:
    mode: Literal["adaptive", "fixed", "linear"] = param(
        "adaptive",
        help="'adaptive': official r_t heuristic; 'linear': p = target * kimg / total_kimg (--ada_linear); "
        "'fixed': p = p_init throughout",
    )
    target: float = param(
        0.6, help="adaptive: target of r_t = E[sign(D(real))]; linear: final p", min=0.0, max=1.0
    )
    p_init: float = param(0.0, help="p at the start of training (fixed: p throughout)", min=0.0, max=1.0)
    interval: int = param(4, help="minibatches between p adjustments", min=1)
    speed_kimg: float = param(
        500.0, help="adaptive: kimg it takes p to move by 1 (official ada_kimg)", min=0.001
    )
    augment_set: Literal["blit", "geom", "color", "bg", "bgc"] = param(
        "bgc", help="official --augpipe transform set: blit, geom, color, bg or bgc (the paper's)"
    )
    p_max: float | None = param(
        None, help="upper clamp of p; null = none (official: p is only clamped at 0)", min=0.0
    )

    def check(self) -> None:
        if self.p_max is not None and self.p_init > self.p_max:
            raise ValueError(f"p_init {self.p_init} is above p_max {self.p_max}")


class AdaAugmentation:
    """ADA as a part of a method: the pipe for every D input and the p heuristic fed with D's real
    logits. Shared by every method that trains with ADA (``ada``, ``lecam-ada``, ``lottery.ada``, the
    contrastive methods), which forward their hooks to it."""

    def __init__(self, config: AdaConfig, ctx: MethodContext) -> None:
        self.pipe = AdaAugment(config.augment_set, p=config.p_init)
        self.heuristic = AdaHeuristic(
            self.pipe,
            mode=config.mode,
            target=config.target,
            interval=config.interval,
            speed_kimg=config.speed_kimg,
            batch=ctx.batch,
            total_kimg=ctx.total_kimg,
            p_max=config.p_max,
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.pipe(images)

    def observe(self, steps: list[GStep | DStep]) -> None:
        """``after_optimizer_step``: the sign statistics of every D step's real logits."""
        for step in steps:
            if isinstance(step, DStep):
                self.heuristic.observe(step.real_logits)

    def end_of_minibatch(self, cur_nimg: int) -> None:
        self.heuristic.end_of_minibatch(cur_nimg)

    def state_dict(self) -> dict[str, Any]:
        return {"pipe": self.pipe.state_dict(), "heuristic": self.heuristic.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From :meth:`state_dict`'s keys (a method's state may hold others beside them)."""
        self.pipe.load_state_dict(state["pipe"])
        self.heuristic.load_state_dict(state["heuristic"])

    def tick_stats(self) -> dict[str, float]:
        stats = {"augment_p": self.pipe.p}
        if self.heuristic.last_rt is not None:  # no r_t before the first adjustment
            stats["ada_rt"] = self.heuristic.last_rt
        return stats


@register_method
class AdaMethod(Method):
    name = "ada"
    Config = AdaConfig
    objectives = ("ns_r1",)  # the pipe and its heuristic are StyleGAN2-ADA's
    summary = "StyleGAN2-ADA: bgc augmentation with adaptive probability p (Karras et al. 2020)"

    def __init__(self, config: AdaConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.ada = AdaAugmentation(config, ctx)

    @property
    def pipe(self) -> AdaAugment:
        return self.ada.pipe

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.ada(images)

    def after_optimizer_step(self, phase: str, steps: list[GStep | DStep]) -> None:
        self.ada.observe(steps)

    def end_of_minibatch(self, cur_nimg: int, minibatch_index: int) -> None:
        self.ada.end_of_minibatch(cur_nimg)

    def state_dict(self) -> dict[str, Any]:
        return self.ada.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ada.load_state_dict(state)

    def tick_stats(self) -> dict[str, float]:
        return self.ada.tick_stats()
