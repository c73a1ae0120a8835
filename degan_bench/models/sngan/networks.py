"""SNGAN generator and discriminator at 32 px (see :mod:`.config`).

Contract (``degan_bench.models``), unconditional: ``c_dim = 0``, ``c`` may be None or ``[N, 0]``.
``G.stem(z, c) -> (h, None)`` is the z -> 4x4 linear's output (the lottery AdvAug's ``only_l1``),
``G.body(h, None)`` the rest; ``D.trunk(x)`` is the ReLU + sum-pooled block output that feeds the
final linear (its ``fc=False``), ``D.head(h, c)`` that linear (``only_fc``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from degan_bench.models.biggan.networks import NOISE_MODES
from degan_bench.models.cifar32 import TrunkHeadDiscriminator, check_resolution
from degan_bench.models.sngan.config import SNGANConfig
from degan_bench.models.spectral_norm import SNConv2d, SNLinear

BOTTOM = 4
IMG_CHANNELS = 3


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _check_unconditional(c: torch.Tensor | None, n: int) -> None:
    if c is not None and (c.ndim != 2 or c.shape[0] != n or c.shape[1] != 0):
        raise ValueError(f"SNGAN is unconditional: c must be None or [{n}, 0], got {tuple(c.shape)}")


class GBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_sc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_up(F.relu(self.bn1(x))))
        h = self.conv2(F.relu(self.bn2(h)))
        return h + self.conv_sc(_up(x))


class DBlock(nn.Module):
    """``first``: conv, ReLU, conv, pool + pool, 1x1 conv. Else: ReLU, conv, ReLU, conv, [pool] + shortcut
    (1x1 conv then pool when down-sampling, identity otherwise)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv: type[nn.Conv2d] | object,
        *,
        first: bool,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)  # type: ignore[operator]
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)  # type: ignore[operator]
        learnable = first or downsample or in_channels != out_channels
        self.conv_sc = conv(in_channels, out_channels, 1) if learnable else None  # type: ignore[operator]

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.conv_sc is None:
            return h + x
        if self.first:
            return h + self.conv_sc(self._pool(x))
        return h + self._pool(self.conv_sc(x))


def _init(module: nn.Module, style: str) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if style == "xavier_uniform":
                init.xavier_uniform_(m.weight, 1.0)
            elif style == "normal":
                init.normal_(m.weight, 0.0, 0.02)
            elif style == "orth":
                init.orthogonal_(m.weight)
            else:
                raise ValueError(f"unknown init {style!r}")
        elif isinstance(m, nn.BatchNorm2d):
            init.normal_(m.weight, 1.0, 0.02)
            init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, cfg: SNGANConfig) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.channels = cfg.z_dim, 0, cfg.g_ch
        self.linear = nn.Linear(cfg.z_dim, BOTTOM * BOTTOM * cfg.g_ch)
        self.blocks = nn.Sequential(*(GBlock(cfg.g_ch) for _ in range(3)))
        self.out_bn = nn.BatchNorm2d(cfg.g_ch)
        self.out_conv = nn.Conv2d(cfg.g_ch, IMG_CHANNELS, 3, padding=1)
        _init(self, cfg.init)

    def stem(self, z: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        _check_unconditional(c, len(z))
        return self.linear(z).view(len(z), self.channels, BOTTOM, BOTTOM), None

    def body(self, h: torch.Tensor, cond: None = None) -> torch.Tensor:
        return torch.tanh(self.out_conv(F.relu(self.out_bn(self.blocks(h)))))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        # No noise inputs and no mapping network: only the no-op settings of these keywords are accepted.
        if truncation_psi != 1.0:
            raise ValueError("SNGAN has no truncation; truncation_psi must be 1")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        return self.body(*self.stem(z, c))


class Discriminator(TrunkHeadDiscriminator):
    def __init__(self, cfg: SNGANConfig) -> None:
        super().__init__()
        self.c_dim = 0
        ch = cfg.d_ch
        if cfg.d_sn:

            def conv(cin: int, cout: int, k: int, padding: int = 0) -> nn.Conv2d:
                return SNConv2d(
                    cin, cout, k, padding=padding, style="torch", num_itrs=cfg.sn_itrs, eps=cfg.sn_eps
                )

            self.linear: nn.Linear = SNLinear(
                ch, 1, bias=False, style="torch", num_itrs=cfg.sn_itrs, eps=cfg.sn_eps
            )
        else:
            conv = nn.Conv2d  # type: ignore[assignment]
            self.linear = nn.Linear(ch, 1, bias=False)
        self.blocks = nn.Sequential(
            DBlock(IMG_CHANNELS, ch, conv, first=True, downsample=True),
            DBlock(ch, ch, conv, first=False, downsample=True),
            DBlock(ch, ch, conv, first=False, downsample=False),
            DBlock(ch, ch, conv, first=False, downsample=False),
        )
        self.feature_dim = ch
        _init(self, cfg.init)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        return F.relu(self.blocks(images)).sum(dim=[2, 3])

    def head(self, features: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        _check_unconditional(c, len(features))
        return self.linear(features)


def build(cfg: SNGANConfig, resolution: int) -> tuple[Generator, Discriminator]:
    """The (G, D) pair of ``cfg`` (freshly initialized, on the CPU, train mode); 32 px only."""
    check_resolution("sngan", resolution)
    return Generator(cfg), Discriminator(cfg)
