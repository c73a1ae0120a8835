"""What the 32 px CIFAR families (BigGAN, SNGAN) share: the resolution check of their builders and the
discriminator forward as trunk then head (the split AdvAug and the contrastive methods rely on)."""

from __future__ import annotations

import torch
from torch import nn

from degan_bench.errors import RecipeError

RESOLUTION = 32


def check_resolution(arch: str, resolution: int) -> None:
    if resolution != RESOLUTION:
        raise RecipeError(
            f"model.arch {arch!r} is the 32 px CIFAR architecture, but data.resolution is {resolution}",
            fix="set data.resolution: 32",
        )


class TrunkHeadDiscriminator(nn.Module):
    """``D(x, c) == D.head(D.trunk(x), c)``; subclasses define ``trunk`` and ``head``."""

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head(self, features: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, images: torch.Tensor, c: torch.Tensor | None = None, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(images)
        logits = self.head(features, c)
        return (logits, features) if return_features else logits
