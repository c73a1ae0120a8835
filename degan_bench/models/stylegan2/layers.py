"""StyleGAN2 building blocks in plain PyTorch (no custom CUDA/C++ ops; CPU and CUDA alike).

- Equalized learning rate (Karras et al. 2018): weights are stored ~N(0, 1) / lr_mult and scaled at
  run time by ``lr_mult / sqrt(fan_in)``; biases are scaled by ``lr_mult``. Adam then sees every
  layer at the same scale, and ``lr_mult`` slows the mapping network down (0.01).
- FIR resampling with the normalized [1, 3, 3, 1] binomial filter, as the StyleGAN2 paper (Sec. 2)
  and its code: upsampling = transposed stride-2 (convolution) + blur with gain 4, downsampling =
  blur + stride-2. The blur is a depthwise ``conv2d`` with the 4x4 outer-product filter; paddings
  are chosen so the result equals stylegan2-ada-pytorch's ``upfirdn2d`` reference exactly (up to
  float rounding).
- Modulated convolution with weight demodulation (StyleGAN2 Eq. 1-3), in two equivalent forms: one
  grouped convolution for the whole batch (``fused=True``, a per-sample weight each), or scaling
  the activations before and after a shared convolution (``fused=False``). As the official code,
  the networks use the fused form in eval mode and the activation-scaling form in training, where
  it is faster and needs less memory for the backward pass.
- Minibatch standard deviation (Karras et al. 2018, Sec. 3) with the official grouping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Activation = str  # "linear" | "lrelu"

#: gain that keeps the activation's output variance ~ input variance (He et al.)
LRELU_GAIN = math.sqrt(2.0)
LRELU_SLOPE = 0.2
_ACT_GAIN = {"linear": 1.0, "lrelu": LRELU_GAIN}


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square along ``dim`` (StyleGAN's "pixel norm" of z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, multiply by ``gain``, clamp to +-clamp."""
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}; use 'linear' or 'lrelu'")
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


# ------------------------------------------------------------------------------------------------
# FIR resampling


