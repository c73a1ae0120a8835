"""Prepared datasets on disk and in memory.

A prepared dataset lives at ``<data root>/<name>/<resolution>/<split>/`` as

- ``images.npy``: uint8 array ``[N, H, W, 3]`` (memory-mapped when read, so 70k FFHQ images do not
  have to fit in RAM and nothing is decoded per step);
- ``labels.npy`` (optional): int64 ``[N]``;
- ``manifest.json``: name, split, count, resolution, source, resize filter, ``content_hash`` and the
  per-image source file names.

``content_hash`` is the sha256 of the array's shape and bytes (and labels): it identifies the data,
whatever its path, and keys every cache built from it (e.g. FID reference statistics).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def array_content_hash(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """sha256 over shape, dtype and bytes of ``images`` (and ``labels``), in chunks."""
    h = hashlib.sha256()
    h.update(f"images{tuple(images.shape)}{images.dtype.str}".encode())
    flat = images.reshape(len(images), -1) if len(images) else images
    for start in range(0, len(flat), 1024):
        h.update(np.ascontiguousarray(flat[start : start + 1024]).tobytes())
    if labels is not None:
        h.update(f"labels{tuple(labels.shape)}{labels.dtype.str}".encode())
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


@dataclass
class PreparedDataset:
    """Images of one dataset split at one resolution, uint8 NHWC RGB."""

    name: str
    split: str
    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray | None = None
    content_hash: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}")
        if not self.content_hash:
            self.content_hash = array_content_hash(self.images, self.labels)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])
