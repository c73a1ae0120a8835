"""Prepared datasets on disk and in memory.

A prepared dataset lives at ``<data root>/<name>/<resolution>/<split>/`` as

- ``images.npy``: uint8 array ``[N, H, W, 3]`` (memory-mapped when read, so 70k FFHQ images do not
  have to fit in RAM and nothing is decoded per step);
- ``labels.npy`` (optional): int64 ``[N]``;
- ``manifest.json``: name, split, count, resolution, source, resize filter, ``content_hash`` and the
  per-image source file names.

``content_hash`` is the sha256 of the array's shape and bytes (and labels): it identifies the data,
whatever its path, and keys every cache built from it (e.g. FID reference statistics).

All splits of one dataset at one resolution, ``<data root>/<name>/<resolution>/``, are written together
into a temporary sibling directory and renamed into place at the end (see
:mod:`degan_bench.data.prepare`), so a reader sees either a complete prepared dataset or none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from degan_bench.errors import DataError
from degan_bench.paths import data_root

STORE_FORMAT = 1
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
MANIFEST_FILE = "manifest.json"


def _images_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    return f"images{tuple(shape)}{dtype.str}".encode()


def _labels_header(labels: np.ndarray) -> bytes:
    return f"labels{tuple(labels.shape)}{labels.dtype.str}".encode()


def array_content_hash(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """sha256 over shape, dtype and bytes of ``images`` (and ``labels``), in chunks."""
    h = hashlib.sha256()
    h.update(_images_header(images.shape, images.dtype))
    flat = images.reshape(len(images), -1) if len(images) else images
    for start in range(0, len(flat), 1024):
        h.update(np.ascontiguousarray(flat[start : start + 1024]).tobytes())
    if labels is not None:
        h.update(_labels_header(labels))
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
            raise ValueError(
                f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}"
            )
        if not self.content_hash:
            self.content_hash = array_content_hash(self.images, self.labels)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])


def dataset_dir(name: str, resolution: int) -> Path:
    """``<data root>/<name>/<resolution>``: all splits of one prepared dataset at one resolution."""
    return data_root() / name / str(resolution)


def read_manifest(split_dir: Path) -> dict[str, Any] | None:
    """The split's manifest, or None when the split is not (completely) prepared."""
    path = split_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(
            f"{path}: unreadable manifest ({err})", fix="prepare the dataset again with --force"
        ) from None
    return manifest if manifest.get("format") == STORE_FORMAT else None


class SplitWriter:
    """Writes one split image by image into ``images.npy`` (memory-mapped), hashing as it goes.

    The running hash equals :func:`array_content_hash` of the finished arrays, so nothing is read back.
    """

    def __init__(self, directory: Path, count: int, resolution: int, with_labels: bool) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.count = count
        shape = (count, resolution, resolution, 3)
        self._images = np.lib.format.open_memmap(
            directory / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=shape
        )
        self._labels = np.zeros(count, dtype=np.int64) if with_labels else None
        self._hash = hashlib.sha256(_images_header(shape, np.dtype(np.uint8)))
        self._written = 0

    def add(self, image: np.ndarray, label: int | None = None) -> None:
        if image.shape != self._images.shape[1:] or image.dtype != np.uint8:
            expected = self._images.shape[1:]
            raise ValueError(
                f"image {self._written}: expected uint8 {expected}, got {image.dtype} {image.shape}"
            )
        self._images[self._written] = image
        self._hash.update(np.ascontiguousarray(image).tobytes())
        if self._labels is not None:
            if label is None:
                raise ValueError(f"image {self._written}: this split has labels, none given")
            self._labels[self._written] = label
        self._written += 1

    def finish(self, manifest: dict[str, Any]) -> str:
        """Flush, write labels and the manifest (last: its presence marks the split complete)."""
        if self._written != self.count:
            raise ValueError(f"wrote {self._written} images, expected {self.count}")
        self._images.flush()
        del self._images
        if self._labels is not None:
            np.save(self.directory / LABELS_FILE, self._labels)
            self._hash.update(_labels_header(self._labels))
            self._hash.update(self._labels.tobytes())
        content_hash = self._hash.hexdigest()
        manifest = {"format": STORE_FORMAT, **manifest, "count": self.count, "content_hash": content_hash}
        (self.directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        return content_hash


def load_split(split_dir: Path, name: str, split: str, manifest: dict[str, Any]) -> PreparedDataset:
    """Memory-map a prepared split; the content hash is taken from the manifest (see ``verify``)."""
    images = np.load(split_dir / IMAGES_FILE, mmap_mode="r")
    labels_path = split_dir / LABELS_FILE
    labels = np.load(labels_path) if labels_path.is_file() else None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != manifest.get("count"):
        raise DataError(
            f"{split_dir}: images.npy ({images.dtype} {images.shape}) does not match its manifest "
            f"({manifest.get('count')} images)",
            fix="prepare the dataset again with --force",
        )
    return PreparedDataset(
        name=name,
        split=split,
        images=images,
        labels=labels,
        content_hash=manifest["content_hash"],
        manifest=manifest,
    )
