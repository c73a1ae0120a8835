"""Another resolution of a prepared dataset without the source again; sizes below the target refused;
a run whose data step fails leaves no run directory behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from degan_bench.data import prepare
from degan_bench.data.prepare import ensure_prepared, load_prepared, prepare_dataset
from degan_bench.data.store import dataset_dir
from degan_bench.errors import DataError


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(request, timeout):
        raise AssertionError("must not download")

    monkeypatch.setattr(prepare, "_open_url", no_network)


@pytest.fixture
def obama_copy(shared_data: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "obama"
    shutil.copytree(shared_data / "100-shot-obama", copy)
    return copy


def test_other_resolutions_come_from_the_remembered_source_then_from_the_prepared_images(
    obama_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_dataset("obama-100", source=obama_copy, progress=False)  # 256 px, as `data prepare --from`
    _offline(monkeypatch)
    ensure_prepared("obama-100", 32, progress=False)  # what `run ... --preset smoke` calls
    from_source = load_prepared("obama-100", 32)
    assert from_source.manifest["source"]["kind"] == "local"
    assert from_source.manifest["source"]["path"] == str(obama_copy.resolve())
    expected = np.asarray(Image.open(obama_copy / "7.jpg").resize((32, 32), Image.Resampling.BOX))
    assert np.array_equal(from_source.images[7], expected)
    prepare_dataset("obama-100", progress=False, force=True)  # --force without --from: the same folder
    assert load_prepared("obama-100", 256).manifest["source"]["kind"] == "local"

    # The source folder is gone: 32 px is derived from the prepared 256 px images (box, same pixels).
    shutil.rmtree(dataset_dir("obama-100", 32))
    obama_copy.rename(tmp_path / "moved")
    ensure_prepared("obama-100", 32, progress=False)
    derived = load_prepared("obama-100", 32)
    source = derived.manifest["source"]
    assert source["kind"] == "derived" and source["from_resolution"] == 256
    assert source["original"]["kind"] == "local"
    assert derived.manifest["files"][:2] == ["0.jpg", "1.jpg"]
    assert derived.content_hash == from_source.content_hash
    # nothing to derive a larger resolution from: the usual error, not an upscale
    with pytest.raises(AssertionError, match="must not download"):
        ensure_prepared("obama-100", 512, progress=False)


def _tiny_folder(folder: Path, sides: list[int]) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for i, side in enumerate(sides):
        Image.fromarray(rng.randint(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def tiny_spec(monkeypatch: pytest.MonkeyPatch):
    from degan_bench.data import registry
    from degan_bench.data.registry import DatasetSpec

    spec = DatasetSpec(
        name="tiny-sizes", description="t", base="tiny-sizes", splits=("train",), native_resolution=16,
        expected_counts={"train": 4},
    )  # fmt: skip
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    return spec


def test_mixed_sizes_are_reported_and_smaller_images_refused(
    tmp_path: Path, tiny_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = _tiny_folder(tmp_path / "mixed", [32, 32, 16, 64])
    prepare_dataset("tiny-sizes", source=mixed, progress=False)
    manifest = load_prepared("tiny-sizes").manifest
    assert manifest["resize"]["source_sizes"] == {"16": 1, "32": 2, "64": 1}
    assert "3 sizes" in capsys.readouterr().err

    small = _tiny_folder(tmp_path / "small", [16, 16, 8, 16])
    with pytest.raises(DataError, match=r"2\.png: image is 8x8, smaller than the 16 px .*--resolution 8"):
        prepare_dataset("tiny-sizes", source=small, progress=False, force=True)
    assert load_prepared("tiny-sizes").content_hash  # the earlier preparation is untouched


def test_a_run_whose_data_step_fails_leaves_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from degan_bench.recipes.loader import resolve_recipe
    from degan_bench.training.execute import execute_run

    def offline(request, timeout):
        raise OSError("no network")

    monkeypatch.setattr(prepare, "_open_url", offline)
    resolved = resolve_recipe("stylegan2", "obama-100", "smoke")
    out = tmp_path / "run"
    for _attempt in range(2):  # the same command fails the same way: no "already exists"
        with pytest.raises(DataError, match="cannot download"):
            execute_run(resolved, seed=0, out=out, evaluate=False, handle_signals=False, tensorboard=False)
        assert not out.exists()
