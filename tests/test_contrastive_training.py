"""InsGen and FakeCLR inside the real training loop on the CPU: the shipped smoke preset end to end, and
bit-exact resume with the heads, their optimizers, D_ema and the queues in the checkpoint."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from tiny import TINY_MODEL, assert_same

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.recipes.loader import resolve_file, resolve_recipe
from degan_bench.training.execute import execute_run

SHAPES = Path(__file__).resolve().parent.parent / "recipes" / "stylegan2" / "shapes-100.yaml"
# 16 px, batch 8 in two accumulation rounds, lazy R1 and path length every 2 minibatches, 4 minibatches
# (ticks end at 8, 24 and 32 images; the resumed run stops at 24);
# p starts at 0.5 so every contrastive view goes through the pipe.
TINY = [
    *TINY_MODEL, "training.kimg=0.032", "training.kimg_per_tick=0.016",
    "training.snapshot_ticks=1", "training.image_snapshot_ticks=100", "training.grid_size=[4,2]",
    "loss.r1_interval=2", "loss.pl_weight=2", "loss.pl_interval=2", "loss.pl_batch_shrink=2",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "variant"), [("insgen", []), ("fakeclr", []), ("fakeclr", ["fakeclr.variant=paper_reading"])]
)
def test_smoke_preset_runs_end_to_end(tmp_path: Path, method: str, variant: list[str]) -> None:
    recipe = resolve_recipe(method, "obama-100", "smoke")
    assert recipe.recipe.data.resolution == 32 and recipe.recipe.training.batch == 8
    # The shipped smoke preset on the embedded shapes (no download), for 3 minibatches.
    overrides = ["dataset=shapes-100", "training.kimg=0.024", *variant]
    resolved = resolve_file(Path(recipe.source), "smoke", overrides)
    result = execute_run(resolved, seed=0, out=tmp_path / "run", evaluate=False, handle_signals=False,
                         tensorboard=False)  # fmt: skip
    assert result is not None and result.status == "complete" and result.cur_nimg == 24
    losses = RunDir(tmp_path / "run").read_stats()[-1]["losses"]
    expected = {"Loss/D/fake_cl", "Loss/G/fake_cl_on_g"} | (
        {"Loss/D/real_cl"} if method == "insgen" else set()
    )
    assert expected <= set(losses)
    assert all(math.isfinite(losses[name]) and losses[name] > 0 for name in expected)


def run(out: Path, method: str, variant: list[str], **kwargs: Any) -> Any:
    recipe = resolve_file(SHAPES, "smoke", [*TINY, f"method={method}", f"{method}.ada.p_init=0.5", *variant])
    return execute_run(
        recipe, seed=3, out=out, evaluate=False, handle_signals=False, tensorboard=False, **kwargs
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "variant"),
    [("insgen", []), ("fakeclr", ["fakeclr.variant=paper_reading", "fakeclr.diversity_ema=0.5"])],
)
def test_training_resumes_bit_identically(tmp_path: Path, method: str, variant: list[str]) -> None:
    straight = run(tmp_path / "straight", method, variant)
    assert straight is not None and straight.status == "complete"
    stopped = run(tmp_path / "resumed", method, variant, stop_at_nimg=24)
    assert stopped is not None and stopped.cur_nimg == 24
    resumed = run(tmp_path / "resumed", method, variant, resume="auto")
    assert resumed is not None and resumed.status == "complete"

    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "method", "rng"):
        assert_same(a[key], b[key], key)
    saved = a["method"]
    heads = {"real_head", "fake_head"} if method == "insgen" else {"fake_head"}
    assert set(saved["modules"]) == {"D_ema", *heads} and set(saved["optimizers"]) == heads
    for queue in saved["state"]["queues"].values():
        assert queue["steps"].max() == 3  # the last minibatch's keys are queued
    stats_a = RunDir(tmp_path / "straight").read_stats()
    stats_b = RunDir(tmp_path / "resumed").read_stats()
    assert [s["losses"] for s in stats_a] == [s["losses"] for s in stats_b]
    assert [s["method"] for s in stats_a] == [s["method"] for s in stats_b]
