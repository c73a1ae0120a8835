"""Sample grids (``reals.png``, ``fakes_init.png``, ``fakes_<kimg>.png``) with fixed seeds."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from degan_bench.core.fileio import atomic_write_bytes
from degan_bench.models import images_to_uint8

GRID_SEED = 0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float NCHW -> uint8 NHWC for PNG grids (the metrics' quantization)."""
    return images_to_uint8(images.detach().float()).permute(0, 2, 3, 1).cpu().numpy()


def save_grid(images: np.ndarray, path: Path, grid: tuple[int, int]) -> None:
    """Tile uint8 NHWC ``images`` row-major into ``grid`` = (columns, rows) and write a PNG atomically."""
    cols, rows = grid
    n, h, w, c = images.shape
    canvas = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(min(n, cols * rows)):
        r, col = divmod(i, cols)
        canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def grid_latents(G: nn.Module, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed latents (and labels) for fake grids; independent of the training RNG."""
    gen = torch.Generator().manual_seed(GRID_SEED)
    z = torch.randn(count, G.z_dim, generator=gen).to(device)
    c_dim = getattr(G, "c_dim", 0)
    if c_dim:
        labels = torch.arange(count) % c_dim
        c = torch.nn.functional.one_hot(labels, c_dim).float().to(device)
    else:
        c = torch.zeros(count, 0, device=device)
    return z, c


@torch.no_grad()
def render_fakes(G: nn.Module, z: torch.Tensor, c: torch.Tensor, batch: int) -> np.ndarray:
    """G's images for fixed latents, with constant noise so grids do not touch the training RNG."""
    chunks = [
        to_uint8(G(z[i : i + batch], c[i : i + batch], noise_mode="const")) for i in range(0, len(z), batch)
    ]
    return np.concatenate(chunks)
