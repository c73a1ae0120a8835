"""DiffAugment (Zhao et al., NeurIPS 2020): the same differentiable augmentation T on every D input.

T is applied to reals and fakes, in the D and the G step, with gradients through T to G (the loop
calls :meth:`DiffAugmentMethod.augment` for every D input). Whether R1 is taken w.r.t. the raw or the
augmented reals is the recipe's ``loss.r1_on`` (low-shot: raw; FFHQ/CIFAR: augmented).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from degan_bench.augment.diffaugment import diff_augment, parse_policy
from degan_bench.methods import register_method
from degan_bench.methods.base import Method, MethodContext
from degan_bench.schema import param


@dataclass
class DiffAugmentConfig:
    policy: str = param(
        "color,translation,cutout",
        help="comma-separated ops applied in order: color, translation, cutout "
        "(official: color,translation,cutout for StyleGAN2; translation,cutout for BigGAN CIFAR)",
    )

    def check(self) -> None:
        if not parse_policy(self.policy):
            raise ValueError("policy is empty; use method 'stylegan2' for training without augmentation")


class DiffAugmentation:
    """A DiffAugment policy as a part of a method: the same ops on every D input (reals and fakes, D and
    G steps); the empty policy leaves the images as they are. Shared by every method with a DiffAugment
    ``policy`` (``diffaugment``, the LeCam, DigGAN and CR rows, ``lottery.policy``)."""

    def __init__(self, policy: str) -> None:
        self.ops = parse_policy(policy)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.ops) if self.ops else images


@register_method
class DiffAugmentMethod(Method):
    name = "diffaugment"
    Config = DiffAugmentConfig
    summary = "DiffAugment: differentiable color/translation/cutout on reals and fakes (Zhao et al. 2020)"

    def __init__(self, config: DiffAugmentConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.policy = DiffAugmentation(config.policy)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.policy(images)
