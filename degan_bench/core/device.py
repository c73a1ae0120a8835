"""``--device`` values: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (and ``mps`` where torch has it).

One parser for ``run`` and ``eval``, so a typo or a device this machine lacks is a one-line error
naming the choices instead of torch's traceback.
"""

from __future__ import annotations

import torch

from degan_bench.errors import DeganError

CHOICES = "auto, cpu, cuda, cuda:N"


def parse_device(text: str, option: str = "--device", *, present: bool = True) -> torch.device:
    """The torch device ``text`` names; ``auto`` is CUDA when visible, else the CPU. ``present=False``
    checks the spelling only (a dry run on a login node may name the GPU of the compute node)."""
    value = text.strip().lower()
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise DeganError(f"{option} {text}: not a device", fix=f"use one of {CHOICES}") from None
    if device.type == "cpu" or (not present and device.type in ("cuda", "mps")):
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeganError(
                f"{option} {text} was asked for but no CUDA device is visible",
                fix=f"check `degan-bench doctor`, or use {option} cpu",
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeganError(
                f"{option} {text}: only {count} CUDA device(s) are visible (cuda:0 .. cuda:{count - 1})",
                fix="pick a visible device, or check CUDA_VISIBLE_DEVICES",
            )
        return device
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise DeganError(f"{option} {text}: degan-bench runs on CPU or CUDA devices", fix=f"use one of {CHOICES}")
