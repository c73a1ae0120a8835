"""BigGAN generator and projection discriminator at 32 px (see :mod:`.config` for the two codes).

Contract (``degan_bench.models``): ``G(z, c)`` with ``c`` one-hot ``[N, c_dim]`` (the class is
``c.argmax(1)``), images in [-1, 1]. ``G.stem(z, c) -> (h, cond)`` is the output of G's first layer
(the z -> 4x4 linear, reshaped to ``[N, C, 4, 4]``) plus a tuple of one conditioning tensor per G block
(the class index when each BN owns class embeddings, else ``[shared(y), z_chunk_i]``), and
``G.body(h, cond)`` is the rest; the lottery-ticket AdvAug perturbs ``h`` between the two.
``D.trunk(x)`` is the ReLU + sum-pooled block output fed to the final linear; ``D.head(h, c)`` adds
the projection ``<embed(y), h>`` to that linear.

BigGAN has no noise inputs and its truncation trick truncates z itself, so ``G`` accepts the
``noise_mode`` keyword of the StyleGAN2 contract and ignores it, and accepts only ``truncation_psi=1``.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import init

from degan_bench.models.biggan.config import NUM_D_BLOCKS, NUM_G_BLOCKS, BigGANConfig
from degan_bench.models.biggan.layers import (
    ConditionalBatchNorm2d,
    DBlock,
    GBlock,
    Layers,
    SelfAttention,
    batch_norm,
)
from degan_bench.models.cifar32 import TrunkHeadDiscriminator, check_resolution

BOTTOM = 4  # G's first feature map is 4x4
IMG_CHANNELS = 3
NOISE_MODES = ("random", "const", "none")


def labels_from_onehot(c: torch.Tensor | None, c_dim: int, n: int) -> torch.Tensor:
    """Class index [N] from a one-hot (or any score) matrix ``c`` [N, c_dim]."""
    if c is None or c.ndim != 2 or c.shape != (n, c_dim):
        got = None if c is None else tuple(c.shape)
        raise ValueError(f"conditional network: c must be one-hot [{n}, {c_dim}], got {got}")
    return c.argmax(dim=1)


def init_weights(module: nn.Module, style: str, zero_bias: bool) -> None:
    """Re-initialize every conv/linear/embedding weight in ``module`` (the scope both codes use)."""
    for m in module.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            continue
        if style == "N02":
            init.normal_(m.weight, 0.0, 0.02)
        elif style == "ortho":
            init.orthogonal_(m.weight)
        elif style == "xavier":
            init.xavier_uniform_(m.weight)
        else:
            raise ValueError(f"unknown init {style!r}")
        if zero_bias and getattr(m, "bias", None) is not None and not isinstance(m, nn.Embedding):
            init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        self.z_dim, self.c_dim = cfg.z_dim, cfg.c_dim
        self.hier = cfg.hier
        self.chunk = cfg.z_dim // (NUM_G_BLOCKS + 1) if cfg.hier else cfg.z_dim
        self.channels = 4 * cfg.g_ch
        layers = Layers(cfg.g_sn, cfg.sn_style, cfg.sn_itrs, cfg.sn_eps)
        # Without a shared embedding the BNs embed the class index themselves (BigGAN's G.shared is
        # then the identity); with it, they read [shared(y), z chunk] through linears.
        self.shared = nn.Embedding(cfg.c_dim, cfg.shared_dim) if cfg.shared_dim else None
        cond_dim = cfg.shared_dim + (self.chunk if cfg.hier else 0) if cfg.shared_dim else 0
        bn = partial(
            ConditionalBatchNorm2d,
            num_classes=cfg.c_dim,
            cond_dim=cond_dim,
            layers=layers,
            eps=cfg.bn_eps,
            momentum=cfg.bn_momentum,
        )
        self.linear = layers.linear(self.chunk, self.channels * BOTTOM * BOTTOM)
        blocks: list[nn.Module] = []
        for i in range(NUM_G_BLOCKS):
            blocks.append(GBlock(self.channels, self.channels, bn, layers))
            if cfg.g_attn_after == i + 1:
                blocks.append(SelfAttention(self.channels, layers))
        self.blocks = nn.ModuleList(blocks)
        self.out_bn = nn.BatchNorm2d(self.channels, eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        self.out_conv = layers.conv(self.channels, IMG_CHANNELS, kernel_size=3, padding=1)
        init_weights(self, cfg.init, cfg.zero_bias_init)
        # sample_mode train: in eval mode the BNs still normalize with the batch's statistics (without
        # touching the running ones), as BigGAN-PyTorch samples G_ema in training mode without
        # --G_eval_mode. The evaluator reads sampling_batch: with batch statistics it is part of the protocol.
        for module in self.modules():
            if isinstance(module, ConditionalBatchNorm2d):
                module.eval_batch_stats = cfg.sample_mode == "train"
        self.eval_batch_stats = cfg.sample_mode == "train"
        self.sampling_batch: int | None = cfg.sample_batch if cfg.sample_mode == "train" else None

    def stem(self, z: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        y = labels_from_onehot(c, self.c_dim, len(z))
        if self.hier:
            z0, *chunks = torch.split(z, self.chunk, dim=1)
            shared = self.shared(y)  # type: ignore[misc]
            cond = tuple(torch.cat([shared, zi], dim=1) for zi in chunks)
        else:
            z0 = z
            cond = (self.shared(y) if self.shared is not None else y,) * NUM_G_BLOCKS
        h = self.linear(z0).view(len(z), self.channels, BOTTOM, BOTTOM)
        return h, cond

    def body(self, h: torch.Tensor, cond: tuple[torch.Tensor, ...]) -> torch.Tensor:
        i = 0
        for block in self.blocks:
            if isinstance(block, GBlock):
                h = block(h, cond[i])
                i += 1
            else:
                h = block(h)
        return torch.tanh(self.out_conv(torch.relu(batch_norm(self.out_bn, h, self.eval_batch_stats))))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        if truncation_psi != 1.0:
            raise ValueError(
                "BigGAN truncates z itself (sample z from a truncated normal); truncation_psi must be 1"
            )
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        return self.body(*self.stem(z, c))


class Discriminator(TrunkHeadDiscriminator):
    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        self.c_dim = cfg.c_dim
        ch = cfg.d_ch_mult * cfg.d_ch
        layers = Layers(cfg.d_sn, cfg.sn_style, cfg.sn_itrs, cfg.sn_eps)
        blocks: list[nn.Module] = []
        for i in range(NUM_D_BLOCKS):
            blocks.append(
                DBlock(
                    IMG_CHANNELS if i == 0 else ch,
                    ch,
                    layers,
                    preactivation=i > 0,
                    downsample=i < 2,  # 32 -> 16 -> 8, then two blocks at 8x8
                    shortcut_relu=cfg.d_shortcut_relu,
                )
            )
            if cfg.d_attn_after == i + 1:
                blocks.append(SelfAttention(ch, layers))
        self.blocks = nn.Sequential(*blocks)
        self.linear = layers.linear(ch, 1)
        self.embed = layers.embedding(cfg.c_dim, ch)
        self.feature_dim = ch
        init_weights(self, cfg.init, cfg.zero_bias_init)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.blocks(images)).sum(dim=[2, 3])

    def head(self, features: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        y = labels_from_onehot(c, self.c_dim, len(features))
        return self.linear(features) + (self.embed(y) * features).sum(dim=1, keepdim=True)


def build(cfg: BigGANConfig, resolution: int) -> tuple[Generator, Discriminator]:
    """The (G, D) pair of ``cfg`` (freshly initialized, on the CPU, train mode); 32 px only."""
    check_resolution("biggan", resolution)
    return Generator(cfg), Discriminator(cfg)


@torch.no_grad()
def sample(
    G: nn.Module,
    num: int,
    class_index: int | torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` images and their class indices from a conditional G, z ~ N(0, I) from ``seed``.

    ``class_index``: None draws classes uniformly (same seed), an int fixes one class, a tensor [num]
    gives each image's class. Runs G in whatever mode it is in (train-mode BN uses batch statistics).
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num, int(G.z_dim), generator=gen)
    c_dim = int(G.c_dim)
    if class_index is None:
        labels = torch.randint(c_dim, (num,), generator=gen)
    elif isinstance(class_index, int):
        labels = torch.full((num,), class_index, dtype=torch.long)
    else:
        labels = class_index.to("cpu", torch.long).reshape(-1)
        if len(labels) != num:
            raise ValueError(f"class_index has {len(labels)} entries for {num} samples")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < c_dim:
        raise ValueError(f"class indices must lie in [0, {c_dim})")
    c = torch.nn.functional.one_hot(labels, c_dim).float()
    return G(z.to(device), c.to(device)), labels