def make_fir_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The 2D low-pass filter ``outer(taps, taps)`` normalized to sum 1 (keeps a constant signal).

    The resampling functions below assume an even number of symmetric taps (correlation and
    convolution then coincide); StyleGAN2 uses [1, 3, 3, 1] everywhere.
    """
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim != 1 or len(k) % 2 or not torch.equal(k, k.flip(0)):
        raise ValueError(f"FIR taps must be 1D, symmetric and of even length, got {list(taps)}")
    f = torch.outer(k, k)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    return (
        f.to(dtype)[None, None].expand(channels, 1, *f.shape).contiguous()
    )  # a real tensor for every backend


# The FIR ops are depthwise (groups = channels) convolutions with a constant filter. PyTorch's
# generic double backward of a grouped convolution also computes the (unneeded) filter gradient as
# one small convolution per channel: hundreds of calls per FIR op in R1 / path-length backward
# passes. These two Functions are each other's adjoint, so first and second derivatives are again
# depthwise FIR convolutions and the filter never gets a gradient.


class _FIRConv(torch.autograd.Function):
    """Depthwise ``conv2d(x, f, stride, pad)``; the gradient is the transposed operation."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
        ctx.save_for_backward(f)
        ctx.stride, ctx.pad, ctx.in_size = stride, pad, x.shape[2:]
        return F.conv2d(x, _depthwise(f, x.shape[1], x.dtype), stride=stride, padding=pad, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (f,) = ctx.saved_tensors
        taps = f.shape[0]
        # output_padding restores the input size lost to the stride's floor division
        extra = [
            n - ((m - 1) * ctx.stride - 2 * ctx.pad + taps)
            for n, m in zip(ctx.in_size, grad.shape[2:], strict=True)
        ]
        return _FIRConvTranspose.apply(grad, f, ctx.stride, ctx.pad, tuple(extra)), None, None, None


class _FIRConvTranspose(torch.autograd.Function):
    """Depthwise ``conv_transpose2d(x, f, stride, pad, output_padding)``; the gradient is ``_FIRConv``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, stride: int, pad: int, extra: tuple[int, int]):
        ctx.save_for_backward(f)
        ctx.stride, ctx.pad = stride, pad
        weight = _depthwise(f, x.shape[1], x.dtype)
        return F.conv_transpose2d(
            x, weight, stride=stride, padding=pad, output_padding=extra, groups=x.shape[1]
        )

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (f,) = ctx.saved_tensors
        return _FIRConv.apply(grad, f, ctx.stride, ctx.pad), None, None, None, None


def fir_blur(x: torch.Tensor, f: torch.Tensor, pad: int, gain: float = 1.0) -> torch.Tensor:
    """Filter every channel with ``f * gain`` after zero-padding ``pad`` pixels on each side."""
    return _FIRConv.apply(x, f * gain, 1, pad)


def fir_upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero-insertion, then the FIR filter with gain 4 (keeps the mean). H -> 2H."""
    # A stride-2 transposed convolution with the filter is zero-insertion followed by a full
    # convolution (2H + taps - 2 samples); cropping taps/2 - 1 per side keeps the centred 2H.
    return _FIRConvTranspose.apply(x, f * 4, 2, f.shape[0] // 2 - 1, (0, 0))


def fir_downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x downsampling: the FIR filter, then every other pixel. H -> H/2."""
    return _FIRConv.apply(x, f, 2, f.shape[0] // 2 - 1)


# ------------------------------------------------------------------------------------------------
# Equalized-learning-rate layers


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalized learning rate, optional bias + activation."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        activation: Activation = "linear",
        lr_mult: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mult)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_mult / math.sqrt(in_features)
        self.bias_gain = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation, gain=_ACT_GAIN[self.activation])

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"{in_features} -> {out_features}, act={self.activation}, lr_mult={self.bias_gain:g}"


class EqualizedConv2d(nn.Module):
    """Conv layer with equalized learning rate, optional 2x FIR downsampling, bias + activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: Activation = "linear",
        down: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("fir", make_fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        kernel = w.shape[-1]
        if not self.down:
            x = F.conv2d(x, w, padding=self.padding)
        elif kernel == 1:
            x = F.conv2d(fir_downsample2d(x, self.fir), w)
        else:
            # blur with enough padding that the stride-2 valid convolution lands on H/2 samples
            x = fir_blur(x, self.fir, pad=self.fir.shape[0] // 2 - 1 + kernel // 2)
            x = F.conv2d(x, w, stride=2)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, gain=_ACT_GAIN[self.activation] * gain, clamp=clamp)

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.weight.shape
        return f"{in_channels} -> {out_channels}, k={k}, down={self.down}, act={self.activation}"


# ------------------------------------------------------------------------------------------------
# Modulated convolution


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: bool = False,
    fir: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """Convolve ``x`` [N,I,H,W] with ``weight`` [O,I,k,k] modulated per sample by ``styles`` [N,I].

    With ``demodulate`` each sample's modulated weight is rescaled to unit L2 norm per output
    channel (StyleGAN2 Eq. 3). ``up`` doubles the resolution with a stride-2 transposed convolution
    followed by the FIR blur ``fir``. Same padding: the output is [N,O,H,W] (or 2H with ``up``).
    """
    batch, in_channels = styles.shape
    out_channels, _, kernel, _ = weight.shape
    dcoefs = None
    if demodulate:
        # sum_{i,k} (w_oik s_i)^2 = sum_i s_i^2 sum_k w_oik^2: no [N,O,I,k,k] tensor needed for this
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N,O]

    if fused:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # [N,O,I,k,k]
        if dcoefs is not None:
            w = w * dcoefs.reshape(batch, out_channels, 1, 1, 1)
        x = x.reshape(1, batch * in_channels, *x.shape[2:])
        w = w.to(x.dtype)
        if up:
            w = w.transpose(1, 2).reshape(batch * in_channels, out_channels, kernel, kernel)
            x = F.conv_transpose2d(x, w, stride=2, groups=batch)
        else:
            x = F.conv2d(
                x,
                w.reshape(batch * out_channels, in_channels, kernel, kernel),
                padding=kernel // 2,
                groups=batch,
            )
        x = x.reshape(batch, out_channels, *x.shape[2:])
    else:
        x = x * styles.to(x.dtype).reshape(batch, in_channels, 1, 1)
        w = weight.to(x.dtype)
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2) if up else F.conv2d(x, w, padding=kernel // 2)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch, out_channels, 1, 1)

    if up:
        # the transposed conv gave 2H + k - 2 samples; the gain-4 blur brings them back to 2H
        if fir is None:
            raise ValueError("modulated_conv2d(up=True) needs the FIR filter")
        x = fir_blur(x, fir, pad=(fir.shape[0] - kernel + 1) // 2, gain=4)
    return x


# ------------------------------------------------------------------------------------------------
# Minibatch standard deviation


class MinibatchStdDev(nn.Module):
    """Append the average per-group feature stddev as ``num_channels`` extra feature maps.

    Grouping follows the official code (TF StyleGAN2 and stylegan2-ada-pytorch): the group size is
    ``min(group_size, N)`` and sample ``i`` falls into group ``i mod (N / group)``, i.e. groups are
    strided through the batch. ``N`` must be divisible by the group size: the official code fails
    with a reshape error otherwise; here that is a ``ValueError`` naming the sizes.
    """

    def __init__(self, group_size: int, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n)
        if n % group:
            raise ValueError(
                f"minibatch-stddev: batch {n} is not divisible by the group size {group}; use a per-device "
                f"batch that is a multiple of model.mbstd_group ({self.group_size}) or smaller than it"
            )
        if c % self.num_channels:
            raise ValueError(f"minibatch-stddev: {c} channels do not split into {self.num_channels} groups")
        y = x.reshape(group, n // group, self.num_channels, c // self.num_channels, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # [n/G, F, c/F, H, W] stddev over each group
        y = y.mean(dim=[2, 3, 4])  # [n/G, F]
        y = y.reshape(1, n // group, self.num_channels, 1, 1).expand(group, -1, -1, h, w)
        return torch.cat([x, y.reshape(n, self.num_channels, h, w)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
