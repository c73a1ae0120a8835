"""ADA inside the real training loop (tiny StyleGAN2 on the CPU): R1 on the raw reals through the pipe
(double backward), the p heuristic's reporting, and bit-exact resume with the method's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny import assert_same

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.recipes.loader import resolve_file
from degan_bench.training.execute import execute_run

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "stylegan2" / "shapes-100.yaml"
# 16 px, batch 8 (two accumulation rounds), lazy R1 on the raw reals every 2 minibatches, 8 minibatches;
# ticks end at 8, 48 and 64 images. p starts at 0.5 so the pipe runs from the first step.
TINY = [
    "data.resolution=16",
    "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
    "model.channel_base=128", "model.channel_max=16",
    "training.batch=8", "training.batch_gpu=4", "training.kimg=0.064", "training.kimg_per_tick=0.04",
    "training.snapshot_ticks=1", "training.image_snapshot_ticks=100", "training.grid_size=[4,2]",
    "loss.r1_interval=2", "loss.r1_on=raw",
]  # fmt: skip
# speed 0.1 kimg: each adjustment (every 4 minibatches) moves p by 8 * 4 / 100 = 0.32.
ADA = ["method=ada", "ada.p_init=0.5", "ada.interval=4", "ada.speed_kimg=0.1", "ada.target=0.3"]


def run(out: Path, **kwargs: Any):
    recipe = resolve_file(RECIPE, "smoke", [*TINY, *ADA])
    return execute_run(
        recipe, seed=5, out=out, evaluate=False, handle_signals=False, tensorboard=False, **kwargs
    )


@pytest.mark.slow
def test_ada_training_resumes_bit_identically(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight")
    assert straight is not None and straight.status == "complete"
    # Stop after 6 minibatches: one adjustment done, half of the next sign window pending.
    stopped = run(tmp_path / "resumed", stop_at_nimg=48)
    assert stopped is not None and stopped.cur_nimg == 48
    resumed = run(tmp_path / "resumed", resume="auto")
    assert resumed is not None and resumed.status == "complete"

    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_D", "method", "rng"):
        assert_same(a[key], b[key], key)
    stats_a = RunDir(tmp_path / "straight").read_stats()
    stats_b = RunDir(tmp_path / "resumed").read_stats()
    assert [s["losses"] for s in stats_a] == [s["losses"] for s in stats_b]
    assert [s["method"] for s in stats_a] == [s["method"] for s in stats_b]
    p_values = [s["method"]["augment_p"] for s in stats_a]
    assert p_values[0] == 0.5 and len(set(p_values)) > 1, "the heuristic never moved p"
    assert "ada_rt" in stats_a[-1]["method"]
    assert a["method"]["state"]["heuristic"]["minibatches"] == 8
