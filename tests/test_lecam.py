"""LeCam: the penalty and its gradient in closed form on a linear D, both official anchor rules (BigGAN's
ema_losses with its start iteration, TF's zero-debiased moving average) updated before the penalty, the
schedule inside the objectives (every D step, G untouched), exact continuation from the state, ADA and
LeCam composed into the lottery ticket, the recipes against the official scripts, the tables, and smoke
runs with bit-exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tiny import TINY_MODEL, assert_same
from torch import nn
from toy_gan import CPU, SHAPE, LinearD, ToyG, hinge_objective, hinge_recipe, method_context
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli.app import app
from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.errors import MethodError
from degan_bench.methods.base import DStep
from degan_bench.methods.lecam import (
    LeCamAnchors,
    LeCamConfig,
    LeCamMethod,
    LeCamMethodConfig,
    lecam_penalty,
)
from degan_bench.methods.lottery import LotteryConfig, LotteryMethod, find_overrides, find_section
from degan_bench.recipes.loader import resolve_file, resolve_recipe
from degan_bench.training.execute import execute_run
from degan_bench.training.objectives.base import MinibatchInfo
from degan_bench.training.stats import StatsCollector

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def d_step(D: nn.Module, reals: torch.Tensor, fakes: torch.Tensor, phase: str = "main") -> DStep:
    real_logits, fake_logits = D(reals), D(fakes)
    return DStep(
        reals=reals, reals_aug=reals, real_logits=real_logits, real_features=None, G=nn.Identity(), D=D,
        cur_nimg=0, phase=phase, fakes=fakes, fakes_aug=fakes, fake_logits=fake_logits,
    )  # fmt: skip


# -- the penalty in closed form ----------------------------------------------------------------------------
def test_penalty_matches_the_closed_form() -> None:
    real = torch.tensor([[2.0], [0.5], [-1.0]])
    fake = torch.tensor([[1.0], [-3.0], [0.2]])
    a_real, a_fake = torch.tensor(0.4, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    # relu(D(x) - a_fake)^2 = [4, 0.25, 0]; relu(a_real - D(G(z)))^2 = [0, 11.56, 0.04]
    expected = (4 + 0.25 + 0) / 3 + (0 + 3.4**2 + 0.2**2) / 3
    value = lecam_penalty(real, fake, a_real, a_fake)
    assert value.dtype == torch.float32  # the 0-d float64 anchors do not promote the logits
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_gradient_reaches_d_through_both_terms_and_not_the_anchors() -> None:
    torch.manual_seed(0)
    D = LinearD()
    reals, fakes = torch.randn(6, *SHAPE), torch.randn(6, *SHAPE)
    anchors = LeCamAnchors(LeCamConfig(weight=1.0, ema="tf"), "ns_r1", CPU)
    penalty = anchors.penalty(D(reals), D(fakes))
    assert penalty is not None and not anchors.real.requires_grad
    penalty.backward()
    w = D.w.detach().flatten()
    r, f = reals.flatten(1) @ w, fakes.flatten(1) @ w
    # after one tf update the anchors are exactly this batch's means
    assert anchors.real.item() == pytest.approx(r.mean().item(), rel=1e-6)
    assert anchors.fake.item() == pytest.approx(f.mean().item(), rel=1e-6)
    a_real, a_fake = r.mean(), f.mean()
    grad = 2 * (F.relu(r - a_fake)[:, None] * reals.flatten(1)).mean(0)
    grad -= 2 * (F.relu(a_real - f)[:, None] * fakes.flatten(1)).mean(0)
    torch.testing.assert_close(D.w.grad.flatten(), grad, rtol=1e-4, atol=1e-6)


# -- the anchor rules --------------------------------------------------------------------------------------
def means_sequence(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(1)
    return [(torch.randn(4, 1) + k, torch.randn(4, 1) - k) for k in range(n)]


def test_biggan_rule_copies_before_the_start_then_averages_and_penalizes_after_it() -> None:
    # third_party/utils.py:637-661 ema_losses(init=1000, decay=0.9, start_itr) and train_fns.py:59
    anchors = LeCamAnchors(LeCamConfig(weight=0.3, ema="biggan", start_step=2), "hinge", CPU)
    assert (anchors.real.item(), anchors.fake.item(), anchors.decay) == (1000.0, 1000.0, 0.9)
    expected_real = expected_fake = 1000.0
    for iteration, (real, fake) in enumerate(means_sequence(5)):
        anchors.end_of_minibatch(iteration)
        for _step in range(4):  # BigGAN's 4 D steps: every one updates (and, after the start, penalizes)
            penalty = anchors.penalty(real, fake)
            d = 0.0 if iteration < 2 else 0.9
            expected_real = expected_real * d + real.mean().double().item() * (1 - d)
            expected_fake = expected_fake * d + fake.mean().double().item() * (1 - d)
            assert anchors.real.item() == pytest.approx(expected_real, rel=1e-12)
            assert anchors.fake.item() == pytest.approx(expected_fake, rel=1e-12)
            if iteration <= 2:  # official: itr > start_itr
                assert penalty is None
            else:  # taken with the anchors that already include this step's means
                a_r, a_f = torch.tensor(expected_real), torch.tensor(expected_fake)
                torch.testing.assert_close(penalty, lecam_penalty(real, fake, a_r, a_f))


def test_tf_rule_is_the_zero_debiased_moving_average_from_the_first_step() -> None:
    # stylegan2/lecam_loss.py:51-54 assign_moving_average(decay=0.99, zero_debias=True)
    anchors = LeCamAnchors(LeCamConfig(weight=1e-6, ema="tf"), "ns_r1", CPU)
    seq = means_sequence(6)
    for t, (real, fake) in enumerate(seq, start=1):
        penalty = anchors.penalty(real, fake)
        assert penalty is not None  # no start iteration
        weights = [0.01 * 0.99 ** (t - k) for k in range(1, t + 1)]
        biased = sum(w * r.mean().double().item() for w, (r, _) in zip(weights, seq, strict=False))
        assert anchors.real.item() == pytest.approx(biased / (1 - 0.99**t), rel=1e-12)
    assert anchors.updates == 6


def test_auto_rule_follows_the_objective_and_bad_starts_are_refused() -> None:
    assert LeCamAnchors(LeCamConfig(weight=1.0), "hinge", CPU).rule == "biggan"
    assert LeCamAnchors(LeCamConfig(weight=1.0), "ns_r1", CPU).rule == "tf"
    with pytest.raises(MethodError, match="start_step 5 applies to the biggan anchor rule"):
        LeCamAnchors(LeCamConfig(weight=1.0, ema="tf", start_step=5), "ns_r1", CPU)


def test_state_round_trip_continues_exactly_and_refuses_another_rule() -> None:
    torch.manual_seed(2)
    D = LinearD()
    batches = [(torch.randn(4, *SHAPE), torch.randn(4, *SHAPE)) for _ in range(4)]
    config = LeCamMethodConfig(weight=0.3, ema="biggan", start_step=0)

    def drive(method: LeCamMethod, items: list, first: int) -> list[dict]:
        out = []
        for i, (reals, fakes) in enumerate(items, start=first):
            out.append(method.d_loss_terms(d_step(D, reals, fakes)))
            method.end_of_minibatch(0, i + 1)
        return out

    straight = drive(LeCamMethod(config, method_context(D)), batches, 0)
    first = LeCamMethod(config, method_context(D))
    drive(first, batches[:2], 0)
    resumed = LeCamMethod(config, method_context(D))
    resumed.load_state_dict(first.state_dict())
    assert [t["lecam"] for t in drive(resumed, batches[2:], 2)] == [t["lecam"] for t in straight[2:]]
    # without the anchors: other numbers
    fresh = drive(LeCamMethod(config, method_context(D)), batches[2:], 2)
    assert not torch.equal(fresh[-1]["lecam"], straight[-1]["lecam"])
    tf = LeCamMethod(LeCamMethodConfig(weight=1.0, ema="tf"), method_context(D))
    with pytest.raises(MethodError, match="follow the biggan rule"):
        tf.load_state_dict(first.state_dict())


def test_reg_phase_and_weight_zero_leave_the_loss_alone() -> None:
    torch.manual_seed(3)
    D = LinearD()
    method = LeCamMethod(LeCamMethodConfig(weight=1.0, ema="tf"), method_context(D, objective="ns_r1"))
    reg = d_step(D, torch.randn(4, *SHAPE), torch.randn(4, *SHAPE), phase="reg")
    assert method.d_loss_terms(reg) == {} and method.anchors is not None and method.anchors.updates == 0
    off = LeCamMethod(LeCamMethodConfig(weight=0.0), method_context(D))
    assert off.anchors is None and off.d_loss_terms(d_step(D, *reg.reals.split(2))) == {}


# -- inside the hinge objective -----------------------------------------------------------------------------
class Recording(LeCamMethod):
    name = "test-lecam-recording"

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        terms = super().d_loss_terms(step)
        assert self.anchors is not None
        self.calls.append((self.anchors.iteration, step.d_step_index, "lecam" in terms))
        return terms


def test_hinge_objective_penalizes_every_d_step_after_the_start_and_not_g() -> None:
    torch.manual_seed(5)
    G, D = ToyG(), LinearD()
    recipe = hinge_recipe("lecam", batch=3)
    method = Recording(LeCamMethodConfig(weight=0.3, start_step=1), method_context(D, ToyG(), recipe=recipe))
    method.calls = []
    objective = hinge_objective(method, G, D, recipe)
    stats = StatsCollector()
    for i in range(3):
        objective.train_minibatch(lambda: (torch.randn(3, *SHAPE), None), MinibatchInfo(i, 12 * i), stats)
        method.end_of_minibatch(12 * (i + 1), i + 1)  # what the loop calls after each minibatch
    assert method.anchors is not None and method.anchors.rule == "biggan"
    assert method.calls == [(i, s, i > 1) for i in range(3) for s in range(4)]
    means = stats.means()
    assert means["Loss/D/lecam"] > 0 and "Loss/G/lecam" not in means


# -- the lottery ticket composes ADA and LeCam -----------------------------------------------------------
def test_lottery_options_compose_and_stage_one_stays_plain() -> None:
    with pytest.raises(ValueError, match="both augment"):
        LotteryConfig(
            stage="train", policy="color", ada=resolve_recipe("ada", "obama-100").method_config
        ).check()
    with pytest.raises(ValueError, match="without augmentation"):
        LotteryConfig(stage="find", lecam=LeCamConfig(weight=1.0)).check()
    composed = LotteryConfig(stage="train", round=3, lecam=LeCamConfig(weight=1.0))
    assert find_overrides(3, composed)[-1] == "lottery.lecam=null"
    assert find_overrides(3) == find_overrides(3, LotteryConfig(stage="train", round=3))  # unchanged without
    assert LotteryMethod.prerequisites(composed) == [find_overrides(3, composed)]
    section = {"stage": "train", "round": 3, "policy": "none", "ada": {"target": 0.6}, "lecam": None}
    assert find_section(section, 1) == {**section, "stage": "find", "round": 1, "advaug": "none", "ada": None}


def test_lottery_refuses_ada_on_the_biggan_objective() -> None:
    with pytest.raises(MethodError, match=r"lottery\.ada is StyleGAN2-ADA's"):
        LotteryMethod._ada(LotteryConfig(ada=resolve_recipe("ada", "obama-100").method_config).ada,
                           method_context(LinearD()))  # fmt: skip


# -- recipes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "dataset", "policy", "epochs"),
    [
        # biggan_cifar/scripts/lc-biggan-cifar*.sh: --LC 0.3, DiffAugment's epochs (1000 / 2000 / 5000)
        ("lecam", "cifar10-100pct", "", 1000),
        ("lecam", "cifar100-20pct", "", 5000),
        # biggan_cifar/scripts/lc-DiffAugment-biggan-cifar*.sh: --LC 0.3 --DiffAugment translation,cutout
        ("lecam-diffaugment", "cifar10-10pct", "translation,cutout", 5000),
        ("lecam-diffaugment", "cifar100-100pct", "translation,cutout", 2000),
    ],
)
def test_biggan_recipes_follow_the_official_scripts(method, dataset, policy, epochs) -> None:
    resolved = resolve_recipe(method, dataset)
    cfg, recipe = resolved.method_config, resolved.recipe
    # weight: --LC 0.3; decay 0.9: third_party/utils.py:638; start 1000: biggan_cifar/train.py:28
    assert (cfg.weight, cfg.ema, cfg.ema_decay, cfg.start_step, cfg.policy) == (
        0.3,
        "biggan",
        0.9,
        1000,
        policy,
    )
    assert recipe.training.epochs == epochs and (recipe.training.batch, recipe.loss.d_steps) == (50, 4)
    assert recipe.provenance.upstream_repo == "google/lecam-gan"
    assert "--LC 0.3" in recipe.provenance.upstream_command
    assert resolve_recipe(method, dataset, "smoke").method_config.start_step == 4  # smoke reaches the penalty


@pytest.mark.parametrize(
    "dataset", ["obama-100", "grumpy-cat-100", "panda-100", "animalface-cat", "animalface-dog"]
)
def test_lowshot_recipes_take_the_official_stylegan2_regularizer(dataset: str) -> None:
    resolved = resolve_recipe("lecam-diffaugment", dataset)
    cfg = resolved.method_config
    # 3e-7: stylegan2/scripts/run_train_ffhq.sh:16; decay 0.99 zero-debiased: stylegan2/lecam_loss.py:51-54
    assert (cfg.weight, cfg.ema, cfg.ema_decay, cfg.policy) == (3e-7, "tf", 0.99, "color,translation,cutout")
    assert resolved.recipe.training.kimg == (500 if dataset.startswith("animalface") else 300)
    assert resolved.model.arch == "stylegan2" and resolved.recipe.evaluation.protocols == ["fid5k_train"]
    assert any("lambda were not released" in d for d in resolved.recipe.provenance.deviations)


def test_ada_recipe_is_the_official_ffhq_script() -> None:
    resolved = resolve_recipe("lecam-ada", "ffhq-1k")
    cfg = resolved.method_config
    # run_train_ffhq.sh:16,19: LECAM=3e-7, --cfg paper256 --aug ada, no --mirror
    assert (cfg.weight, cfg.ema, cfg.ada.mode, cfg.ada.target) == (3e-7, "tf", "adaptive", 0.6)
    assert resolved.recipe.data.mirror == "none" and resolved.recipe.training.batch == 64


def test_tables_train_the_lecam_rows() -> None:
    from degan_bench.results.tables import load_table, resolve_cell

    for name, count in (("diggan-cifar", 6), ("fakeclr-lowshot", 5), ("lowshot-leaderboard", 5)):
        table = load_table(name)
        (row,) = [r for r in table.rows if r.method == "lecam-diffaugment"]
        assert row.source is not None and row.source.paper == "lecam"
        statuses = [resolve_cell(table, row.method, c.dataset, "paper").status for c in table.columns]
        assert statuses == ["ok"] * count, name


def test_table4_rows_are_one_recipe_with_row_overrides() -> None:
    from degan_bench.results.reported import load_reported
    from degan_bench.results.tables import build_table, load_table

    table = load_table("lottery-stylegan2-cifar100")
    cells = build_table(table, [], load_reported()).cells.set_index("row")
    assert (cells["recipe_status"] == "ok").all() and len(cells) == 9
    assert cells["recipe_hash"].nunique() == 9  # nine different runs of one recipe
    assert cells.loc["Sparse StyleGAN-V2 Tickets + ADA + AdvAug", "reported"] == 12.11
    assert cells.loc["Dense StyleGAN-V2 + ADA + R_LC", "reported"] == 13.01
    assert cells.loc["Dense StyleGAN-V2", "reported"] == 13.59
    ticket = resolve_recipe("lottery", "cifar100-10pct", backbone="stylegan2").method_config
    assert (ticket.stage, ticket.round, ticket.advaug, ticket.policy) == ("train", 3, "d", "none")
    assert ticket.ada is not None and ticket.lecam is None  # Table 4: 48.80 % = 1 - 0.8^3
    row = next(r for r in table.rows if r.label == "Sparse StyleGAN-V2 Tickets + ADA + R_LC")
    lecam = resolve_recipe("lottery", "cifar100-10pct", overrides=row.set, backbone="stylegan2").method_config
    assert lecam.lecam is not None and lecam.lecam.weight == 1e-6  # stylegan2/scripts/run_train_cifar.sh:17


# -- real loop on CPU -------------------------------------------------------------------------------------
def test_biggan_smoke_through_the_cli(cifar: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = ["--set", "model.g_ch=4", "--set", "model.d_ch=4", "--set", "training.kimg=0.24",
            "--set", "lecam.start_step=2"]  # fmt: skip
    result = CliRunner().invoke(
        app, ["run", "lecam", "cifar10-10pct", "--preset", "smoke", "--device", "cpu", "--no-eval",
              "--out", str(out), *sets],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = RunDir(out).read_stats()
    assert stats[-1]["losses"]["Loss/D/lecam"] >= 0 and "lecam_anchor_real" in stats[-1]["method"]


BIGGAN_TINY = [
    "model.g_ch=4", "model.d_ch=4", "training.batch=5", "training.kimg=0.1", "training.kimg_per_tick=0.04",
    "training.ema_start_step=2", "training.grid_size=[10,1]", "lecam-diffaugment.start_step=1",
]  # fmt: skip


def assert_resumes_exactly(run: Any, tmp_path: Path, stop_at: int, keys: tuple[str, ...] = ()) -> dict:
    straight = run(tmp_path / "straight")
    assert straight is not None and straight.status == "complete"
    stopped = run(tmp_path / "resumed", stop_at_nimg=stop_at)
    assert stopped is not None and stopped.cur_nimg == stop_at
    resumed = run(tmp_path / "resumed", resume="auto")
    assert resumed is not None and resumed.status == "complete"
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "method", "rng", *keys):
        assert_same(a[key], b[key], key)
    stats_a = RunDir(tmp_path / "straight").read_stats()
    assert [s["losses"] for s in stats_a] == [s["losses"] for s in RunDir(tmp_path / "resumed").read_stats()]
    return a


@pytest.mark.slow
def test_biggan_resume_is_bit_identical_with_the_anchors(cifar: Path, tmp_path: Path) -> None:
    def run(out: Path, **kwargs: Any) -> Any:
        resolved = resolve_recipe("lecam-diffaugment", "cifar10-10pct", "smoke", BIGGAN_TINY)
        return execute_run(resolved, seed=1, out=out, evaluate=False, handle_signals=False, tensorboard=False,
                           **kwargs)  # fmt: skip

    final = assert_resumes_exactly(run, tmp_path, stop_at=80)
    anchors = final["method"]["state"]["anchors"]
    assert (
        anchors["rule"] == "biggan" and anchors["iteration"] == 5 and anchors["real"].dtype == torch.float64
    )


SHAPES_TINY = [
    *TINY_MODEL, "dataset=shapes-100", "training.kimg=0.032", "training.kimg_per_tick=0.016",
    "training.snapshot_ticks=1", "training.image_snapshot_ticks=100", "training.grid_size=[4,2]",
    "evaluation.protocols=[kid500_train]", "loss.r1_interval=2", "data.subset_rule=null",
]  # fmt: skip


@pytest.mark.slow
def test_stylegan2_lowshot_and_ada_resume_bit_identically(tmp_path: Path) -> None:
    def lowshot(out: Path, **kwargs: Any) -> Any:
        resolved = resolve_file(RECIPES / "lecam-diffaugment" / "obama-100.yaml", "smoke", SHAPES_TINY)
        return execute_run(resolved, seed=2, out=out, evaluate=False, handle_signals=False, tensorboard=False,
                           **kwargs)  # fmt: skip

    final = assert_resumes_exactly(lowshot, tmp_path / "lowshot", stop_at=16)
    anchors = final["method"]["state"]["anchors"]
    assert anchors["rule"] == "tf" and anchors["updates"] == 4 * 2  # 4 minibatches x 2 rounds

    def ada(out: Path) -> Any:
        resolved = resolve_file(RECIPES / "lecam-ada" / "ffhq-1k.yaml", "short",
                                [*SHAPES_TINY, "lecam-ada.ada.p_init=0.5", "data.mirror=none"])  # fmt: skip
        return execute_run(resolved, seed=2, out=out, evaluate=False, handle_signals=False, tensorboard=False)

    assert ada(tmp_path / "ada").status == "complete"
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "ada")["last"])
    assert {"anchors", "pipe", "heuristic"} == set(payload["method"]["state"])
    assert RunDir(tmp_path / "ada").read_stats()[-1]["losses"]["Loss/D/lecam"] >= 0


@pytest.mark.slow
def test_lottery_ticket_with_ada_and_lecam_resumes_bit_identically(tmp_path: Path) -> None:
    """Table 4's '+ ADA + R_LC' ticket on the tiny StyleGAN2: the chain's Stage I run is plain, Stage II
    finds it through find_section and trains with ADA and LeCam; stopped and resumed == straight."""
    recipe = RECIPES / "lottery" / "stylegan2" / "cifar100-10pct.yaml"
    plain = ["lottery.stage=find", "lottery.round=0", "lottery.policy=none", "lottery.advaug=none",
             "lottery.ada=null"]  # fmt: skip
    composed = ["lottery.round=0", "lottery.ada.p_init=0.5", "lottery.lecam={weight: 0.1}"]

    def run(out: Path, extra: list[str], **kwargs: Any) -> Any:
        resolved = resolve_file(recipe, "paper", [*SHAPES_TINY, "loss.r1_on=raw", *extra])
        return execute_run(resolved, seed=4, out=out, evaluate=False, handle_signals=False, tensorboard=False,
                           **kwargs)  # fmt: skip

    for root in ("straight", "resumed"):
        assert run(tmp_path / root / "find-0", plain).status == "complete"
    assert run(tmp_path / "straight" / "ticket", composed).status == "complete"
    assert run(tmp_path / "resumed" / "ticket", composed, stop_at_nimg=16).cur_nimg == 16
    assert run(tmp_path / "resumed" / "ticket", composed, resume="auto").status == "complete"
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight" / "ticket")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed" / "ticket")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "method", "rng"):
        assert_same(a[key], b[key], key)
    state = a["method"]["state"]
    assert state["lecam"]["rule"] == "tf" and state["ada"]["pipe"]["p"] >= 0
    losses = RunDir(tmp_path / "straight" / "ticket").read_stats()[-1]["losses"]
    assert {"Loss/D/lecam", "Loss/D/advaug"} <= set(losses)
