"""When evaluations and checkpoints happen, in minibatches, for the two offsets the official code bases use:

- ``training.first_tick: one_minibatch`` (+ ``evaluation.at_first_tick``): BigGAN-PyTorch's forks test
  ``itr % every == 0`` before the counter increments, so they save/evaluate after iterations 1, N+1, 2N+1;
- ``training.first_tick: full``: StudioGAN tests ``step_count % every == 0`` after the increment, so after
  iterations N, 2N.

A tiny StyleGAN2 stands in for the backbone (the schedule belongs to the loop): 10 minibatches of 8 images,
ticks of 2 minibatches, an evaluation every 4 minibatches (32 images), a checkpoint every 2 ticks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiny import TINY_MODEL

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.training.execute import execute_run

SCHEDULE = [
    *TINY_MODEL, "training.kimg=0.08", "training.kimg_per_tick=0.016", "training.snapshot_ticks=2",
    "training.image_snapshot_ticks=100", "training.keep_checkpoints=20", "training.grid_size=[2,1]",
    "evaluation.protocols=[fid5k_train]", "evaluation.interval_kimg=0.032", "loss.pl_weight=0",
]  # fmt: skip


def run(out: Path, *extra: str, **kwargs: Any) -> list[int]:
    """Train; return the minibatch counts at which the headline protocol was evaluated for selection."""
    calls: list[int] = []

    def evaluator(G, protocol, **_kwargs):
        return {"protocol": protocol, "metric": "fid", "status": "ok", "value": 1.0, "protocol_record": {}}

    recipe = resolve_recipe("stylegan2", "shapes-100", "smoke", [*SCHEDULE, *extra])
    execute_run(
        recipe, seed=0, out=out, evaluator=evaluator, handle_signals=False, tensorboard=False, **kwargs
    )
    for record in RunDir(out).read_metrics():
        if record["purpose"] == "selection":
            calls.append(record["cur_nimg"] // 8)
    return calls


def checkpoints(out: Path) -> list[int]:
    return sorted(ckpt.load_checkpoint(p)["cur_nimg"] // 8 for p in (out / "checkpoints").glob("ckpt-*.pt"))


def test_biggan_pytorch_fork_offsets_evaluate_and_save_after_iterations_1_n1_2n1(tmp_path: Path) -> None:
    out = tmp_path / "fork"
    evaluated = run(out, "training.first_tick=one_minibatch", "evaluation.at_first_tick=true")
    assert evaluated == [1, 5, 9]  # itr % 4 == 0 before the increment; then the last one at 10
    assert checkpoints(out) == [1, 5, 9, 10]  # every 4 minibatches from the first, and the end
    assert [s["tick"] for s in RunDir(out).read_stats()] == [0, 1, 2, 3, 4, 5]
    assert run(tmp_path / "no-first", "evaluation.at_first_tick=false") == [5, 9]


def test_studiogan_offsets_evaluate_and_save_after_iterations_n_2n(tmp_path: Path) -> None:
    out = tmp_path / "studiogan"
    assert run(out, "training.first_tick=full", "evaluation.at_first_tick=true") == [4, 8]
    assert checkpoints(out) == [4, 8, 10]
    assert [s["cur_nimg"] // 8 for s in RunDir(out).read_stats()] == [2, 4, 6, 8, 10]
    assert [s["tick"] for s in RunDir(out).read_stats()] == [1, 2, 3, 4, 5]


def test_a_resumed_full_first_tick_run_keeps_its_ticks(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(straight, "training.first_tick=full")
    run(resumed, "training.first_tick=full", stop_at_nimg=40)  # inside tick 3 (minibatches 5-6)
    run(resumed, "training.first_tick=full", resume="auto")
    ticks = [(s["tick"], s["cur_nimg"]) for s in RunDir(straight).read_stats()]
    assert [(s["tick"], s["cur_nimg"]) for s in RunDir(resumed).read_stats()] == ticks
    assert checkpoints(resumed)[-1] == 10 and 4 in checkpoints(resumed) and 8 in checkpoints(resumed)
