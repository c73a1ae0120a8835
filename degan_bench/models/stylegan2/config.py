"""StyleGAN2 architecture options, in the conventions of stylegan2-ada-pytorch.

Channel counts: a block at resolution ``r`` has ``min(channel_base // r, channel_max)`` channels.
The TF StyleGAN2 code (DiffAugment) writes ``nf(stage) = min(fmap_base / 2**stage, fmap_max)`` with
``stage = log2(r) - 1``, so TF ``fmap_base = F`` equals ``channel_base = 2 * F`` here. ADA writes
``channel_base = fmaps * 32768``.

The official configurations (:data:`REFERENCE_CONFIGS`; all have z_dim = w_dim = 512,
channel_max = 512, mapping lr multiplier 0.01, w_avg_beta 0.995, skip G):

======================================  =====  ============  =======  =====  ======  =====  =====  =====
official config                         res    channel_base  mapping  mbstd  D       c_dim  clamp  cmap
======================================  =====  ============  =======  =====  ======  =====  =====  =====
DiffAugment TF low-shot (fmap 16384)    256    32768         8        4      resnet  0      none   -
DiffAugment TF FFHQ (fmap 8192)         256    16384         8        4      resnet  0      none   -
DiffAugment TF CIFAR (fmap 2048)        32     4096          8        4      resnet  0      none   -
ADA ``paper256`` (fmaps 0.5)            256    16384         8        8      resnet  0      256    -
ADA ``cifar`` (fmaps 1, ``--cond=1``)   32     32768         2        32     orig    10     256    8
======================================  =====  ============  =======  =====  ======  =====  =====  =====

``mbstd`` is ``mbstd_group`` (one stddev channel in all). ``clamp`` is ``conv_clamp``: ADA sets 256
together with fp16 in its 4 highest resolutions; these fp32 networks keep the clamp (rarely active
in fp32) so the function matches. ``cmap`` is ``d_cmap_layers``: ADA's D embeds the label with its
own mapping network whose depth stays at the class default 8 (``train.py`` only sets G's depth).

Known differences from the TF code, none of which affects the official configs above: TF conditions
by a one-hot embedding concatenated before normalization (ADA-style conditioning is used here), and
TF's D ``Dense0`` has ``min(fmap_base, fmap_max)`` outputs where ADA uses the 4x4 channel count
(equal whenever ``channel_base // 4 >= channel_max``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from degan_bench.schema import param


@dataclass
class StyleGAN2Config:
    arch: Literal["stylegan2"] = param("stylegan2", help="model family")
    z_dim: int = param(512, help="latent z dimension", min=1)
    w_dim: int = param(512, help="intermediate latent w dimension", min=1)
    c_dim: int = param(0, help="conditioning label dimension (0 = unconditional)", min=0)
    mapping_layers: int = param(8, help="mapping network depth", min=0, max=32)
    mapping_lr_mult: float = param(
        0.01, help="learning-rate multiplier of the mapping networks (G's and D's label mapping)", min=0.0
    )
    channel_base: int = param(
        32768, help="channels at resolution r = min(channel_base // r, channel_max)", min=1
    )
    channel_max: int = param(512, help="maximum channels per layer", min=1)
    g_architecture: Literal["skip", "orig"] = param("skip", help="generator output architecture")
    d_architecture: Literal["resnet", "orig"] = param("resnet", help="discriminator block architecture")
    mbstd_group: int = param(
        4,
        help="minibatch-stddev group size, min(group, batch) is used; the batch must divide by it (0 = off)",
        min=0,
    )
    mbstd_channels: int = param(1, help="minibatch-stddev feature channels", min=1)
    conv_clamp: float | None = param(
        None, help="clamp conv outputs to +-this (stylegan2-ada fp16: 256)", min=0.0
    )
    w_avg_beta: float = param(0.995, help="decay of the tracked mean w used for truncation", min=0.0, max=1.0)
    d_cmap_layers: int = param(
        8, help="depth of D's label mapping network (conditional only; stylegan2-ada: 8)", min=1, max=32
    )

    def check(self) -> None:
        if self.mapping_layers == 0 and (self.c_dim > 0 or self.z_dim != self.w_dim):
            raise ValueError("mapping_layers 0 (w = normalized z) needs z_dim == w_dim and c_dim 0")


_TF = StyleGAN2Config(mbstd_group=4)

#: The official network configurations, named ``<code base>-<config>`` (see the module docstring).
#: Values are (config, resolution the official runs use).
REFERENCE_CONFIGS: dict[str, tuple[StyleGAN2Config, int]] = {
    "diffaugment-tf-low-shot": (replace(_TF, channel_base=32768), 256),
    "diffaugment-tf-ffhq": (replace(_TF, channel_base=16384), 256),
    "diffaugment-tf-cifar": (replace(_TF, channel_base=4096), 32),
    "ada-paper256": (StyleGAN2Config(channel_base=16384, mbstd_group=8, conv_clamp=256.0), 256),
    "ada-cifar": (
        StyleGAN2Config(
            channel_base=32768,
            mapping_layers=2,
            mbstd_group=32,
            d_architecture="orig",
            c_dim=10,
            conv_clamp=256.0,
        ),
        32,
    ),
}
