"""StyleGAN2 architecture options, in the conventions of stylegan2-ada-pytorch.

Channel counts: a block at resolution ``r`` has ``min(channel_base // r, channel_max)`` channels.
The TF StyleGAN2 code (DiffAugment) writes ``nf(stage) = min(fmap_base / 2**stage, fmap_max)`` with
``stage = log2(r) - 1``, so TF ``fmap_base = F`` equals ``channel_base = 2 * F`` here:

=====================================  ==============  ===========
official config                        channel_base    channel_max
=====================================  ==============  ===========
DiffAugment TF low-shot (fmap 16384)   32768           512
DiffAugment TF FFHQ (fmap 8192)        16384           512
DiffAugment TF CIFAR (fmap 2048)       4096            512
ADA ``paper256`` (fmaps 0.5)           16384           512
ADA ``cifar`` (fmaps 1)                32768           512
ADA ``auto`` / ``low_shot``            see ADA docs    512
=====================================  ==============  ===========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from degan_bench.schema import param


@dataclass
class StyleGAN2Config:
    arch: Literal["stylegan2"] = param("stylegan2", help="model family")
    z_dim: int = param(512, help="latent z dimension", min=1)
    w_dim: int = param(512, help="intermediate latent w dimension", min=1)
    c_dim: int = param(0, help="conditioning label dimension (0 = unconditional)", min=0)
    mapping_layers: int = param(8, help="mapping network depth", min=0, max=32)
    mapping_lr_mult: float = param(0.01, help="learning-rate multiplier of the mapping network", min=0.0)
    channel_base: int = param(32768, help="channels at resolution r = min(channel_base // r, channel_max)", min=1)
    channel_max: int = param(512, help="maximum channels per layer", min=1)
    g_architecture: Literal["skip", "orig"] = param("skip", help="generator output architecture")
    d_architecture: Literal["resnet", "orig"] = param("resnet", help="discriminator block architecture")
    mbstd_group: int = param(4, help="minibatch-stddev group size (0 = off)", min=0)
    mbstd_channels: int = param(1, help="minibatch-stddev feature channels", min=1)
    conv_clamp: float | None = param(None, help="clamp conv outputs to +-this (stylegan2-ada fp16: 256)", min=0.0)
    w_avg_beta: float = param(0.995, help="decay of the tracked mean w used for truncation", min=0.0, max=1.0)
