"""Spectral normalization (Miyato et al. 2018) as layers whose trainable tensor is a plain ``weight``.

Two numerically different variants exist in the code bases we reproduce; ``style`` picks one:

- ``"biggan"``: BigGAN-PyTorch ``layers.SN`` (used by mit-han-lab/data-efficient-gans
  ``DiffAugment-biggan-cifar``). In train mode each forward runs ``num_itrs`` power iterations from the
  stored ``u`` and stores the new ``u``; in eval mode it still runs one power iteration from the stored
  ``u`` but does not store it. Only the top singular value is used (BigGAN's ``num_svs`` is 1 in every
  config we reproduce).
- ``"torch"``: ``torch.nn.utils.spectral_norm`` (StudioGAN, SNGAN). Train mode runs the power
  iterations and stores ``u`` and ``v``; eval mode uses the stored pair without iterating.

Both iterate ``v = normalize(W^T u)``, ``u = normalize(W v)``, ``sigma = u^T W v`` on ``W`` reshaped to
``[out, -1]`` (an embedding's ``[num_embeddings, dim]``), with gradients through ``W`` only.

``u`` and ``v`` are buffers, so they are saved with the state dict and a restored network computes
bit-identical outputs. Keeping ``weight`` a parameter (not ``weight_orig`` plus a hook) lets
``torch.nn.utils.prune`` mask it directly: the forward reads ``self.weight``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

SNStyle = Literal["biggan", "torch"]


class SpectralNormMixin:
    """Mixed into a Conv2d/Linear/Embedding subclass; call :meth:`_init_sn` after the base ``__init__``."""

    weight: torch.Tensor
    training: bool
    u: torch.Tensor
    v: torch.Tensor

    def _init_sn(self, style: SNStyle, num_itrs: int, eps: float) -> None:
        if style not in ("biggan", "torch"):
            raise ValueError(f"unknown spectral-norm style {style!r}")
        if num_itrs < 1:
            raise ValueError("spectral norm needs at least one power iteration")
        self.sn_style, self.sn_itrs, self.sn_eps = style, num_itrs, eps
        rows = self.weight.shape[0]
        cols = self.weight[0].numel()
        register = nn.Module.register_buffer
        register(self, "u", F.normalize(torch.randn(rows), dim=0, eps=eps))  # type: ignore[arg-type]
        register(self, "v", F.normalize(torch.randn(cols), dim=0, eps=eps))  # type: ignore[arg-type]

    def sn_weight(self) -> torch.Tensor:
        """``weight / sigma``, updating the ``u``/``v`` buffers in train mode."""
        w = self.weight
        mat = w.reshape(w.shape[0], -1)
        u, v = self.u, self.v
        iterate = self.training or self.sn_style == "biggan"
        if iterate:
            with torch.no_grad():
                # BigGAN's eval pass iterates once from the stored u and discards the result;
                # more iterations from the same stored u would repeat the same step.
                for _ in range(self.sn_itrs if self.training else 1):
                    v = F.normalize(torch.mv(mat.t(), u), dim=0, eps=self.sn_eps)
                    u = F.normalize(torch.mv(mat, v), dim=0, eps=self.sn_eps)
                if self.training:
                    self.u.copy_(u)
                    self.v.copy_(v)
                    u, v = self.u.clone(), self.v.clone()  # the buffers change again next step
        sigma = torch.dot(u, torch.mv(mat, v))
        return w / sigma

    def extra_sn_repr(self) -> str:
        return f"sn={self.sn_style}, sn_itrs={self.sn_itrs}, sn_eps={self.sn_eps:g}"


class SNConv2d(SpectralNormMixin, nn.Conv2d):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        bias: bool = True,
        *,
        style: SNStyle,
        num_itrs: int = 1,
        eps: float = 1e-12,
    ) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self._init_sn(style, num_itrs, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.sn_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.extra_sn_repr()}"


class SNLinear(SpectralNormMixin, nn.Linear):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        style: SNStyle,
        num_itrs: int = 1,
        eps: float = 1e-12,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_sn(style, num_itrs, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.sn_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.extra_sn_repr()}"


class SNEmbedding(SpectralNormMixin, nn.Embedding):
    """Spectral-normalized ``[num_embeddings, dim]`` table (the projection D's class embedding)."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        style: SNStyle,
        num_itrs: int = 1,
        eps: float = 1e-12,
    ) -> None:
        nn.Embedding.__init__(self, num_embeddings, embedding_dim)
        self._init_sn(style, num_itrs, eps)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return F.embedding(index, self.sn_weight())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.extra_sn_repr()}"


def sn_modules(module: nn.Module) -> list[SpectralNormMixin]:
    return [m for m in module.modules() if isinstance(m, SpectralNormMixin)]
