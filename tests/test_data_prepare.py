"""Preparation into the store: sources, validation, resizing, atomicity, downloads, loading, verifying."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from degan_bench.data import prepare, registry
from degan_bench.data.prepare import (
    clean_stale_temp_dirs,
    downloads_dir,
    ensure_prepared,
    is_prepared,
    load_prepared,
    natural_key,
    prepare_dataset,
    prepared_status,
    verify_prepared,
)
from degan_bench.data.registry import CIFAR10_CLASSES, DatasetSpec, DownloadSource
from degan_bench.data.store import SplitWriter, array_content_hash, dataset_dir, read_manifest
from degan_bench.errors import DataError

OBAMA_SET_SHA256 = "da74f6d4770a511327e8e5607a3e1c2ac0e28e2c042a0cbd262915da1699d6be"


@pytest.fixture
def obama_dir(shared_data: Path) -> Path:
    return shared_data / "100-shot-obama"


@pytest.fixture
def obama_copy(obama_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the 100 Obama images, to damage in tests."""
    copy = tmp_path / "obama"
    copy.mkdir()
    for path in obama_dir.glob("*.jpg"):
        shutil.copy(path, copy / path.name)
    return copy


def _register(monkeypatch, spec: DatasetSpec) -> DatasetSpec:
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    return spec


def _tiny_images(folder: Path, count: int, side: int = 16) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(1)
    arrays = [rng.randint(0, 256, size=(side, side, 3)).astype(np.uint8) for _ in range(count)]
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(folder / f"img{i}.png")
    return arrays


def _zip_folder(folder: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, prefix + path.name)
    return dest


# ---------------------------------------------------------------------------------------------------
# Real 100-shot data


def test_prepare_obama_folder_is_stable_and_a_noop_the_second_time(obama_dir: Path):
    (split_dir,) = prepare_dataset("obama-100", source=obama_dir, progress=False)
    assert split_dir == dataset_dir("obama-100", 256) / "train"
    first = load_prepared("obama-100", 256)
    assert first.images.shape == (100, 256, 256, 3) and first.images.dtype == np.uint8
    assert isinstance(first.images, np.memmap)
    assert first.content_hash == array_content_hash(np.asarray(first.images))
    manifest = first.manifest
    assert manifest["files"][:3] == ["0.jpg", "1.jpg", "2.jpg"] and manifest["files"][10] == "10.jpg"
    assert manifest["resize"]["images_by_filter"] == {"none": 100, "box": 0, "lanczos": 0}
    assert manifest["source"]["file_set_sha256"] == OBAMA_SET_SHA256
    assert "never compared byte-for-byte" in manifest["source"]["file_set_known_as"]
    # The image written first is 0.jpg, pixel for pixel.
    assert np.array_equal(first.images[0], np.asarray(Image.open(obama_dir / "0.jpg")))

    manifest_path = split_dir / "manifest.json"
    stamp = manifest_path.stat().st_mtime_ns
    prepare_dataset("obama-100", source=obama_dir, progress=False)  # no-op
    assert manifest_path.stat().st_mtime_ns == stamp
    prepare_dataset("obama-100", source=obama_dir, progress=False, force=True)
    assert manifest_path.stat().st_mtime_ns != stamp
    assert load_prepared("obama-100", 256).content_hash == first.content_hash
    assert verify_prepared("obama-100", 256).content_hash == first.content_hash


