"""The lottery-ticket chain inside the real loop on the CPU (StudioGAN BigGAN smoke on cifar10-10pct):
IMP round 0 -> round 1 (mask from round 0's final G, rewound to the init snapshot bit for bit) -> the
round-1 ticket with DiffAugment + AdvAug, masked weights exactly zero in G, G_ema and checkpoints,
and an exact resume across a stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import assert_same

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.errors import MethodError
from degan_bench.methods.lottery import ARTIFACTS, INIT_FILE, MASK_FILE, averaged_weights
from degan_bench.methods.pruning import conv_weights, count, prune_global
from degan_bench.models import build_models
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.training.execute import execute_run
from degan_bench.training.parts import seed_everything

# 4 G steps of 5 D steps x 5 reals (100 reals per run), ticks every 50.
TINY = ["model.g_ch=4", "model.d_ch=4", "training.batch=5", "training.kimg=0.1",
        "training.kimg_per_tick=0.05", "training.ema_start_step=2", "training.grid_size=[10,1]"]  # fmt: skip
FIND = ["lottery.stage=find", "lottery.policy=none", "lottery.advaug=none"]


def run(out: Path, *extra: str, **kwargs: Any):
    resolved = resolve_recipe("lottery", "cifar10-10pct", "smoke", [*TINY, *extra])
    return execute_run(resolved, seed=3, out=out, evaluate=False, handle_signals=False, tensorboard=False,
                       **kwargs)  # fmt: skip


def last(run_dir: Path) -> dict[str, Any]:
    return ckpt.load_checkpoint(ckpt.list_checkpoints(run_dir)["last"])


def assert_masked(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], where: str) -> None:
    for name, mask in masks.items():
        assert (state[name][~mask] == 0).all(), f"{where}: {name} has pruned weights that are not zero"


def test_imp_chain_then_ticket_with_advaug_and_exact_resume(cifar: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    r0, r1 = runs / "find-0", runs / "find-1"
    # Round 1 before round 0 exists: one line naming the fix.
    runs.mkdir()
    with pytest.raises(MethodError, match="needs the IMP run of round 0"):
        run(tmp_path / "runs" / "early", *FIND, "lottery.round=1")
    assert run(r0, *FIND, "lottery.round=0").status == "complete"
    assert run(r1, *FIND, "lottery.round=1").status == "complete"

    # The init snapshot is the seed's freshly built networks, and round 1 rewinds to it bit for bit.
    init0 = torch.load(r0 / ARTIFACTS / INIT_FILE, weights_only=True)
    init1 = torch.load(r1 / ARTIFACTS / INIT_FILE, weights_only=True)
    assert_same(init0, init1)
    resolved = resolve_recipe("lottery", "cifar10-10pct", "smoke", [*TINY, *FIND, "lottery.round=1"])
    seed_everything(3)
    G, D = build_models(resolved.model, 32)
    assert_same(init0["G"], G.state_dict())
    assert_same(init0["D"], D.state_dict())

    # Round 1's mask: the studiogan rule on round 0's final G, from the dense mask.
    m0 = torch.load(r0 / ARTIFACTS / MASK_FILE, weights_only=True)
    m1 = torch.load(r1 / ARTIFACTS / MASK_FILE, weights_only=True)
    assert count(m0["G"])[0] == count(m0["G"])[1] and m1["round"] == 1 and m1["D"] == {}
    trained0 = last(r0)["G"]
    expected = prune_global({k: trained0[k] for k in m0["G"]}, m0["G"], 0.2, "studiogan_threshold")
    assert_same(expected, m1["G"])
    remaining, total = count(m1["G"])
    assert total - remaining == int(0.2 * total) + 1
    assert set(m1["G"]) == set(conv_weights(G))
    # Beside it, the averaged generator's own chain (SNGAN's avg_gen_net): pruned on round 0's G_ema, with
    # the initial weight standing in wherever G's mask had pruned (nothing yet in round 0).
    assert count(m0["G_ema"]) == count(m0["G"])
    averaged = averaged_weights({k: last(r0)["G_ema"][k] for k in m0["G"]}, m0["G"], init0["G"])
    assert_same(prune_global(averaged, m0["G_ema"], 0.2, "studiogan_threshold"), m1["G_ema"])
    assert any(not torch.equal(m1["G"][k], m1["G_ema"][k]) for k in m1["G"])

    # Round 1 trained with the mask: zero in G and G_ema of every checkpoint; D was rewound dense.
    final1 = last(r1)
    assert_masked(final1["G"], m1["G"], "round 1 G")
    assert_masked(final1["G_ema"], m1["G"], "round 1 G_ema")
    assert final1["method"]["state"]["round"] == 1
    stats = RunDir(r1).read_stats()
    assert stats[-1]["method"]["g_remaining"] == pytest.approx(remaining / total)

    # Stage II: the round-1 ticket with DiffAugment + AdvAug, stopped inside and resumed == straight.
    ticket = ["lottery.stage=train", "lottery.round=1"]
    straight = run(runs / "ticket", *ticket)
    assert straight.status == "complete"
    t_mask = torch.load(runs / "ticket" / ARTIFACTS / MASK_FILE, weights_only=True)
    assert_same(t_mask["G"], m1["G"])
    assert t_mask["source"] == "find-1" and t_mask["ticket_mask"] == "g"  # the BigGAN code's source
    final_t = last(runs / "ticket")
    assert_masked(final_t["G"], m1["G"], "ticket G")
    assert_masked(final_t["G_ema"], m1["G"], "ticket G_ema")
    losses = RunDir(runs / "ticket").read_stats()[-1]["losses"]
    assert {"Loss/D/advaug", "Loss/G/advaug"} <= set(losses)

    # The same ticket again in another directory, stopped after 50 reals and resumed.
    other = tmp_path / "resume"
    other.mkdir()
    for name in ("find-0", "find-1"):
        (other / name).symlink_to(runs / name)
    stopped = run(other / "ticket", *ticket, stop_at_nimg=50)
    assert stopped.status == "stopped"
    mid = last(other / "ticket")
    assert_masked(mid["G"], m1["G"], "stopped ticket G")
    resumed = run(other / "ticket", *ticket, resume="auto")
    assert resumed.status == "complete"
    a, b = last(runs / "ticket"), last(other / "ticket")
    for key in ("G", "D", "G_ema", "opt_G", "opt_D"):
        assert_same(a[key], b[key], key)
