"""StyleGAN2 training trajectories recorded before the engine became backbone-agnostic.

Each case trains a tiny StyleGAN2 for a few minibatches through the real loop and compares the per-tick
losses and a fingerprint of the final G, D and G_ema with ``tests/golden/stylegan2_trajectories.json``.
The recording comes from another machine, so the comparison is within a tolerance on every host (no
byte or exact-float comparison; bit-exactness is tested where it is meaningful, straight vs resumed in
one process, by tests/test_training_loop.py and the method tests).

The fingerprint of a network is, per state tensor, its L2 norm and its projection onto a fixed +-1
vector (divided by sqrt(numel)), both in float64: a change of any part of any tensor moves it, while
summing keeps the file small.

Tolerances, from the spread measured on the six cases (torch 2.14.1, x86-64) between native AVX-512,
``ATEN_CPU_CAPABILITY=default`` / ``avx2``, oneDNN and MKL capped at AVX2, 1 and 2 OpenMP threads
(``OMP_NUM_THREADS`` or ``torch.set_num_threads``), and against the AMD EPYC host the file was first
recorded on. The cases run on one thread whatever the environment says: with 2 threads, ATen at
``default`` and oneDNN / MKL capped at AVX2 together, the FakeCLR case left the rounding regime after its
first minibatch (R1 penalty 2.5e-4 apart, losses 6e-3 apart three ticks later: a kink of a leaky ReLU or
an Adam step on a near-zero gradient turned over), as far apart as a 1 % change of a loss weight. With one
thread every ISA combination above stayed within the rounding regime:

- losses: ``|a - b| <= 1e-4 |b| + 1e-6``. The widest spread used 0.12 of it (FakeCLR's contrastive
  term); scaling ``loss.r1_gamma`` or ``loss.pl_weight`` by 1 % moves the losses by 15x / 29x of it.
- weights: ``|a - b| <= 1e-4 norm + 1e-5`` per tensor, norm and projection. The widest spread used
  0.24 of it (the noise strengths, which start at zero and take Adam steps of fixed size, so a near-zero
  gradient of another sign moves them); 1 % on ``r1_gamma`` / ``pl_weight`` moves them by 4.6x / 16x, and
  starting the G_ema average one minibatch later or earlier (the EMA off by one) by 92x / 218x.

Re-record (only when a change of numbers is intended and explained in the commit):
``DEGAN_BENCH_RECORD_GOLDEN=1 python -m pytest tests/test_golden_trajectories.py``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
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
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6
WEIGHT_RTOL, WEIGHT_ATOL = 1e-4, 1e-5


def _signs(n: int) -> torch.Tensor:
    """A fixed +-1 vector from integer hashing (no RNG, so no dependence on how a host draws numbers)."""
    index = torch.arange(n, dtype=torch.int64)
    bits = ((index * 2654435761 + 12345) % 4294967296) >> 15
    return (bits & 1).double() * 2 - 1


def fingerprint(state: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    out = {}
    for key in sorted(state):
        x = state[key].detach().cpu().double().flatten()
        out[key] = [float(x.norm()), float((x * _signs(x.numel())).sum()) / math.sqrt(max(x.numel(), 1))]
    return out


def trajectory(out: Path, overrides: list[str]) -> dict[str, Any]:
    recipe = resolve_file(SHAPES, "smoke", [*SCHEDULE, *overrides])
    execute_run(recipe, seed=5, out=out, evaluate=False, handle_signals=False, tensorboard=False)
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(out)["last"])
    return {
        "losses": [tick["losses"] for tick in RunDir(out).read_stats()],
        **{name: fingerprint(payload[name]) for name in ("G", "D", "G_ema")},
    }


def _load() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"recorded_on": None, "cases": {}}


def mismatches(got: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Every quantity outside its tolerance, named (empty when the trajectory matches)."""
    bad: list[str] = []
    if len(got["losses"]) != len(expected["losses"]):
        return [f"{len(got['losses'])} ticks, recorded {len(expected['losses'])}"]
    for tick, (mine, theirs) in enumerate(zip(got["losses"], expected["losses"], strict=True)):
        if mine.keys() != theirs.keys():
            bad.append(f"tick {tick}: loss keys {sorted(mine)} != {sorted(theirs)}")
            continue
        for key, value in theirs.items():
            if abs(mine[key] - value) > LOSS_RTOL * abs(value) + LOSS_ATOL:
                bad.append(f"tick {tick} {key}: {mine[key]!r} vs recorded {value!r}")
    for name in ("G", "D", "G_ema"):
        if got[name].keys() != expected[name].keys():
            bad.append(f"{name}: state keys differ")
            continue
        for key, (norm, proj) in expected[name].items():
            allowed = WEIGHT_RTOL * norm + WEIGHT_ATOL
            mine_norm, mine_proj = got[name][key]
            if abs(mine_norm - norm) > allowed or abs(mine_proj - proj) > allowed:
                bad.append(f"{name}.{key}: (norm, projection) {got[name][key]} vs recorded {[norm, proj]}")
    return bad


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The recording is compared at one thread (the split of a reduction over threads is a host setting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.usefixtures("one_thread")
def test_stylegan2_trajectory_matches_the_recording(tmp_path: Path, case: str) -> None:
    got = trajectory(tmp_path / case, CASES[case])
    if os.environ.get("DEGAN_BENCH_RECORD_GOLDEN") == "1":
        golden = _load()
        golden["recorded_on"] = f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"
        golden["cases"][case] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {case}")
    bad = mismatches(got, _load()["cases"][case])
    assert not bad, f"{len(bad)} quantities outside the tolerance, first: " + "; ".join(bad[:5])


def test_the_tolerance_separates_rounding_from_a_change_of_numbers() -> None:
    """The comparison itself: a rounding-sized difference passes, a training-sized one fails."""
    state = {"w": torch.linspace(-1.0, 1.0, 300), "b": torch.full([8], 3e-3)}
    expected = {"losses": [{"Loss/G/loss": 0.5}], "G": fingerprint(state), "D": {}, "G_ema": {}}
    rounding = {k: v * (1 + 1e-6) for k, v in state.items()}
    got = {"losses": [{"Loss/G/loss": 0.5 * (1 + 1e-6)}], "G": fingerprint(rounding), "D": {}, "G_ema": {}}
    assert mismatches(got, expected) == []
    moved = {**state, "b": state["b"] + 1e-3 * (torch.arange(8) % 2)}  # half the biases took one lr step
    assert [m.split(":")[0] for m in mismatches({**got, "G": fingerprint(moved)}, expected)] == ["G.b"]
    wrong_loss = {**got, "losses": [{"Loss/G/loss": 0.5 * 1.001}]}
    assert len(mismatches(wrong_loss, expected)) == 1
