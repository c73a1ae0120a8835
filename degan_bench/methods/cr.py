"""CR-BigGAN: consistency regularization (Zhang et al., ICLR 2020) as DiffAugment's BigGAN-CIFAR code
runs it for the CR rows of its CIFAR table (mit-han-lab/data-efficient-gans @ 0b63395,
``DiffAugment-biggan-cifar``):

- ``BigGAN.py:455-468``: D's input is ``DiffAugment([G(z); x], policy)``; its real half, randomly
  x-flipped per sample (``torch.randint(0, 2)``, when ``--CR_augment`` starts with ``flip,``) and then
  DiffAugmented with the rest of ``--CR_augment`` (default ``flip,translation``, ``utils.py:143``), is
  appended to the same D input and scored in the same D forward with the reals' labels. An empty
  ``--CR_augment`` appends the *un-augmented* reals ``x`` instead (``BigGAN.py:464-465``);
- ``train_fns.py:43-59``: ``L_D += CR * mean((D(T'(T(x))) - D(T(x)))^2)`` on the logits, neither
  side detached, in every one of the 4 D steps; the G step is unchanged (``train_fns.py:85``, no CR);
- the scripts pass ``--CR 10`` (``scripts/cr-biggan-cifar*.sh``, ``DiffAugment-cr-biggan-cifar*.sh``):
  without DiffAugment the pair is (flip + translation of x, x); with DiffAugment at 10/20 % it is
  (``translation,cutout`` of x, x) (``--CR_augment ""``), and at 100 % (``cutout`` of x, flip +
  translation of that) (``--DiffAugment cutout``, default ``--CR_augment``).

The extra reals reach D through :meth:`~degan_bench.methods.base.Method.extra_d_inputs`, so the hinge
objective scores them in its one D pass per D step, as the official code does (one spectral-norm power
iteration). Method names are the rows of DiffAugment's table:

==========================  =======================  ============================
method                      row                      DiffAugment policy
==========================  =======================  ============================
``biggan-cr``               CR-BigGAN                none by default
``biggan-cr-diffaugment``   CR-BigGAN + DiffAugment  required (official: per data)
==========================  =======================  ============================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from degan_bench.augment.diffaugment import diff_augment, parse_policy
from degan_bench.methods import register_method
from degan_bench.methods.base import DStep, Method, MethodContext
from degan_bench.methods.diffaugment import DiffAugmentation
from degan_bench.schema import param

_POLICY_HELP = (
    "DiffAugment ops on every D input (reals and fakes, D and G steps), official --DiffAugment: "
    "translation,cutout at 10/20 %, cutout at 100 % for CR + DiffAugment; none for CR-BigGAN"
)
_AUGMENT_HELP = (
    "official --CR_augment: 'flip,' (a random x-flip per sample, first only) then DiffAugment ops applied "
    "to the DiffAugmented reals; empty = pair D(T(x)) with D(x) on the un-augmented reals"
)


def parse_cr_augment(augment: str) -> tuple[bool, tuple[str, ...]]:
    """``"flip,translation"`` -> (flip first?, DiffAugment ops after it), as ``BigGAN.py:459-462`` reads
    it; a lone ``"flip"`` flips only (the official string test needs the comma and would fail on it)."""
    parts = [part.strip() for part in augment.split(",")] if augment.strip() else []
    flip = bool(parts) and parts[0] == "flip"
    rest = parts[1:] if flip else parts
    if "flip" in rest:
        raise ValueError(
            f"CR augment {augment!r}: 'flip' may only come first (the official code reads 'flip,')"
        )
    return flip, parse_policy(",".join(rest))


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2 (``torch.randint(0, 2) > 0``, as officially)."""
    coin = torch.randint(0, 2, size=[images.shape[0], 1, 1, 1], device=images.device)
    return torch.where(coin > 0, images.flip(3), images)


@dataclass
class CRConfig:
    weight: float = param(10.0, help="lambda, official --CR (every CR script passes 10; 0 = off)", min=0.0)
    augment: str = param("flip,translation", help=_AUGMENT_HELP)
    policy: str = param("", help=_POLICY_HELP)

    def check(self) -> None:
        parse_policy(self.policy)
        parse_cr_augment(self.augment)


@dataclass
class CRDiffAugmentConfig(CRConfig):
    augment: str = param("", help=_AUGMENT_HELP)
    policy: str = param("translation,cutout", help=_POLICY_HELP)

    def check(self) -> None:
        super().check()
        if not parse_policy(self.policy):
            raise ValueError("policy is empty; use method 'biggan-cr' for CR without DiffAugment")


def consistency_penalty(real_logits: torch.Tensor, cr_logits: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight * mean((D(x') - D(x))^2)`` over the batch (``train_fns.py:50-51``); both sides keep their
    gradient."""
    return (cr_logits.float() - real_logits.float()).square().mean() * weight


@register_method
class CRBigGANMethod(Method):
    name = "biggan-cr"
    Config = CRConfig
    summary = "CR-BigGAN: consistency of D's logits on reals and their flip/translation (Zhang et al. 2020)"
    backbone = "biggan"
    objectives = ("hinge",)  # the official CR option exists in DiffAugment's BigGAN-CIFAR code only

    def __init__(self, config: CRConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.policy = DiffAugmentation(config.policy)
        self.flip, self.cr_ops = parse_cr_augment(config.augment)
        self.active = config.weight > 0

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.policy(images)

    def extra_d_inputs(
        self, reals: torch.Tensor, reals_aug: torch.Tensor, real_c: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if not self.active:
            return {}
        if not (self.flip or self.cr_ops):  # --CR_augment "": the un-augmented reals
            return {"cr": (reals, real_c)}
        images = random_flip(reals_aug) if self.flip else reals_aug
        return {"cr": (diff_augment(images, self.cr_ops) if self.cr_ops else images, real_c)}

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        if not self.active or step.phase != "main":
            return {}
        return {"cr": consistency_penalty(step.real_logits, step.extra_logits["cr"], self.config.weight)}


@register_method
class CRBigGANDiffAugmentMethod(CRBigGANMethod):
    name = "biggan-cr-diffaugment"
    Config = CRDiffAugmentConfig
    summary = "CR-BigGAN + DiffAugment: consistency regularization on DiffAugmented D inputs"
