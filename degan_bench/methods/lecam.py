"""LeCam regularization (Tseng, Jiang, Liu, Yang, Yang, CVPR 2021), as google/lecam-gan @ f9af948 codes it.

The D loss gains ``lambda * R_LC`` with

    R_LC = mean(relu(D(x) - a_fake)^2) + mean(relu(a_real - D(G(z)))^2)

where ``D(x)`` / ``D(G(z))`` are D's logits on the (augmented) reals and fakes of the D step and
``a_real`` / ``a_fake`` are exponential moving averages ("anchors") of their batch means. The anchors
are updated with the step's means *before* the penalty is taken, and carry no gradient. The G loss is
unchanged. Two official code paths differ in the anchors, chosen by ``ema``:

- ``biggan`` (``biggan_cifar``, BigGAN-CIFAR): ``third_party/utils.py:637-661`` ``ema_losses`` with
  ``init=1000``, ``decay=0.9`` and ``start_itr=1000`` (``biggan_cifar/train.py:28``): in iterations
  ``itr < start`` the anchors take the current means (decay 0), later ``a = 0.9 a + 0.1 mean``. The update
  runs in ``loss_hinge_dis`` (``biggan_cifar/losses.py:57-61``) in every D step; the penalty
  (``losses.py:20-23``) only when ``itr > start_itr`` (``third_party/train_fns.py:59-62``), in every D
  step too, added to the hinge loss (``train_fns.py:66``). ``itr`` is the 0-based iteration: the fork
  increments it after ``train()`` (``third_party/run_train.py:191,232``). ``--LC 0.3`` in every script.
- ``tf`` (``stylegan2/lecam_loss.py:22-61``, a TF function for stylegan2-ada): the anchors are TF
  moving averages with ``decay=0.99, zero_debias=True``: ``b <- b - (b - mean)(1 - d)`` from ``b = 0``,
  ``a = b / (1 - d^t)`` after ``t`` updates, updated in every evaluation of the D loss; no start
  iteration. ``--lecam 1e-6`` (CIFAR, ``--cfg cifar --aug ada``) or ``3e-7`` (FFHQ-1k, ``--cfg paper256
  --aug ada``) in ``stylegan2/scripts``; how the term joins stylegan2-ada's loss was not released (we add
  it to D's main loss, as the BigGAN code does).

``ema: auto`` picks ``biggan`` under the hinge objective and ``tf`` under StyleGAN2's. An update is one
accumulation round of one process's D step, with the batch means averaged over processes (the official
runs are one process: BigGAN's DataParallel batch; the TF towers are not reproduced), so every process
holds the same anchors and rank 0's checkpoint restores them exactly.

The method names compose the augmentation the way the other methods do:

=======================  ====================================  =========================================
method                   row                                   augmentation of every D input
=======================  ====================================  =========================================
``lecam``                + LeCam (lc-biggan-cifar*.sh)         optional DiffAugment ``policy`` (none)
``lecam-diffaugment``    + DA + LeCam (lc-DiffAugment-*.sh)    DiffAugment ``policy``, required
``lecam-ada``            + ADA + LeCam (stylegan2 scripts)     ADA (``ada:`` section, as InsGen's)
=======================  ====================================  =========================================

The lottery ticket composes the same regularizer through ``lottery.lecam`` (:class:`LeCamAnchors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from degan_bench.augment.diffaugment import parse_policy
from degan_bench.core.distributed import is_active
from degan_bench.errors import MethodError
from degan_bench.methods import register_method
from degan_bench.methods.ada import AdaAugmentation, AdaConfig
from degan_bench.methods.base import DStep, GStep, Method, MethodContext
from degan_bench.methods.diffaugment import DiffAugmentation
from degan_bench.schema import param

#: the official anchors per code path: (decay, initial value, start iteration)
EMA_RULES: dict[str, tuple[float, float, int]] = {
    "biggan": (0.9, 1000.0, 1000),  # third_party/utils.py:638, biggan_cifar/train.py:28
    "tf": (0.99, 0.0, 0),  # stylegan2/lecam_loss.py:35-54 (zero-debiased from 0)
}


@dataclass
class LeCamConfig:
    weight: float = param(
        help="lambda: official --LC 0.3 (BigGAN-CIFAR scripts), --lecam 1e-6 (StyleGAN2 CIFAR) or 3e-7 "
        "(StyleGAN2 FFHQ-1k, 256 px); 0 = off",
        min=0.0,
    )
    ema: Literal["auto", "biggan", "tf"] = param(
        "auto",
        help="anchor rule: 'biggan' (ema_losses: init 1000, copy before start_step, penalty after it), "
        "'tf' (zero-debiased TF moving average from 0, every step); 'auto': biggan under loss.kind hinge, "
        "tf under ns_r1",
    )
    ema_decay: float | None = param(
        None, help="anchor decay; null = the rule's (biggan 0.9, tf 0.99)", min=0.0, max=0.999999
    )
    start_step: int | None = param(
        None,
        help="biggan rule: iteration (0-based) before which the anchors copy the batch means; the penalty "
        "starts after it (official itr > start_itr); null = 1000. The tf rule has none",
        min=0,
    )


def _policy_help(required: bool) -> str:
    where = "required" if required else "empty = none"
    return (
        "DiffAugment ops on every D input (reals and fakes, D and G steps), comma-separated "
        f"({where}); official lc-DiffAugment-biggan-cifar*.sh: translation,cutout"
    )


@dataclass
class LeCamMethodConfig(LeCamConfig):
    policy: str = param("", help=_policy_help(False))

    def check(self) -> None:
        parse_policy(self.policy)


@dataclass
class LeCamDiffAugmentConfig(LeCamConfig):
    policy: str = param("translation,cutout", help=_policy_help(True))

    def check(self) -> None:
        if not parse_policy(self.policy):
            raise ValueError("policy is empty; use method 'lecam' for LeCam without DiffAugment")


@dataclass
class LeCamAdaConfig(LeCamConfig):
    ada: AdaConfig = param(
        default_factory=AdaConfig, help="the ADA pipe and its p schedule (as method 'ada')"
    )


def lecam_penalty(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, anchor_real: torch.Tensor, anchor_fake: torch.Tensor
) -> torch.Tensor:
    """``R_LC`` of ``losses.py:20-23`` / ``lecam_loss.py:57-60`` (without lambda)."""
    return (
        F.relu(real_logits.float() - anchor_fake).square().mean()
        + F.relu(anchor_real - fake_logits.float()).square().mean()
    )


@torch.no_grad()
def _batch_mean(logits: torch.Tensor) -> torch.Tensor:
    """The mean logit over the global batch (float64, like the official ``.item()`` floats)."""
    mean = logits.detach().float().mean().double()
    if is_active():
        torch.distributed.all_reduce(mean)
        mean = mean / torch.distributed.get_world_size()
    return mean


class LeCamAnchors:
    """The anchors ``a_real``, ``a_fake`` of one run, their update rule and the penalty they define.

    ``penalty(real_logits, fake_logits)`` updates the anchors with the step's means and returns
    ``R_LC`` (None while the biggan rule's start has not passed); ``end_of_minibatch(index)`` tells it
    which iteration comes next. Everything lives in ``state_dict`` so resume is exact.
    """

    def __init__(self, config: LeCamConfig, objective: str, device: torch.device) -> None:
        self.rule = config.ema if config.ema != "auto" else ("biggan" if objective == "hinge" else "tf")
        decay, init, start = EMA_RULES[self.rule]
        self.decay = decay if config.ema_decay is None else config.ema_decay
        self.start_step = start if config.start_step is None else config.start_step
        if self.rule == "tf" and self.start_step:
            raise MethodError(
                f"LeCam start_step {self.start_step} applies to the biggan anchor rule; the tf rule "
                "(stylegan2/lecam_loss.py) averages and penalizes from the first step",
                fix="drop start_step, or set ema: biggan",
            )
        self.device = device
        self.real = torch.tensor(init, dtype=torch.float64, device=device)
        self.fake = torch.tensor(init, dtype=torch.float64, device=device)
        # tf rule: the biased averages and their update count (TF's `biased` and `local_step`)
        self.biased_real = torch.zeros([], dtype=torch.float64, device=device)
        self.biased_fake = torch.zeros([], dtype=torch.float64, device=device)
        self.updates = 0
        self.iteration = 0  # 0-based index of the current minibatch (BigGAN: iteration)

    def update(self, real_mean: torch.Tensor, fake_mean: torch.Tensor) -> None:
        if self.rule == "biggan":
            d = 0.0 if self.iteration < self.start_step else self.decay
            self.fake = self.fake * d + fake_mean * (1 - d)
            self.real = self.real * d + real_mean * (1 - d)
            return
        self.updates += 1
        self.biased_real = self.biased_real - (self.biased_real - real_mean) * (1 - self.decay)
        self.biased_fake = self.biased_fake - (self.biased_fake - fake_mean) * (1 - self.decay)
        debias = 1 - self.decay**self.updates
        self.real, self.fake = self.biased_real / debias, self.biased_fake / debias

    def active(self) -> bool:
        return self.rule == "tf" or self.iteration > self.start_step

    def penalty(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor | None:
        self.update(_batch_mean(real_logits), _batch_mean(fake_logits))
        if not self.active():
            return None
        return lecam_penalty(real_logits, fake_logits, self.real, self.fake)

    def end_of_minibatch(self, minibatch_index: int) -> None:
        self.iteration = minibatch_index

    def state_dict(self) -> dict[str, Any]:
        def cpu(t: torch.Tensor) -> torch.Tensor:
            return t.detach().cpu().clone()

        return {
            "rule": self.rule, "real": cpu(self.real), "fake": cpu(self.fake),
            "biased_real": cpu(self.biased_real), "biased_fake": cpu(self.biased_fake),
            "updates": self.updates, "iteration": self.iteration,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["rule"] != self.rule:
            raise MethodError(
                f"the checkpoint's LeCam anchors follow the {state['rule']} rule, this run's the {self.rule} "
                "rule",
                fix="resume with the run's own recipe",
            )
        for name in ("real", "fake", "biased_real", "biased_fake"):
            setattr(self, name, state[name].to(self.device, torch.float64))
        self.updates, self.iteration = int(state["updates"]), int(state["iteration"])

    def tick_stats(self) -> dict[str, float]:
        return {"lecam_anchor_real": float(self.real), "lecam_anchor_fake": float(self.fake)}


class _LeCamBase(Method):
    """The LeCam rows: the regularizer on every main D step, plus their augmentation."""

    def __init__(self, config: LeCamConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.anchors = LeCamAnchors(config, ctx.objective, ctx.device) if config.weight > 0 else None

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        if self.anchors is None or step.phase != "main":
            return {}
        assert step.fake_logits is not None  # phase "main" sets it
        penalty = self.anchors.penalty(step.real_logits, step.fake_logits)
        return {} if penalty is None else {"lecam": penalty * self.config.weight}

    def end_of_minibatch(self, cur_nimg: int, minibatch_index: int) -> None:
        if self.anchors is not None:
            self.anchors.end_of_minibatch(minibatch_index)

    def state_dict(self) -> dict[str, Any]:
        return {"anchors": self.anchors.state_dict() if self.anchors is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.anchors is not None:
            self.anchors.load_state_dict(state["anchors"])

    def tick_stats(self) -> dict[str, float]:
        return self.anchors.tick_stats() if self.anchors is not None else {}


@register_method
class LeCamMethod(_LeCamBase):
    name = "lecam"
    Config = LeCamMethodConfig
    summary = "LeCam: D's logits anchored to moving averages of the other side's (Tseng et al. 2021)"

    def __init__(self, config: LeCamMethodConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.policy = DiffAugmentation(config.policy)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.policy(images)


@register_method
class LeCamDiffAugmentMethod(LeCamMethod):
    name = "lecam-diffaugment"
    Config = LeCamDiffAugmentConfig
    summary = "LeCam + DiffAugment: the LeCam regularizer on DiffAugmented D inputs"


@register_method
class LeCamAdaMethod(_LeCamBase):
    name = "lecam-ada"
    Config = LeCamAdaConfig
    summary = "LeCam + ADA: the LeCam regularizer on StyleGAN2-ADA (stylegan2 --aug ada --lecam)"
    objectives = ("ns_r1",)  # ADA's pipe and heuristic are StyleGAN2-ADA's

    def __init__(self, config: LeCamAdaConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.ada = AdaAugmentation(config.ada, ctx)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.ada(images)

    def after_optimizer_step(self, phase: str, steps: list[GStep | DStep]) -> None:
        self.ada.observe(steps)

    def end_of_minibatch(self, cur_nimg: int, minibatch_index: int) -> None:
        super().end_of_minibatch(cur_nimg, minibatch_index)
        self.ada.end_of_minibatch(cur_nimg)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.ada.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ada.load_state_dict(state)

    def tick_stats(self) -> dict[str, float]:
        return {**super().tick_stats(), **self.ada.tick_stats()}