def test_prepare_from_zip_equals_folder_and_resizes_with_box(obama_dir: Path, tmp_path: Path):
    archive = _zip_folder(obama_dir, tmp_path / "obama.zip", prefix="100-shot-obama/")
    prepare_dataset("obama-100", resolution=32, source=archive, progress=False)
    small = load_prepared("obama-100", 32)
    assert small.images.shape == (100, 32, 32, 3)
    assert small.manifest["resize"]["images_by_filter"] == {"none": 0, "box": 100, "lanczos": 0}
    expected = np.asarray(Image.open(obama_dir / "7.jpg").resize((32, 32), Image.Resampling.BOX))
    assert np.array_equal(small.images[7], expected)
    assert small.manifest["source"]["archive"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert small.manifest["source"]["file_set_sha256"] == OBAMA_SET_SHA256

    prepare_dataset("obama-100", source=archive, progress=False)
    from_zip = load_prepared("obama-100", 256).content_hash
    prepare_dataset("obama-100", source=obama_dir, progress=False, force=True)
    assert load_prepared("obama-100", 256).content_hash == from_zip
    assert {r.name: r.prepared for r in prepared_status()}["obama-100"].keys() == {32, 256}


def test_truncated_jpeg_names_the_file(obama_copy: Path):
    bad = obama_copy / "42.jpg"
    bad.write_bytes(bad.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"42\.jpg: cannot decode the image.*corrupt or truncated"):
        prepare_dataset("obama-100", source=obama_copy, progress=False)
    assert not dataset_dir("obama-100", 256).exists()


def test_grayscale_png_is_rejected_with_the_fix(obama_copy: Path):
    (obama_copy / "5.jpg").unlink()
    Image.new("L", (256, 256), 128).save(obama_copy / "5.png")
    with pytest.raises(DataError, match=r"5\.png: image mode is L, not RGB -> convert it to 3-channel RGB"):
        prepare_dataset("obama-100", source=obama_copy, progress=False)


def test_non_square_needs_center_crop(obama_copy: Path):
    wide = Image.open(obama_copy / "3.jpg").resize((300, 256))
    wide.save(obama_copy / "3.jpg", quality=95)
    with pytest.raises(DataError, match=r"3\.jpg: image is 300x256, not square.*--center-crop"):
        prepare_dataset("obama-100", source=obama_copy, progress=False)
    prepare_dataset("obama-100", source=obama_copy, progress=False, center_crop=True)
    dataset = load_prepared("obama-100", 256)
    assert dataset.manifest["resize"]["center_crop"] is True
    assert np.array_equal(dataset.images[3], np.asarray(Image.open(obama_copy / "3.jpg"))[:, 22:278])


def test_missing_image_fails_the_count_check(obama_copy: Path):
    (obama_copy / "99.jpg").unlink()
    with pytest.raises(DataError, match="found 99 train images for obama-100, expected 100"):
        prepare_dataset("obama-100", source=obama_copy, progress=False)


def test_interrupted_prepare_leaves_nothing_and_a_retry_works(obama_dir: Path, monkeypatch):
    real_resize = prepare.resize_image
    calls = []

    def failing_resize(image, resolution, policy):
        calls.append(1)
        if len(calls) == 50:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing images.npy
        return real_resize(image, resolution, policy)

    monkeypatch.setattr(prepare, "resize_image", failing_resize)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("obama-100", source=obama_dir, progress=False)
    parent = dataset_dir("obama-100", 256).parent
    assert not dataset_dir("obama-100", 256).exists()
    assert list(parent.iterdir()) == []  # the temporary directory is gone too
    with pytest.raises(
        DataError, match=r"not prepared at 256px.*degan-bench data prepare obama-100 --resolution 256"
    ):
        load_prepared("obama-100", 256)

    monkeypatch.setattr(prepare, "resize_image", real_resize)
    prepare_dataset("obama-100", source=obama_dir, progress=False)
    assert len(load_prepared("obama-100", 256)) == 100


def test_stale_temp_dirs_of_dead_processes_are_removed(tmp_path: Path):
    parent = tmp_path / "obama-100"
    dead = parent / ".tmp-256-abc"
    dead.mkdir(parents=True)
    (dead / "owner.json").write_text(json.dumps({"host": prepare.socket.gethostname(), "pid": 2**31 - 2}))
    alive = parent / ".tmp-256-def"
    alive.mkdir()
    (alive / "owner.json").write_text(json.dumps({"host": prepare.socket.gethostname(), "pid": os.getpid()}))
    assert clean_stale_temp_dirs(parent) == [dead]
    assert alive.exists() and not dead.exists()


def test_verify_detects_modified_data(tmp_path: Path):
    prepare_dataset("shapes-100", progress=False)
    images_path = dataset_dir("shapes-100", 64) / "train" / "images.npy"
    images = np.load(images_path, mmap_mode="r+")
    images[10, 5, 5, 0] ^= 1
    images.flush()
    del images
    with pytest.raises(DataError, match=r"content hash .* does not match.*data prepare shapes-100 --force"):
        verify_prepared("shapes-100")


def test_split_writer_hash_equals_array_content_hash(tmp_path: Path):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(5, 8, 8, 3)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    writer = SplitWriter(tmp_path / "s", 5, 8, with_labels=True)
    for image, label in zip(images, labels, strict=True):
        writer.add(image, int(label))
    assert writer.finish({"name": "x"}) == array_content_hash(images, labels)
    manifest = read_manifest(tmp_path / "s")
    assert manifest is not None and manifest["count"] == 5
    assert np.array_equal(np.load(tmp_path / "s" / "labels.npy"), labels)


def test_natural_order():
    names = ["10.jpg", "2.jpg", "1.jpg", "a/10.png", "a/9.png"]
    assert sorted(names, key=natural_key) == ["1.jpg", "2.jpg", "10.jpg", "a/9.png", "a/10.png"]


def test_images_under_member_dir_only(tmp_path: Path, monkeypatch):
    spec = _register(
        monkeypatch,
        DatasetSpec(
            name="tiny-afhq",
            description="t",
            base="tiny-afhq",
            splits=("train",),
            native_resolution=16,
            expected_counts={"train": 3},
            member_dir="train/cat",
        ),
    )
    _tiny_images(tmp_path / "afhq" / "train" / "cat", 3)
    _tiny_images(tmp_path / "afhq" / "train" / "dog", 2)
    _tiny_images(tmp_path / "afhq" / "val" / "cat", 2)
    prepare_dataset(spec.name, source=tmp_path / "afhq", progress=False)
    assert load_prepared(spec.name).manifest["files"] == [
        "train/cat/img0.png",
        "train/cat/img1.png",
        "train/cat/img2.png",
    ]
    # Pointing --from at the class folder itself works too.
    prepare_dataset(spec.name, source=tmp_path / "afhq" / "train" / "cat", progress=False, force=True)
    assert load_prepared(spec.name).manifest["files"] == ["img0.png", "img1.png", "img2.png"]


# ---------------------------------------------------------------------------------------------------
# CIFAR


def _cifar_tarball(path: Path, train_per_batch: int, test_count: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.RandomState(2)
    all_train, all_labels = [], []
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, payload: dict) -> None:
            data = pickle.dumps(payload, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_vis": 3072})
        for b in range(1, 6):
            data = rng.randint(0, 256, size=(train_per_batch, 3072)).astype(np.uint8)
            labels = rng.randint(0, 10, size=train_per_batch).tolist()
            add(
                f"data_batch_{b}",
                {
                    "data": data,
                    "labels": labels,
                    "filenames": [f"f{b}_{i}.png" for i in range(train_per_batch)],
                },
            )
            all_train.append(data)
            all_labels += labels
        test = rng.randint(0, 256, size=(test_count, 3072)).astype(np.uint8)
        add(
            "test_batch",
            {"data": test, "labels": list(range(test_count)), "filenames": ["t.png"] * test_count},
        )
    return np.concatenate(all_train), all_labels


def _small_cifar10(monkeypatch, train: int, test: int) -> None:
    spec = dataclasses.replace(registry._REGISTRY["cifar10"], expected_counts={"train": train, "test": test})
    _register(monkeypatch, spec)


def test_synthetic_cifar_python_tarball_in_official_order(tmp_path: Path, monkeypatch):
    _small_cifar10(monkeypatch, train=10, test=3)
    raw_train, labels = _cifar_tarball(tmp_path / "tiny-cifar.tar.gz", train_per_batch=2, test_count=3)
    prepare_dataset("cifar10", source=tmp_path / "tiny-cifar.tar.gz", progress=False)
    train, test = load_prepared("cifar10"), load_prepared("cifar10", split="test")
    assert np.array_equal(train.images, raw_train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert train.labels.tolist() == labels and test.labels.tolist() == [0, 1, 2]
    assert train.manifest["order"] == "official" and train.manifest["files"][0] == "data_batch_1:f1_0.png"
    assert train.content_hash == array_content_hash(np.asarray(train.images), train.labels)
    assert train.manifest["class_names"] == list(CIFAR10_CLASSES)


def test_local_archive_named_like_the_official_one_must_match_its_checksum(tmp_path: Path, monkeypatch):
    _small_cifar10(monkeypatch, train=10, test=3)
    fake = tmp_path / "cifar-10-python.tar.gz"
    _cifar_tarball(fake, train_per_batch=2, test_count=3)
    with pytest.raises(
        DataError, match=r"cifar-10-python.tar.gz: sha256 [0-9a-f]{64} does not match the published 6d958be0"
    ):
        prepare_dataset("cifar10", source=fake, progress=False)


def test_cifar_pickle_cannot_run_code(tmp_path: Path, monkeypatch):
    _small_cifar10(monkeypatch, train=10, test=3)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for name in ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
            data = pickle.dumps({"label_names": Exploit()})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match=r"batches.meta is not a CIFAR python batch.*system is not allowed"):
        prepare_dataset("cifar10", source=path, progress=False)


def test_cifar10_from_the_shared_jpeg_zip(shared_data: Path):
    prepare_dataset("cifar10-10pct", source=shared_data / "cifar10-jpeg-q75.zip", progress=False)
    train, test = load_prepared("cifar10"), load_prepared("cifar10", split="test")
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    assert (
        np.bincount(train.labels).tolist() == [5000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    )
    assert train.manifest["files"][0] == "train/airplane/0000.jpg" and train.labels[-1] == 9
    source = train.manifest["source"]
    assert source["lossy"] is True and "LOSSY" in source["file_set_known_as"]
    assert train.manifest["order"] == "class-folders" and "lossy JPEG" in train.manifest["warnings"][0]

    subset = load_prepared("cifar10-10pct")
    indices = np.random.RandomState(0).choice(50000, 5000, replace=False)
    assert np.array_equal(subset.images, train.images[indices]) and np.array_equal(
        subset.labels, train.labels[indices]
    )
    assert subset.content_hash == array_content_hash(subset.images, subset.labels) != train.content_hash
    assert subset.manifest["subset"]["frozen_file"] == "cifar10-train-np_choice_seed0-5000.txt"
    assert subset.manifest["subset"]["selects_paper_images"] is False
    assert any("not the official one" in w for w in subset.manifest["warnings"])
    assert len(load_prepared("cifar10-10pct", split="test")) == 10000  # the test split is not reduced

    first = load_prepared("cifar10-20pct", subset_rule="first_n")
    assert isinstance(first.images, np.memmap) and np.array_equal(first.images, train.images[:10000])
    with pytest.raises(DataError, match="allowed rules"):
        load_prepared("cifar10-10pct", subset_rule="random")


# ---------------------------------------------------------------------------------------------------
# Downloads


class _FakeResponse:
    def __init__(self, payload: bytes, status: int = 200, fail_after: int | None = None) -> None:
        self._stream = io.BytesIO(payload)
        self.status = status
        self.headers = {"Content-Length": str(len(payload))}
        self._fail_after = fail_after

    def read(self, n: int) -> bytes:
        if self._fail_after is not None and self._stream.tell() >= self._fail_after:
            raise ConnectionResetError("connection reset by peer")
        limit = n if self._fail_after is None else min(n, self._fail_after - self._stream.tell())
        return self._stream.read(limit)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _downloadable_tiny(monkeypatch, tmp_path: Path, sha256: str | None) -> tuple[DatasetSpec, bytes]:
    _tiny_images(tmp_path / "src", 4)
    payload = _zip_folder(tmp_path / "src", tmp_path / "tiny.zip").read_bytes()
    source = DownloadSource(
        "https://example.invalid/tiny.zip", "tiny.zip", sha256=sha256, checksum_note="test"
    )
    spec = DatasetSpec(
        name="tiny-dl",
        description="t",
        base="tiny-dl",
        splits=("train",),
        native_resolution=16,
        expected_counts={"train": 4},
        sources=(source,),
    )
    return _register(monkeypatch, spec), payload


def test_offline_download_error_says_where_to_put_the_file(monkeypatch):
    def offline(request, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(prepare, "_open_url", offline)
    with pytest.raises(DataError) as info:
        ensure_prepared("obama-100")
    message = str(info.value)
    assert "cannot download https://data-efficient-gans.mit.edu/datasets/100-shot-obama.zip" in message
    assert str(downloads_dir() / "100-shot-obama.zip") in message
    assert "`degan-bench data prepare obama-100 --from PATH`" in message
    assert "\n" not in message
    with pytest.raises(DataError, match="degan-bench data prepare cifar10-10pct --resolution 64 --from PATH"):
        prepare_dataset("cifar10-10pct", resolution=64, progress=False)


def test_download_resumes_with_range_and_verifies(tmp_path: Path, monkeypatch):
    spec, payload = _downloadable_tiny(monkeypatch, tmp_path, sha256=None)
    spec = _register(
        monkeypatch,
        dataclasses.replace(
            spec, sources=(dataclasses.replace(spec.sources[0], sha256=hashlib.sha256(payload).hexdigest()),)
        ),
    )
    half = len(payload) // 2
    requests = []

    def flaky(request, timeout):
        requests.append(request.get_header("Range"))
        if len(requests) == 1:
            return _FakeResponse(payload, fail_after=half)
        start = int(request.get_header("Range").split("=")[1].rstrip("-"))
        return _FakeResponse(payload[start:], status=206)

    monkeypatch.setattr(prepare, "_open_url", flaky)
    with pytest.raises(DataError, match=r"cannot download https://example\.invalid/tiny\.zip: connection"):
        prepare_dataset(spec.name, progress=False)
    assert (downloads_dir() / "tiny.zip.part").stat().st_size == half
    prepare_dataset(spec.name, progress=False)
    assert requests == [None, f"bytes={half}-"]
    assert (downloads_dir() / "tiny.zip").read_bytes() == payload
    manifest = load_prepared(spec.name).manifest
    assert manifest["source"]["kind"] == "download"
    assert manifest["source"]["archive"]["verified_against"] == {
        "sha256": hashlib.sha256(payload).hexdigest()
    }


def test_download_with_wrong_checksum_is_deleted_and_rejected(tmp_path: Path, monkeypatch):
    spec, payload = _downloadable_tiny(monkeypatch, tmp_path, sha256="0" * 64)
    monkeypatch.setattr(prepare, "_open_url", lambda request, timeout: _FakeResponse(payload))
    with pytest.raises(DataError, match=r"sha256 [0-9a-f]{64} does not match the published 0000.*deleted"):
        prepare_dataset(spec.name, progress=False)
    assert not any(downloads_dir().iterdir())
    assert not is_prepared(spec.name)


def test_ensure_prepared_builds_the_embedded_set_offline(monkeypatch):
    def no_network(request, timeout):
        raise AssertionError("shapes-100 must not touch the network")

    monkeypatch.setattr(prepare, "_open_url", no_network)
    (split_dir,) = ensure_prepared("shapes-100")
    assert (split_dir / "images.npy").is_file() and is_prepared("shapes-100")
    assert ensure_prepared("shapes-100") == [split_dir]


def test_ffhq_explains_the_manual_download():
    with pytest.raises(
        DataError, match=r"ffhq-2k.*download_ffhq.py --images.*degan-bench data prepare ffhq-2k --from"
    ):
        ensure_prepared("ffhq-2k")


def test_bad_resolution_and_split():
    with pytest.raises(DataError, match="resolution 48 is not a power of two"):
        prepare_dataset("shapes-100", resolution=48, progress=False)
    prepare_dataset("shapes-100", progress=False)
    with pytest.raises(DataError, match="has no split 'test'"):
        load_prepared("shapes-100", split="test")
