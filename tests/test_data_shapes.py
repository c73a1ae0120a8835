"""The embedded shapes-100 demo dataset is deterministic and pinned."""

from __future__ import annotations

import numpy as np

from degan_bench.data.prepare import load_prepared, prepare_dataset
from degan_bench.data.shapes import generate_shapes
from degan_bench.data.store import array_content_hash

# Pinned: a change to the generator changes the demo data and every cache keyed by it.
SHAPES_CONTENT_HASH = "1679dd0839dca8676481a3d95dfc8879cf8ae947e046c753f01c765d84b492dc"


def test_two_generations_are_byte_identical_and_pinned():
    first, second = generate_shapes(), generate_shapes()
    assert first.shape == (100, 64, 64, 3) and first.dtype == np.uint8
    assert first.tobytes() == second.tobytes()
    assert array_content_hash(first) == SHAPES_CONTENT_HASH


def test_images_are_varied():
    images = generate_shapes().astype(np.int64)
    assert len({image.tobytes() for image in images}) == 100
    assert images.std(axis=(1, 2)).mean() > 20  # not flat colour fields
    assert images.reshape(100, -1, 3).mean(axis=1).std(axis=0).min() > 20  # colours differ between images


def test_prepared_shapes_keep_the_pinned_hash():
    prepare_dataset("shapes-100", progress=False)
    dataset = load_prepared("shapes-100")
    assert dataset.content_hash == SHAPES_CONTENT_HASH
    assert dataset.manifest["source"]["kind"] == "embedded" and dataset.labels is None
    prepare_dataset("shapes-100", resolution=32, progress=False)
    assert load_prepared("shapes-100", 32).manifest["resize"]["images_by_filter"]["box"] == 100
