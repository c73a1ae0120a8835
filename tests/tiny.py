"""Shared pieces of the CPU training tests: a tiny StyleGAN2 and a deep tensor comparison."""

from __future__ import annotations

from typing import Any

import torch

#: A StyleGAN2 at 16 px with 16 channels and batch 8 in two accumulation rounds: fast on 2 CPU cores
#: yet exercising every layer type. Tests add their own schedule (kimg, ticks, regularizer intervals).
TINY_MODEL = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
    "model.channel_base=128", "model.channel_max=16", "training.batch=8", "training.batch_gpu=4",
]  # fmt: skip


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Bit-identical nested state (tensors, dicts, lists, plain values), naming the first difference."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
