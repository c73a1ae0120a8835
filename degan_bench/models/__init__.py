"""Model families. Each registers its config dataclass and a builder ``(config, resolution) -> (G, D)``.

Networks follow a small contract the training loop and methods rely on:

- ``G(z, c, truncation_psi=1.0, noise_mode="random") -> images`` in [-1, 1], NCHW; ``G.z_dim``,
  ``G.c_dim``, ``G.mapping(z, c, truncation_psi=..., update_w_avg=...) -> ws [N, num_ws, w_dim]``,
  ``G.synthesis(ws, noise_mode=...) -> images``, ``G.num_ws``.
- ``D(images, c, return_features=False) -> logits [N, 1]`` or ``(logits, features [N, F])``, where the
  features are D's pooled trunk output before the final epilogue (used by contrastive methods).

The 32 px CIFAR families (``biggan``, ``sngan``) have no mapping network: ``G(z, c)`` accepts
``noise_mode`` and only ``truncation_psi=1``. For feature-level augmentation they split both nets:
``G.stem(z, c) -> (h, cond)`` (the z -> 4x4 linear's output and the per-block conditioning) with
``G(z, c) == G.body(h, cond)``, and ``D.trunk(images) -> features`` with
``D(images, c) == D.head(features, c)`` (projection term included). ``c`` is one-hot ``[N, c_dim]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from degan_bench.errors import RecipeError
from degan_bench.schema import did_you_mean, from_dict


@dataclass(frozen=True)
class ModelFamily:
    name: str
    config_cls: type
    build: Callable[[Any, int], tuple[nn.Module, nn.Module]]


_FAMILIES: dict[str, ModelFamily] = {}


def register_model_family(family: ModelFamily) -> None:
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} registered twice")
    _FAMILIES[family.name] = family


def model_family(arch: str) -> ModelFamily:
    _load_builtin()
    if arch not in _FAMILIES:
        hint = did_you_mean(arch, _FAMILIES)
        raise RecipeError(
            f"unknown model.arch {arch!r}",
            fix=f"did you mean {hint!r}?" if hint else f"choose one of {', '.join(sorted(_FAMILIES))}",
        )
    return _FAMILIES[arch]


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] (NCHW) to uint8 NCHW, rounding as both official code bases do."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def parse_model_config(data: dict[str, Any], source: str | None = None) -> Any:
    arch = data.get("arch", "stylegan2")
    return from_dict(model_family(arch).config_cls, data, path="model", source=source)


def build_models(config: Any, resolution: int) -> tuple[nn.Module, nn.Module]:
    return model_family(config.arch).build(config, resolution)


def _load_builtin() -> None:
    if _FAMILIES:
        return
    from degan_bench.models.stylegan2 import config as sg2_config

    def build_stylegan2(cfg: Any, resolution: int) -> tuple[nn.Module, nn.Module]:
        from degan_bench.models.stylegan2.networks import build

        return build(cfg, resolution)

    register_model_family(ModelFamily("stylegan2", sg2_config.StyleGAN2Config, build_stylegan2))

    from degan_bench.models.biggan import config as biggan_config

    def build_biggan(cfg: Any, resolution: int) -> tuple[nn.Module, nn.Module]:
        from degan_bench.models.biggan.networks import build

        return build(cfg, resolution)

    register_model_family(ModelFamily("biggan", biggan_config.BigGANConfig, build_biggan))

    from degan_bench.models.sngan import config as sngan_config

    def build_sngan(cfg: Any, resolution: int) -> tuple[nn.Module, nn.Module]:
        from degan_bench.models.sngan.networks import build

        return build(cfg, resolution)

    register_model_family(ModelFamily("sngan", sngan_config.SNGANConfig, build_sngan))
