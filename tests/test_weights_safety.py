"""No code runs from a weights file: a pickle payload declared by its sha256 is refused, never run.

The payload is a real one: a ``torch.save``d object whose ``__reduce__`` creates a marker file when
unpickled (shown by loading it the unsafe way in this test). Through ``eval --weights`` (the real entry
point), ``$DEGAN_BENCH_INCEPTION_WEIGHTS`` and both feature extractors, the marker must not appear and the
user gets one line. A TorchScript archive (it carries code) is refused as a declared file too, and runs
through clean-fid's ``torch.jit.load`` only when its sha256 is the published one.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_support import write_pngs
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli.app import app
from degan_bench.errors import WeightsError
from degan_bench.metrics import features
from degan_bench.metrics.features import CLEAN_FID, TORCH_FIDELITY, FeatureModel, load_state_dict_file
from degan_bench.metrics.standin import write_standin_torchscript
from degan_bench.metrics.weights import WEIGHTS, file_sha256, resolve_weights

REPO = Path(__file__).resolve().parent.parent
CLEAN_KEY = "clean-fid-inception-2015-12-05"


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: code from a weights file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.marker),))


def write_payload(path: Path, marker: Path) -> str:
    torch.save({"Conv2d_1a_3x3.conv.weight": Payload(marker)}, path)
    return file_sha256(path)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.RandomState(0)
    return write_pngs(rng.randint(0, 256, (2, 16, 16, 3), dtype=np.uint8), tmp_path / "images")


def test_the_payload_is_real(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    write_payload(tmp_path / "payload.pth", marker)
    torch.load(tmp_path / "payload.pth", weights_only=False)  # what a library loader would do
    assert marker.exists()


@pytest.mark.slow  # a fresh interpreter imports torch, torch-fidelity and clean-fid (~10 s on 2 loaded cores)
def test_eval_weights_payload_is_refused_in_one_line(tmp_path: Path, images: Path) -> None:
    marker = tmp_path / "ran"
    payload = tmp_path / "payload.pth"
    sha = write_payload(payload, marker)
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "400"}
    for name in ("DEGAN_BENCH_INCEPTION_WEIGHTS", "DEGAN_BENCH_INCEPTION_SHA256"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "degan_bench", "eval", "--images", str(images), "--ref", "shapes-100",
         "--n-gen", "2", "-p", "kid5k_train", "--device", "cpu", "--weights", str(payload),
         "--weights-sha256", sha],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert not marker.exists()
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ") and "pickled objects other than tensors" in lines[0]
    assert str(payload) in lines[0]


@pytest.mark.parametrize("protocol", ["kid5k_train", "fid5k_train_clean"])
def test_env_route_refuses_the_payload_for_both_extractors(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    marker = tmp_path / "ran"
    folder = tmp_path / "weights"
    folder.mkdir()
    shas = [write_payload(folder / spec.file_name, marker) for spec in WEIGHTS.values()]
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_WEIGHTS", str(folder))
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_SHA256", ",".join(shas))
    args = ["eval", "--images", str(images), "--ref", "shapes-100", "--n-gen", "2", "-p", protocol]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert not marker.exists()
    assert isinstance(result.exception, WeightsError), result.output
    assert "\n" not in str(result.exception) and "was not loaded" in str(result.exception)


def test_training_evaluation_leaves_the_metric_pending(tmp_path: Path) -> None:
    from metrics_support import TinyGenerator

    from degan_bench.metrics.evaluate import evaluate_generator

    marker = tmp_path / "ran"
    payload = tmp_path / "payload.pth"
    sha = write_payload(payload, marker)
    record = evaluate_generator(
        TinyGenerator(), "kid5k_train", dataset="shapes-100", resolution=16, device="cpu",
        weights_path=payload, weights_sha256=sha, on_missing_weights="pending",
    )  # fmt: skip
    assert not marker.exists()
    assert record["status"] == "pending" and "pickled objects" in record["reason"]


def test_a_declared_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / WEIGHTS[CLEAN_KEY].file_name
    sha = write_standin_torchscript(path)
    with pytest.raises(WeightsError, match="TorchScript archive"):
        load_state_dict_file(path)
    weights = resolve_weights(CLEAN_KEY, path, sha)
    assert not weights.standard
    with pytest.raises(WeightsError, match="TorchScript archive"):
        FeatureModel(CLEAN_FID, ["2048"], weights, torch.device("cpu"))


def test_a_state_dict_of_the_wrong_network_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    weights = resolve_weights("torch-fidelity-inception-2015-12-05", path, file_sha256(path))
    with pytest.raises(WeightsError, match="not torch-fidelity's Inception-v3") as err:
        FeatureModel(TORCH_FIDELITY, ["2048"], weights, torch.device("cpu"))
    assert "\n" not in str(err.value)


@pytest.mark.slow  # traces and loads a TorchScript Inception (~6 s on 2 cores)
def test_standard_torchscript_runs_through_clean_fid_only_when_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NVIDIA's file is TorchScript: with its published sha256 it goes to clean-fid's InceptionV3W; the
    same route is checked here with a stand-in whose hash is patched in as the published one."""
    path = tmp_path / WEIGHTS[CLEAN_KEY].file_name
    sha = write_standin_torchscript(path)
    monkeypatch.setitem(WEIGHTS, CLEAN_KEY, dataclasses.replace(WEIGHTS[CLEAN_KEY], sha256=sha))
    weights = resolve_weights(CLEAN_KEY, path)
    assert weights.standard
    model = FeatureModel(CLEAN_FID, ["2048"], weights, torch.device("cpu"))
    from cleanfid.inception_torchscript import InceptionV3W

    assert isinstance(model._net, InceptionV3W)
    out = model(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))["2048"]
    assert out.shape == (2, 2048) and bool(torch.isfinite(out).all())
    assert features.INCEPTION_TRUNK[0] == "Conv2d_1a_3x3"
