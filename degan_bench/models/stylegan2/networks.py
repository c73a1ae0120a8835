"""StyleGAN2 generator and discriminator (Karras et al. 2020, arXiv 1912.04958), as configured by
the StyleGAN2-ADA code (arXiv 2006.06676) and the TF StyleGAN2 that DiffAugment trains.

Generator = ``MappingNetwork`` (z -> w, tracked mean ``w_avg`` for truncation) + ``SynthesisNetwork``
(learned 4x4 constant, two modulated 3x3 convs per resolution with noise inputs, the first one
upsampling; "skip" architecture: a modulated 1x1 toRGB at every resolution, upsampled and summed).
Discriminator = residual blocks (two 3x3 convs, the second downsampling, plus a 1x1 downsampling
skip, sum scaled by sqrt(0.5)) down to 4x4, then the epilogue: minibatch-stddev, 3x3 conv, fc, out.

Latent layout: ``ws`` is [N, num_ws, w_dim]; conv layer ``i`` reads ``ws[:, i]`` and each toRGB reads
the index of the next block's first conv, so ``num_ws = 2 * log2(R) - 2`` (14 at 256 px) as in both
official codes. Style mixing = mapping twice and splicing along dim 1.

Parameter names are our own; the numerics follow the official code (see
``tests/test_stylegan2_model.py`` for the parameter counts of the official configs).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from degan_bench.models.stylegan2.config import StyleGAN2Config
from degan_bench.models.stylegan2.layers import (
    LRELU_GAIN,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    bias_act,
    fir_upsample2d,
    make_fir_filter,
    modulated_conv2d,
    normalize_2nd_moment,
)

NOISE_MODES = ("random", "const", "none")
IMG_CHANNELS = 3


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


def _check_resolution(resolution: int) -> int:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"StyleGAN2 resolution must be a power of two >= 4, got {resolution}")
    return int(math.log2(resolution))


# ------------------------------------------------------------------------------------------------
# Mapping


class MappingNetwork(nn.Module):
    """z (and label c) -> w through an MLP of equalized-lr layers with learning-rate multiplier.

    z is normalized to unit second moment; a label is embedded by a linear layer to ``w_dim``
    features, normalized the same way and concatenated (stylegan2-ada-pytorch conditioning). With
    ``num_ws`` set, the output is broadcast to [N, num_ws, w_dim] and a running mean ``w_avg``
    (decay ``w_avg_beta``) is kept for the truncation trick.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_layers: int,
        *,
        num_ws: int | None,
        lr_mult: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        embed_dim = w_dim if c_dim > 0 else 0
        in_dim = z_dim + embed_dim
        if num_layers == 0 and in_dim != w_dim:
            raise ValueError(
                f"a mapping network without layers needs z_dim + embed ({in_dim}) == w_dim ({w_dim})"
            )
        self.embed = EqualizedLinear(c_dim, embed_dim) if c_dim > 0 else None
        dims = [in_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualizedLinear(d_in, d_out, activation="lrelu", lr_mult=lr_mult)
            for d_in, d_out in itertools.pairwise(dims)
        )
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def map(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """One w per sample, [N, w_dim] (no broadcast, truncation or w_avg update)."""
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else list(z.shape)}")
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.embed is not None:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(
                    f"c must be [N, {self.c_dim}] labels, got {None if c is None else list(c.shape)}"
                )
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim]; ``w_avg + psi * (w - w_avg)`` on the first ``truncation_cutoff`` ws."""
        if self.num_ws is None:
            raise ValueError("this mapping network does not broadcast; call .map(z, c)")
        w = self.map(z, c)
        if update_w_avg:
            if self.w_avg_beta is None:
                raise ValueError("this mapping network does not track w_avg")
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        if truncation_psi != 1:
            truncated = self.w_avg.lerp(ws, truncation_psi)
            if truncation_cutoff is None or truncation_cutoff >= self.num_ws:
                ws = truncated
            else:
                first = torch.arange(self.num_ws, device=ws.device).reshape(1, -1, 1) < truncation_cutoff
                ws = torch.where(first, truncated, ws)
        return ws.contiguous()

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


# ------------------------------------------------------------------------------------------------
# Synthesis


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + per-pixel noise + bias + lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: bool,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("fir", make_fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str, fused: bool) -> torch.Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, fir=self.fir, fused=fused)
        if noise_mode == "random":
            noise = torch.randn(
                x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype
            )
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return bias_act(x, self.bias, "lrelu", gain=LRELU_GAIN, clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation (+ bias); equalized lr scales the styles."""

    def __init__(self, in_channels: int, w_dim: int, *, conv_clamp: float | None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(IMG_CHANNELS, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(IMG_CHANNELS))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv) + conv, and a toRGB where the architecture has one."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        has_torgb: bool,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.const = (
            nn.Parameter(torch.randn(out_channels, resolution, resolution)) if in_channels == 0 else None
        )
        self.conv_up = (
            SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp)
            if in_channels > 0
            else None
        )
        self.conv = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, up=False, conv_clamp=conv_clamp
        )
        self.torgb = ToRGB(out_channels, w_dim, conv_clamp=conv_clamp) if has_torgb else None
        self.num_conv = 1 if self.conv_up is None else 2
        self.register_buffer("fir", make_fir_filter(), persistent=False)

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str,
        fused: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``ws`` holds this block's conv ws followed by the toRGB w ([N, num_conv + 1, w_dim])."""
        if self.const is not None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            assert x is not None and self.conv_up is not None
            x = self.conv_up(x, ws[:, 0], noise_mode, fused)
        x = self.conv(x, ws[:, self.num_conv - 1], noise_mode, fused)
        if img is not None:
            img = fir_upsample2d(img, self.fir)
        if self.torgb is not None:
            rgb = self.torgb(x, ws[:, self.num_conv], fused)
            img = rgb if img is None else img + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, 3, R, R]."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        *,
        channel_base: int,
        channel_max: int,
        architecture: str = "skip",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = _check_resolution(img_resolution)
        if architecture not in ("skip", "orig"):
            raise ValueError(f"unknown generator architecture {architecture!r}; use 'skip' or 'orig'")
        self.w_dim, self.img_resolution, self.architecture = w_dim, img_resolution, architecture
        self.resolutions = [2**i for i in range(2, log2 + 1)]
        self.blocks = nn.ModuleList()
        in_channels = 0
        for res in self.resolutions:
            out_channels = channels_at(res, channel_base, channel_max)
            has_torgb = architecture == "skip" or res == img_resolution
            self.blocks.append(
                SynthesisBlock(
                    in_channels, out_channels, w_dim, res, has_torgb=has_torgb, conv_clamp=conv_clamp
                )
            )
            in_channels = out_channels
        self.num_ws = sum(block.num_conv for block in self.blocks) + 1

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: bool | None = None
    ) -> torch.Tensor:
        """``fused_modconv=None`` picks the grouped-conv form in eval mode, activation scaling in training."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        fused = (not self.training) if fused_modconv is None else fused_modconv
        ws = ws.to(torch.float32)
        x = img = None
        first = 0
        for block in self.blocks:
            x, img = block(x, img, ws.narrow(1, first, block.num_conv + 1), noise_mode, fused)
            first += block.num_conv
        assert img is not None
        return img


class Generator(nn.Module):
    """``G(z, c) -> images`` in ~[-1, 1]; ``G.mapping`` and ``G.synthesis`` callable separately."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        *,
        mapping_layers: int = 8,
        mapping_lr_mult: float = 0.01,
        w_avg_beta: float = 0.995,
        channel_base: int = 32768,
        channel_max: int = 512,
        architecture: str = "skip",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, IMG_CHANNELS
        self.synthesis = SynthesisNetwork(
            w_dim,
            img_resolution,
            channel_base=channel_base,
            channel_max=channel_max,
            architecture=architecture,
            conv_clamp=conv_clamp,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim,
            c_dim,
            w_dim,
            mapping_layers,
            num_ws=self.num_ws,
            lr_mult=mapping_lr_mult,
            w_avg_beta=w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


# ------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """(fromRGB on the first block) conv 3x3, conv 3x3 + 2x down; "resnet" adds a 1x1 down skip."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        *,
        architecture: str,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        self.fromrgb = (
            EqualizedConv2d(IMG_CHANNELS, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
            if in_channels == 0
            else None
        )
        self.conv = EqualizedConv2d(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv_down = EqualizedConv2d(
            tmp_channels, out_channels, 3, activation="lrelu", down=True, conv_clamp=conv_clamp
        )
        self.skip = (
            EqualizedConv2d(tmp_channels, out_channels, 1, bias=False, down=True)
            if architecture == "resnet"
            else None
        )

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(img)
        assert x is not None
        if self.skip is None:
            return self.conv_down(self.conv(x))
        # both branches carry gain sqrt(0.5) so their sum keeps unit variance
        y = self.skip(x, gain=math.sqrt(0.5))
        return y + self.conv_down(self.conv(x), gain=math.sqrt(0.5))


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch-stddev, conv 3x3, fc, out (projection onto the label embedding if conditional)."""

    def __init__(
        self,
        channels: int,
        *,
        cmap_dim: int,
        mbstd_group: int,
        mbstd_channels: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStdDev(mbstd_group, mbstd_channels) if mbstd_group > 0 else None
        extra = mbstd_channels if self.mbstd is not None else 0
        self.conv = EqualizedConv2d(channels + extra, channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualizedLinear(channels * 4 * 4, channels, activation="lrelu")
        self.out = EqualizedLinear(channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if cmap is not None:
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    """``D(images, c) -> logits [N, 1]``; ``return_features=True`` adds the pooled 4x4 trunk output."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        *,
        channel_base: int = 32768,
        channel_max: int = 512,
        architecture: str = "resnet",
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        cmap_layers: int = 8,
        mapping_lr_mult: float = 0.01,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = _check_resolution(img_resolution)
        if img_resolution < 8:
            raise ValueError("the StyleGAN2 discriminator needs a resolution of at least 8")
        if architecture not in ("resnet", "orig"):
            raise ValueError(f"unknown discriminator architecture {architecture!r}; use 'resnet' or 'orig'")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, IMG_CHANNELS
        self.blocks = nn.ModuleList()
        for i in range(log2, 2, -1):
            res = 2**i
            tmp = channels_at(res, channel_base, channel_max)
            self.blocks.append(
                DiscriminatorBlock(
                    0 if res == img_resolution else tmp,
                    tmp,
                    channels_at(res // 2, channel_base, channel_max),
                    architecture=architecture,
                    conv_clamp=conv_clamp,
                )
            )
        channels4 = channels_at(4, channel_base, channel_max)
        self.feature_dim = channels4
        cmap_dim = channels4 if c_dim > 0 else 0
        self.label_mapping = (
            MappingNetwork(
                0, c_dim, cmap_dim, cmap_layers, num_ws=None, lr_mult=mapping_lr_mult, w_avg_beta=None
            )
            if c_dim > 0
            else None
        )
        self.epilogue = DiscriminatorEpilogue(
            channels4,
            cmap_dim=cmap_dim,
            mbstd_group=mbstd_group,
            mbstd_channels=mbstd_channels,
            conv_clamp=conv_clamp,
        )

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """All resolution blocks: images [N, 3, R, R] -> [N, C4, 4, 4]."""
        if images.ndim != 4 or images.shape[1:] != (IMG_CHANNELS, self.img_resolution, self.img_resolution):
            raise ValueError(
                f"D expects images [N, 3, {self.img_resolution}, {self.img_resolution}], "
                f"got {list(images.shape)}"
            )
        x = None
        for block in self.blocks:
            x = block(x, images)
        assert x is not None
        return x

    def head(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The epilogue on trunk output ``x``: logits [N, 1]."""
        cmap = self.label_mapping.map(None, c) if self.label_mapping is not None else None
        return self.epilogue(x, cmap)

    def forward(
        self, images: torch.Tensor, c: torch.Tensor | None = None, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.trunk(images)
        logits = self.head(x, c)
        if return_features:
            return logits, x.to(torch.float32).mean(dim=[2, 3])
        return logits


# ------------------------------------------------------------------------------------------------


def build(cfg: StyleGAN2Config, resolution: int) -> tuple[Generator, Discriminator]:
    """The (G, D) pair of ``cfg`` at ``resolution`` (freshly initialized, on the CPU, train mode)."""
    G = Generator(
        cfg.z_dim,
        cfg.c_dim,
        cfg.w_dim,
        resolution,
        mapping_layers=cfg.mapping_layers,
        mapping_lr_mult=cfg.mapping_lr_mult,
        w_avg_beta=cfg.w_avg_beta,
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        architecture=cfg.g_architecture,
        conv_clamp=cfg.conv_clamp,
    )
    D = Discriminator(
        cfg.c_dim,
        resolution,
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        architecture=cfg.d_architecture,
        mbstd_group=cfg.mbstd_group,
        mbstd_channels=cfg.mbstd_channels,
        cmap_layers=cfg.d_cmap_layers,
        mapping_lr_mult=cfg.mapping_lr_mult,
        conv_clamp=cfg.conv_clamp,
    )
    return G, D
