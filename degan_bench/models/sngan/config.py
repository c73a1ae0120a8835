"""Unconditional SNGAN at 32 px, as the lottery-ticket paper trains it on CIFAR-10.

VITA-Group/Ultra-Data-Efficient-GAN-Training ``SNGAN/models/sngan_cifar10.py`` with the README
commands' flags (``--latent_dim 128 --gf_dim 256 --df_dim 128 --d_spectral_norm True
--init_type xavier_uniform``; ``cfg.py``: ``bottom_width 4``). ``--g_spectral_norm`` exists in
``cfg.py`` but that Generator never reads it, so G has no spectral norm here either.

G = linear z -> 4x4 x gf, three up-sampling residual blocks (BN, ReLU, nearest 2x, 3x3 conv, BN,
ReLU, 3x3 conv; nearest 2x then 1x1 conv shortcut), BN, ReLU, 3x3 conv, tanh.
D = optimized block (conv, ReLU, conv, pool; pool then 1x1 conv shortcut), a down-sampling
pre-activation block, two pre-activation blocks at 8x8 with identity shortcuts, ReLU, sum pooling,
bias-free linear. D's convs and linear use ``torch.nn.utils.spectral_norm`` (eps 1e-12, one power
iteration). Init (``generate_initial_weights.py``): conv weights Xavier-uniform (gain 1), BN weights
N(1, 0.02) and biases 0; linears and conv biases keep torch's default init.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from degan_bench.schema import param


@dataclass
class SNGANConfig:
    arch: Literal["sngan"] = param("sngan", help="model family")
    z_dim: int = param(128, help="latent z dimension (latent_dim)", min=1)
    g_ch: int = param(256, help="G channels in every block (gf_dim)", min=1)
    d_ch: int = param(128, help="D channels in every block (df_dim)", min=1)
    d_sn: bool = param(True, help="spectral norm on D's convs and linear (d_spectral_norm)")
    sn_itrs: int = param(1, help="power iterations per training forward", min=1)
    sn_eps: float = param(1e-12, help="epsilon of the power-iteration normalization", min=0.0)
    init: Literal["xavier_uniform", "normal", "orth"] = param(
        "xavier_uniform", help="init of conv weights (init_type): Xavier uniform, N(0, 0.02) or orthogonal"
    )
