"""StyleGAN2 training trajectories recorded before the engine became backbone-agnostic.

Each case trains a tiny StyleGAN2 for a few minibatches through the real loop and compares the per-tick
losses and the final G, D and G_ema with ``tests/golden/stylegan2_trajectories.json``. On the platform
the file was recorded on (CPU model and torch version) the comparison is bit-exact (sha256 of the
weights); elsewhere float rounding may differ, so losses and weight sums are compared with a tolerance.

Re-record (only when a change of numbers is intended and explained in the commit):
``DEGAN_BENCH_RECORD_GOLDEN=1 python -m pytest tests/test_golden_trajectories.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import TINY_MODEL

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.recipes.loader import resolve_file
from degan_bench.training.execute import execute_run

GOLDEN = Path(__file__).resolve().parent / "golden" / "stylegan2_trajectories.json"
SHAPES = Path(__file__).resolve().parent.parent / "recipes" / "stylegan2" / "shapes-100.yaml"
# 5 minibatches of 8 in 2 rounds, lazy R1 and path length every 2 minibatches, EMA with a start delay.
SCHEDULE = [
    *TINY_MODEL, "training.kimg=0.04", "training.kimg_per_tick=0.016", "training.snapshot_ticks=100",
    "training.image_snapshot_ticks=100", "training.grid_size=[2,1]", "training.ema_kimg=0.02",
    "training.ema_start_kimg=0.008", "loss.r1_interval=2", "loss.pl_weight=2", "loss.pl_interval=2",
]  # fmt: skip
CASES: dict[str, list[str]] = {
    "stylegan2-per_sample": [],
    "stylegan2-minibatch-r1aug": ["loss.style_mixing=minibatch", "loss.r1_on=augmented"],
    "diffaugment": ["method=diffaugment", "diffaugment.policy=color,translation,cutout"],
    "ada": ["method=ada", "ada.p_init=0.5", "ada.interval=1", "ada.speed_kimg=1"],
    "insgen": ["method=insgen", "insgen.ada.p_init=0.5"],
    "fakeclr": ["method=fakeclr", "fakeclr.ada.p_init=0.5"],
}


def platform_id() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} | torch {torch.__version__}"


def _digest(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    h = hashlib.sha256()
    total = 0.0
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(tensor.numpy().tobytes())
        total += float(tensor.double().abs().sum())
    return {"sha256": h.hexdigest(), "abs_sum": total}


def trajectory(out: Path, overrides: list[str]) -> dict[str, Any]:
    recipe = resolve_file(SHAPES, "smoke", [*SCHEDULE, *overrides])
    execute_run(recipe, seed=5, out=out, evaluate=False, handle_signals=False, tensorboard=False)
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(out)["last"])
    return {
        "losses": [tick["losses"] for tick in RunDir(out).read_stats()],
        **{name: _digest(payload[name]) for name in ("G", "D", "G_ema")},
    }


def _load() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"platform": None, "cases": {}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stylegan2_trajectory_matches_the_recording(tmp_path: Path, case: str) -> None:
    got = trajectory(tmp_path / case, CASES[case])
    if os.environ.get("DEGAN_BENCH_RECORD_GOLDEN") == "1":
        golden = _load()
        golden["platform"] = platform_id()
        golden["cases"][case] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {case}")
    golden = _load()
    expected = golden["cases"][case]
    assert len(got["losses"]) == len(expected["losses"])
    if golden["platform"] == platform_id():
        assert got == expected  # bit-exact: same losses, same weight bytes
        return
    for mine, theirs in zip(got["losses"], expected["losses"], strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-3, abs=1e-5), key
    for name in ("G", "D", "G_ema"):
        assert got[name]["abs_sum"] == pytest.approx(expected[name]["abs_sum"], rel=1e-4), name
