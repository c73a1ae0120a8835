"""Class-conditional BigGAN at 32 px, in the two CIFAR configurations the reproduced papers train.

:data:`PRESETS` (the dataclass defaults are ``diffaugment_cifar``):

- ``diffaugment_cifar``: mit-han-lab/data-efficient-gans ``DiffAugment-biggan-cifar`` (a BigGAN-PyTorch
  fork; also DigGAN's CIFAR code). ``utils.py`` parser defaults plus the flags of every
  ``scripts/*.sh``: ``G_ch = D_ch = 64``, ``dim_z 128``, ``--G_attn 0 --D_attn 0``,
  ``--G_init N02 --D_init N02``; not passed, so at their defaults: ``G_shared`` and ``hier`` off
  (each conditional BN owns two class embeddings), ``SN_eps 1e-8``, ``BN_eps 1e-5``, one singular
  vector with one power iteration in G and D, ``G_param = D_param = SN``.
- ``studiogan_cifar``: VITA-Group/Ultra-Data-Efficient-GAN-Training ``BigGAN and DiffAugGAN/``
  (a PyTorch-StudioGAN fork), ``configs/CIFAR10_less/DiffAugGAN_adv.json`` (CIFAR100_less has the same
  model block): ``big_resnet``, ``ProjGAN_adv``, ``z_dim 80`` split hierarchically with a shared
  128-d class embedding, ``g_conv_dim = d_conv_dim = 96``, SN in G and D, self-attention after G block
  2 and D block 1, ortho init; ``utils/model_ops.py``: ``torch.nn.utils.spectral_norm`` with eps 1e-6,
  BatchNorm eps 1e-4, biases zeroed at init.

Where the two codes' blocks differ, a field switches (same trainable tensors, different function);
values for ``diffaugment_cifar`` (BigGAN-PyTorch) / ``studiogan_cifar`` (StudioGAN ``big_resnet``):

- ``sn_style``: ``biggan`` (eval mode still runs one power iteration, unsaved) / ``torch`` (eval mode
  uses the stored ``u``, ``v``).
- ``d_ch_mult``: 4 / 2 (D blocks have ``d_ch_mult * d_ch`` channels).
- ``d_shortcut_relu``: false / true. StudioGAN's ``DiscBlock`` applies an in-place ReLU to the tensor
  its shortcut also holds, so the shortcut of D blocks 2-4 reads relu(x); BigGAN-PyTorch's reads x.
  Checked against the official class: with the switch off, its logits differ.
- ``zero_bias_init``: false (torch's default bias init kept) / true.
- ``sample_batch``: 50 (BigGAN-PyTorch's G_batch_size) / 64 (StudioGAN generates in batches of its
  evaluation loader's batch size). Both sample G_ema with ``sample_mode: train``, each batch's batch-norm
  statistics: the DiffAugment/DigGAN scripts pass no --G_eval_mode, and StudioGAN's
  ``utils/misc.py change_generator_mode`` puts G_ema in eval mode and then its batch norms back in
  training mode (``set_bn_train``). ``sample_mode: eval`` (running statistics) is an opt-in.

Everything else is shared: G = linear z -> 4x4 x (4 * g_ch), three up-sampling residual blocks
(conditional BN, ReLU, nearest 2x, 3x3 conv, conditional BN, ReLU, 3x3 conv; 1x1 conv shortcut), BN,
ReLU, 3x3 conv, tanh. D = an optimized first block (conv, ReLU, conv, 2x2 avg-pool; pool then 1x1
conv shortcut), a down-sampling pre-activation block, two pre-activation blocks at 8x8, ReLU, sum
pooling, linear + projection with a spectral-normalized class embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from degan_bench.schema import param

NUM_G_BLOCKS = 3
NUM_D_BLOCKS = 4


@dataclass
class BigGANConfig:
    arch: Literal["biggan"] = param("biggan", help="model family")
    c_dim: int = param(10, help="number of classes (CIFAR-10: 10, CIFAR-100: 100)", min=1)
    z_dim: int = param(128, help="latent z dimension", min=1)
    g_ch: int = param(
        64, help="G width: each G block has 4 * g_ch channels (BigGAN G_ch, StudioGAN g_conv_dim)", min=1
    )
    d_ch: int = param(
        64, help="D width: each D block has d_ch_mult * d_ch channels (D_ch, d_conv_dim)", min=1
    )
    d_ch_mult: int = param(
        4, help="D block channels per d_ch (BigGAN-PyTorch 32 px: 4, StudioGAN 32 px: 2)", min=1
    )
    shared_dim: int = param(
        0,
        help="shared class embedding fed to every conditional BN (0 = each BN owns class embeddings, BigGAN "
        "without --G_shared)",
        min=0,
    )
    hier: bool = param(
        False,
        help="split z into 4 chunks: the first feeds the linear, one joins the shared embedding per block",
    )
    g_attn_after: int = param(
        0, help="self-attention after this G block (1-3; 0 = none)", min=0, max=NUM_G_BLOCKS
    )
    d_attn_after: int = param(
        0, help="self-attention after this D block (1-4; 0 = none)", min=0, max=NUM_D_BLOCKS
    )
    g_sn: bool = param(True, help="spectral norm in G (its convs, linear and conditional-BN linears)")
    d_sn: bool = param(True, help="spectral norm in D (convs, linear and projection embedding)")
    sn_style: Literal["biggan", "torch"] = param(
        "biggan", help="spectral-norm variant: BigGAN-PyTorch layers.SN or torch.nn.utils.spectral_norm"
    )
    sn_itrs: int = param(1, help="power iterations per training forward", min=1)
    sn_eps: float = param(1e-8, help="epsilon of the power-iteration normalization", min=0.0)
    bn_eps: float = param(1e-5, help="BatchNorm epsilon (conditional BNs and G's output BN)", min=0.0)
    bn_momentum: float = param(0.1, help="BatchNorm running-statistics momentum", min=0.0, max=1.0)
    init: Literal["N02", "ortho", "xavier"] = param(
        "N02", help="init of conv/linear/embedding weights: N(0, 0.02), orthogonal or Xavier uniform"
    )
    zero_bias_init: bool = param(
        False, help="zero conv/linear biases at init (StudioGAN), else keep torch's default"
    )
    d_shortcut_relu: bool = param(
        False, help="D blocks 2-4 feed relu(x) to their shortcut (StudioGAN's in-place ReLU) instead of x"
    )
    sample_mode: Literal["train", "eval"] = param(
        "train",
        help="how G (G_ema) samples for grids and metrics: 'train' = batch-norm statistics of each sampling "
        "batch (BigGAN-PyTorch without --G_eval_mode, as DiffAugment/DigGAN's scripts run; StudioGAN's "
        "change_generator_mode with set_bn_train); 'eval' = running statistics",
    )
    sample_batch: int = param(
        50,
        help="sampling batch with sample_mode train (BigGAN-PyTorch: G_batch_size 50; StudioGAN: the "
        "evaluation loader's batch, 64 on CIFAR)",
        min=1,
    )

    def check(self) -> None:
        if self.hier and self.shared_dim == 0:
            raise ValueError("hier needs a shared class embedding (shared_dim > 0)")
        if self.hier and self.z_dim % (NUM_G_BLOCKS + 1):
            raise ValueError(f"hier splits z into {NUM_G_BLOCKS + 1} equal chunks: z_dim must divide by it")
        for name, ch in (("g", 4 * self.g_ch), ("d", self.d_ch_mult * self.d_ch)):
            if getattr(self, f"{name}_attn_after") and ch < 8:
                raise ValueError(
                    f"{name}_attn_after needs at least 8 block channels (attention uses ch // 8)"
                )


#: Named configurations (see the module docstring); CIFAR-100 runs set ``c_dim=100``.
PRESETS: dict[str, BigGANConfig] = {
    "diffaugment_cifar": BigGANConfig(),
    "studiogan_cifar": BigGANConfig(
        z_dim=80,
        g_ch=96,
        d_ch=96,
        d_ch_mult=2,
        shared_dim=128,
        hier=True,
        g_attn_after=2,
        d_attn_after=1,
        sn_style="torch",
        sn_eps=1e-6,
        bn_eps=1e-4,
        init="ortho",
        zero_bias_init=True,
        d_shortcut_relu=True,
        sample_mode="train",
        sample_batch=64,
    ),
}


def preset(name: str, **overrides: object) -> BigGANConfig:
    """``PRESETS[name]`` with fields replaced, e.g. ``preset("studiogan_cifar", c_dim=100)``."""
    return replace(PRESETS[name], **overrides)  # type: ignore[arg-type]
