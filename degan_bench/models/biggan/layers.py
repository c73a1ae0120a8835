"""BigGAN building blocks: conditional BN, self-attention, G and D residual blocks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from degan_bench.models.spectral_norm import SNConv2d, SNEmbedding, SNLinear, SNStyle

ConvFactory = Callable[..., nn.Conv2d]
LinearFactory = Callable[..., nn.Linear]


class Layers:
    """The conv/linear/embedding constructors of one network (spectral-normalized or plain)."""

    def __init__(self, sn: bool, style: SNStyle, num_itrs: int, eps: float) -> None:
        self.sn = sn
        opts = {"style": style, "num_itrs": num_itrs, "eps": eps}
        self.conv: ConvFactory = partial(SNConv2d, **opts) if sn else nn.Conv2d
        self.linear: LinearFactory = partial(SNLinear, **opts) if sn else nn.Linear
        self.embedding: Callable[..., nn.Embedding] = partial(SNEmbedding, **opts) if sn else nn.Embedding


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, eval_batch_stats: bool) -> torch.Tensor:
    """``bn(x)``, except in eval mode with ``eval_batch_stats``: normalize with this batch's statistics and
    leave the running ones untouched (BigGAN-PyTorch's training-mode sampling, made side-effect free)."""
    if bn.training or not eval_batch_stats:
        return bn(x)
    return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)


class ConditionalBatchNorm2d(nn.Module):
    """BN without affine, then ``(1 + gain(y)) * x + bias(y)``.

    ``y`` is either the class index (``cond_dim == 0``: gain and bias are class embeddings, never
    spectral-normalized, as BigGAN-PyTorch without a shared embedding) or a conditioning vector of
    ``cond_dim`` features (shared embedding, possibly with a z chunk: bias-free linears, SN if G has SN).
    """

    def __init__(
        self, channels: int, num_classes: int, cond_dim: int, layers: Layers, *, eps: float, momentum: float
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=False)
        self.eval_batch_stats = False  # set by the Generator (sample_mode)
        if cond_dim == 0:
            self.gain: nn.Module = nn.Embedding(num_classes, channels)
            self.bias: nn.Module = nn.Embedding(num_classes, channels)
        else:
            self.gain = layers.linear(cond_dim, channels, bias=False)
            self.bias = layers.linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(y)).view(len(y), -1, 1, 1)
        bias = self.bias(y).view(len(y), -1, 1, 1)
        return batch_norm(self.bn, x, self.eval_batch_stats) * gain + bias


class SelfAttention(nn.Module):
    """SA-GAN non-local block as both codes implement it: 1x1 theta/phi (ch/8), g (ch/2), max-pooled phi
    and g, softmax over keys, 1x1 out conv, added with a learned gain that starts at 0."""

    def __init__(self, channels: int, layers: Layers) -> None:
        super().__init__()
        self.theta = layers.conv(channels, channels // 8, kernel_size=1, bias=False)
        self.phi = layers.conv(channels, channels // 8, kernel_size=1, bias=False)
        self.g = layers.conv(channels, channels // 2, kernel_size=1, bias=False)
        self.out = layers.conv(channels // 2, channels, kernel_size=1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        theta = self.theta(x).view(n, ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).view(n, ch // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), 2).view(n, ch // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)
        o = self.out(torch.bmm(g, beta.transpose(1, 2)).view(n, ch // 2, h, w))
        return x + self.gamma * o


class GBlock(nn.Module):
    """Up-sampling residual block: CBN, ReLU, nearest 2x, 3x3 conv, CBN, ReLU, 3x3 conv; 2x + 1x1 shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bn: Callable[[int], ConditionalBatchNorm2d],
        layers: Layers,
    ) -> None:
        super().__init__()
        self.bn1 = bn(in_channels)
        self.conv1 = layers.conv(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn2 = bn(out_channels)
        self.conv2 = layers.conv(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_sc = layers.conv(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x, y))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Residual D block. The first block (``preactivation=False``): conv, ReLU, conv, pool; shortcut pool
    then 1x1 conv. Later blocks: ReLU, conv, ReLU, conv, [pool]; shortcut [1x1 conv, pool] (the conv only
    where channels change or it down-samples), reading relu(x) instead of x if ``shortcut_relu``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        layers: Layers,
        *,
        preactivation: bool,
        downsample: bool,
        shortcut_relu: bool,
    ) -> None:
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.shortcut_relu = shortcut_relu and preactivation
        self.conv1 = layers.conv(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv2 = layers.conv(out_channels, out_channels, kernel_size=3, padding=1)
        learnable = in_channels != out_channels or downsample
        self.conv_sc = layers.conv(in_channels, out_channels, kernel_size=1) if learnable else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if not self.preactivation:
            sc = self._pool(x)
            return h + (self.conv_sc(sc) if self.conv_sc is not None else sc)
        sc = F.relu(x) if self.shortcut_relu else x
        if self.conv_sc is not None:
            sc = self.conv_sc(sc)
        return h + self._pool(sc)
