"""Reference images for a protocol, and their Inception statistics cached by content.

:func:`load_reference` is the only place that talks to the data package
(``degan_bench.data.registry.get_dataset_spec`` and ``degan_bench.data.prepare.load_prepared``):

- ``train``: the run's training images, subset rule included (obama-100: the 100 images;
  cifar10-10pct: the 5,000 subset images);
- ``full``: the ``train`` split of the base dataset without any subset (ffhq-1k: all 70k FFHQ);
- ``test``: the ``test`` split of the base dataset.

Statistics are cached under ``<cache>/metrics/<key>.npz``; the key is the sha256 of the images'
content hash, the feature extractor, layer, input size, weights sha256 and implementation version,
never a name or a path. Changed images give a new key, so a stale cache cannot be read.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from degan_bench.core.fileio import atomic_write_bytes, atomic_write_text
from degan_bench.data.store import PreparedDataset
from degan_bench.errors import DataError
from degan_bench.metrics.features import FeatureModel
from degan_bench.paths import cache_dir

CACHE_FORMAT = 1


@dataclass
class Reference:
    """Reference images and where they come from (recorded with every result)."""

    data: PreparedDataset
    description: dict[str, Any]


def load_reference(dataset: str, resolution: int, reference: str, subset_rule: str | None) -> Reference:
    """The reference images of a protocol for a run on ``dataset`` (see the module docstring)."""
    from degan_bench.data.prepare import load_prepared
    from degan_bench.data.registry import get_dataset_spec

    spec = get_dataset_spec(dataset)
    base = getattr(spec, "base", None) or spec.name
    if reference == "train":
        name, split, rule = dataset, "train", subset_rule
    elif reference == "full":
        name, split, rule = base, "train", None
    elif reference == "test":
        base_spec = get_dataset_spec(base)
        if "test" not in tuple(base_spec.splits):
            raise DataError(
                f"dataset {base!r} has no test split, so a *_test protocol cannot be used for {dataset!r}",
                fix="use a *_train or *_full protocol",
            )
        name, split, rule = base, "test", None
    else:
        raise ValueError(f"unknown reference kind {reference!r}")
    data = load_prepared(name, resolution, split=split, subset_rule=rule)
    description = {
        "kind": reference,
        "dataset": name,
        "split": split,
        "subset_rule": rule,
        "resolution": resolution,
        "content_hash": data.content_hash,
        "n": len(data),
    }
    return Reference(data, description)


def training_labels(dataset: str, resolution: int, subset_rule: str | None) -> np.ndarray | None:
    """Integer labels of the training images (conditional generators sample theirs from these)."""
    from degan_bench.data.prepare import load_prepared

    return load_prepared(dataset, resolution, split="train", subset_rule=subset_rule).labels


def image_batches(images: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 NCHW tensors from a uint8 NHWC array (a memory map reads only one batch at a time)."""
    for start in range(0, len(images), batch_size):
        chunk = np.array(images[start : start + batch_size], copy=True)  # writable, one batch in RAM
        yield torch.from_numpy(chunk).permute(0, 3, 1, 2)


def extract_features(model: FeatureModel, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in model.layers}
    for batch in batches:
        for layer, features in model(batch).items():
            parts[layer].append(features)
    return {layer: torch.cat(chunks) for layer, chunks in parts.items()}


@dataclass
class ReferenceStats:
    """FID moments and/or KID features of one reference set under one feature model."""

    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    features: np.ndarray | None = None
    n: int = 0
    cache_hit: bool = True
    seconds: float = 0.0
    keys: dict[str, str] = field(default_factory=dict)


def cache_key(kind: str, content_hash: str, n: int, model: FeatureModel) -> tuple[str, dict[str, Any]]:
    fields = {
        "format": CACHE_FORMAT,
        "kind": kind,
        "content_hash": content_hash,
        "n": n,
        "layer": "2048",
        **model.describe(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest(), fields


def _cache_path(key: str) -> Path:
    return cache_dir() / "metrics" / f"{key}.npz"


def _save(key: str, fields: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(_cache_path(key), buffer.getvalue())
    atomic_write_text(
        _cache_path(key).with_suffix(".json"), json.dumps(fields, indent=2, sort_keys=True) + "\n"
    )


def _load(key: str) -> dict[str, np.ndarray] | None:
    path = _cache_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError):  # unreadable: recompute and overwrite
        return None


def reference_stats(
    reference: Reference, model: FeatureModel, kinds: set[str], batch_size: int
) -> ReferenceStats:
    """FID moments (``"fid"`` in kinds) and/or KID features (``"kid"``), from the cache when present."""
    data = reference.data
    if len(data) < 2:
        raise DataError(
            f"reference {reference.description['dataset']!r} has {len(data)} image(s); FID/KID need >= 2"
        )
    stats = ReferenceStats(n=len(data))
    keys = {kind: cache_key(kind, data.content_hash, len(data), model) for kind in sorted(kinds)}
    stats.keys = {kind: key for kind, (key, _fields) in keys.items()}
    loaded = {kind: _load(key) for kind, (key, _fields) in keys.items()}
    if any(value is None for value in loaded.values()):
        started = time.perf_counter()
        features = extract_features(model, image_batches(data.images, batch_size))["2048"]
        if "fid" in kinds and loaded["fid"] is None:
            from torch_fidelity.metric_fid import fid_features_to_statistics

            moments = fid_features_to_statistics(features)
            loaded["fid"] = {"mu": moments["mu"], "sigma": moments["sigma"]}
            _save(*keys["fid"], loaded["fid"])
        if "kid" in kinds and loaded["kid"] is None:
            loaded["kid"] = {"features": features.numpy()}
            _save(*keys["kid"], loaded["kid"])
        stats.cache_hit = False
        stats.seconds = time.perf_counter() - started
    if "fid" in kinds:
        stats.mu, stats.sigma = loaded["fid"]["mu"], loaded["fid"]["sigma"]
    if "kid" in kinds:
        stats.features = loaded["kid"]["features"]
    return stats
