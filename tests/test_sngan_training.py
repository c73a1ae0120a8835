"""SNGAN as the lottery paper's SNGAN/functions.py trains it, on the CPU (smoke preset on cifar10-10pct):
per minibatch one D step, the G step on loss.g_batch fakes, then four more D steps; D run on reals and
fakes separately; then the dense run's AdvAug ticket (lottery round 0) through G.stem/body and
D.trunk/head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from degan_bench.errors import RecipeError
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.training.execute import execute_run
from degan_bench.training.objectives.hinge import HingeObjective

FIND0 = ["lottery.stage=find", "lottery.round=0", "lottery.policy=none", "lottery.advaug=none"]


def run(out: Path, *overrides: str) -> Any:
    resolved = resolve_recipe("lottery", "cifar10-10pct", "smoke", list(overrides), backbone="sngan")
    return execute_run(resolved, seed=1, out=out, evaluate=False, handle_signals=False, tensorboard=False,
                       device="cpu")  # fmt: skip


def test_recipe_is_the_readme_command() -> None:
    r = resolve_recipe("lottery", "cifar10-10pct", backbone="sngan")
    loss, training = r.recipe.loss, r.recipe.training
    assert (loss.d_steps, loss.g_batch, loss.g_after_d_step, loss.d_forward) == (5, 128, 1, "separate")
    assert (training.batch, training.betas, training.ema_decay) == (64, (0.0, 0.9), 0.999)
    assert training.kimg == 50000 * 5 * 64 / 1000  # --max_iter 50000 G steps
    assert (
        r.recipe.evaluation.protocols == ["fid50k_full", "is50k"] and r.recipe.data.subset_rule == "first_n"
    )
    assert r.data["lottery"]["round"] == 10 and r.data["lottery"]["advaug"] == "gd"
    with pytest.raises(RecipeError, match="g_after_d_step 6 must be at most d_steps 5"):
        resolve_recipe("lottery", "cifar10-10pct", overrides=["loss.g_after_d_step=6"], backbone="sngan")


def test_step_order_batches_and_separate_d_calls(
    cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    real_step, real_run_d = HingeObjective.step_optimizer, HingeObjective._run_D

    def step_optimizer(self: HingeObjective, phase: str, module: Any, opt: Any, steps: list[Any]) -> None:
        events.append((phase, sum(len(s.fakes) for s in steps)))
        real_step(self, phase, module, opt, steps)

    def run_d(self: HingeObjective, images: Any, c: Any) -> Any:
        events.append(("D-call", len(images)))
        return real_run_d(self, images, c)

    monkeypatch.setattr(HingeObjective, "step_optimizer", step_optimizer)
    monkeypatch.setattr(HingeObjective, "_run_D", run_d)
    info = run(tmp_path / "runs" / "dense", *FIND0)
    assert info.status == "complete"
    d_step = [("D-call", 10), ("D-call", 10), ("D", 10)]  # reals, then fakes, one D step
    g_step = [("D-call", 10), ("D-call", 10), ("G", 20)]  # loss.g_batch=20: two rounds of batch_gpu 10
    minibatch = d_step + g_step + d_step * 4
    assert events == minibatch * 4  # smoke: 0.2 kimg = 4 minibatches of 5 x 10 reals

    # D concatenated (BigGAN) is one call per D step; g_after_d_step unset puts G last
    events.clear()
    run(tmp_path / "runs" / "concat", *FIND0, "loss.d_forward=concat", "loss.g_after_d_step=null",
        "loss.g_batch=null", "training.kimg=0.05")  # fmt: skip
    assert events == [("D-call", 20), ("D", 10)] * 5 + [("D-call", 10), ("G", 10)]


def test_dense_advaug_ticket_after_the_dense_run(cifar: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert run(runs / "find0", *FIND0).status == "complete"
    info = run(runs / "ticket0", "lottery.round=0")  # round 0: the dense network + AdvAug on G and D
    assert info.status == "complete"
    with pytest.raises(RecipeError, match=r"loss\.g_batch 15 is not a multiple"):
        run(runs / "bad", *FIND0, "loss.g_batch=15", "training.batch_gpu=10")
