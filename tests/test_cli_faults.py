"""Hostile input through the real entry point: one-line errors instead of tracebacks, every float
spelling, whole lines when piped, and the CPU thread choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import metrics_support
import numpy as np
import pytest
from metrics_support import FakeData, install_fake_data, smooth_images, write_pngs
from test_faults import run_main

from degan_bench.core.threads import MAX_AUTO_THREADS, choose_cpu_threads
from degan_bench.errors import RecipeError
from degan_bench.recipes.loader import resolve_recipe

standins = metrics_support.standins
declared_standins = metrics_support.declared_standins
small_inception = metrics_support.small_inception
REPO = Path(__file__).resolve().parent.parent
SMOKE = ["run", "stylegan2", "shapes-100", "--preset", "smoke"]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "--device tpu: not a device -> use one of auto, cpu, cuda, cuda:N"),
        (["--set", "training.kimg=.nan", "--dry-run"], "training.kimg: nan is not a finite number"),
        (["--set", "training.kimg=.inf", "--dry-run"], "training.kimg: inf is not a finite number"),
        (["--set", "training.kimg=0", "--dry-run"], "kimg 0 trains nothing"),
        (["--set", "training.g_lr=-.inf", "--dry-run"], "training.g_lr: -inf is not a finite number"),
        (["--set", "training.kimg=2e", "--dry-run"], "training.kimg: expected a number, got '2e'"),
    ],
)
def test_run_input_errors_are_one_line(monkeypatch, capsys, tmp_path, args, message) -> None:
    code, stderr = run_main(monkeypatch, capsys, "--runs-dir", str(tmp_path), *SMOKE, *args)
    assert code == 2 and message in one_error_line(stderr)
    assert list(tmp_path.iterdir()) == []


def test_every_float_spelling_is_a_number() -> None:
    spellings = {
        "2e-4": 2e-4,
        "1E-3": 1e-3,
        ".5": 0.5,
        "5.": 5.0,
        "1.0e5": 1e5,
        "2.0e-4": 2e-4,
        "1_000": 1000.0,
    }
    for text, value in spellings.items():
        resolved = resolve_recipe("stylegan2", "shapes-100", "smoke", [f"training.g_lr={text}"])
        assert resolved.recipe.training.g_lr == value, text
    same = {
        resolve_recipe("stylegan2", "shapes-100", "smoke", [f"training.d_lr={t}"]).hash
        for t in ("2e-4", "2.0e-4")
    }
    assert len(same) == 1  # one value, one recipe hash, however it is spelled
    assert (
        resolve_recipe("stylegan2", "shapes-100", "smoke", ["training.batch=1.6e1"]).recipe.training.batch
        == 16
    )
    with pytest.raises(RecipeError, match="expected an integer"):
        resolve_recipe("stylegan2", "shapes-100", "smoke", ["training.batch=1.55e1"])


def test_a_corrupt_image_in_eval_images_is_named(
    monkeypatch, capsys, tmp_path, declared_standins, small_inception
):
    install_fake_data(monkeypatch, FakeData(splits={("tiny", "train"): smooth_images(4, 16, seed=1)}))
    folder = write_pngs(smooth_images(4, 16, seed=2), tmp_path / "samples")
    (folder / "00002.png").write_bytes((folder / "00002.png").read_bytes()[:40])  # truncated
    code, stderr = run_main(
        monkeypatch, capsys, "eval", "--images", str(folder), "--ref", "tiny", "--n-gen", "4",
        "-p", "kid5k_train", "--device", "cpu",
    )  # fmt: skip
    assert code == 2 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error")]  # (after the progress bar)
    assert len(errors) == 1 and errors[0].startswith(
        f"error: {folder / '00002.png'}: cannot decode the image"
    )


def test_a_run_json_of_wrong_types_is_one_line_for_eval_and_resume(monkeypatch, capsys, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    fields = {"run_id": "r", "method": "stylegan2", "dataset": "shapes-100", "preset": "smoke", "seed": 0}
    (run / "run.json").write_text(json.dumps({**fields, "recipe_hash": "x", "total_nimg": []}))
    code, stderr = run_main(monkeypatch, capsys, "eval", str(run))
    assert code == 2 and "field 'total_nimg' is [], not of type int" in one_error_line(stderr)
    code, stderr = run_main(monkeypatch, capsys, *SMOKE, "--out", str(run), "--resume", "auto")
    assert code == 2 and "field 'total_nimg'" in one_error_line(stderr)


@pytest.mark.slow  # two fresh interpreters (~8 s on 2 cores)
def test_piped_output_keeps_whole_lines() -> None:
    """Off a terminal rich used to crop YAML lines and wrap others at 80 columns."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(REPO)}
    resolved = resolve_recipe("diffaugment", "obama-100")
    long_lines = [line for line in resolved.to_yaml().splitlines() if len(line) > 100]
    assert long_lines  # provenance lines are long: the check below means something
    for args in (
        ["recipes", "show", "diffaugment", "obama-100"],
        ["run", "diffaugment", "obama-100", "--dry-run"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "degan_bench", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        lines = out.splitlines()
        assert all(line in lines for line in long_lines), args
        assert any(line.startswith("#") and f"hash={resolved.hash}" in line for line in lines), args


def test_cpu_threads_follow_the_flag_the_environment_and_the_idle_cores(monkeypatch) -> None:
    import torch

    cpu = torch.device("cpu")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_cpu_threads(3, cpu).threads == 3  # --cpu-threads / performance.cpu_threads
    assert choose_cpu_threads(None, cpu, cores=2, load=0.1).threads == 2  # idle cores
    assert choose_cpu_threads(None, cpu, cores=2, load=3.0).threads == 1  # busy: one thread
    assert choose_cpu_threads(None, cpu, cores=64, load=0.0).threads == MAX_AUTO_THREADS
    assert choose_cpu_threads(None, torch.device("cuda")).threads is None  # torch's default on a GPU
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_cpu_threads(None, cpu).describe() == "5 CPU threads (OMP_NUM_THREADS)"


def test_run_cpu_threads_flag_is_shown_and_unhashed() -> None:
    from typer.testing import CliRunner

    from degan_bench.cli.app import app

    shown = CliRunner().invoke(app, [*SMOKE, "--cpu-threads", "3", "--dry-run"])
    assert shown.exit_code == 0 and "cpu: 3 CPU threads (set)" in shown.output, shown.output
    base = resolve_recipe("stylegan2", "shapes-100", "smoke")
    for setting in ("performance.cpu_threads=2", "performance.finite_check=minibatch"):
        assert resolve_recipe("stylegan2", "shapes-100", "smoke", [setting]).hash == base.hash, setting


def test_doctor_weights_line_does_not_contradict_itself() -> None:
    from degan_bench.metrics.weights import weights_status

    lines = weights_status()
    assert len(lines) == 2
    for line in lines:
        assert (
            "downloads are off" not in line
            and "not here yet" in line
            and "first evaluation downloads" in line
        )


def test_mixed_sizes_folder_note_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """``data prepare`` of a folder of two image sizes says so once (the sizes go to the manifest)."""
    from PIL import Image

    from degan_bench.data import registry
    from degan_bench.data.registry import DatasetSpec

    spec = DatasetSpec(name="tiny-mixed", description="t", base="tiny-mixed", splits=("train",),
                       native_resolution=16, expected_counts={"train": 2})  # fmt: skip
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, side in enumerate((16, 32)):
        Image.fromarray(np.full((side, side, 3), 100 + i, dtype=np.uint8)).save(folder / f"{i}.png")
    code, stderr = run_main(
        monkeypatch, capsys, "data", "prepare", "tiny-mixed", "--from", str(folder), "--no-progress"
    )
    assert code == 0
    notes = [line for line in stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "2 sizes (1 at 32 px, 1 at 16 px)" in notes[0]
