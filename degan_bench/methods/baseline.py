"""The plain baselines the papers compare against: the backbone without any data-efficient method.

A baseline names its backbone, so ``degan-bench run stylegan2 cifar10-10pct`` is the StyleGAN2 cell and
``degan-bench run biggan cifar10-10pct`` the BigGAN one, whatever the dataset's default backbone.
"""

from __future__ import annotations

from degan_bench.methods import register_method
from degan_bench.methods.base import Method


@register_method
class StyleGAN2Baseline(Method):
    name = "stylegan2"
    summary = "StyleGAN2 without augmentation (the baseline)"
    backbone = "stylegan2"
    objectives = ("ns_r1",)


@register_method
class BigGANBaseline(Method):
    name = "biggan"
    summary = "class-conditional BigGAN without augmentation (the baseline)"
    backbone = "biggan"
    objectives = ("hinge",)
