"""DigGAN: the gradient-gap penalty against closed forms on discriminators whose input gradient is
analytic, the 50/50 averaging with the previous round's stored norms, the first-D-step-only schedule in
the hinge objective, double backward into D's weights, exact resume with the stored norms, the recipes
(official lambdas, epochs and quirks), and smoke runs on both backbones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import assert_same
from torch import nn
from toy_gan import SHAPE, LinearD, ToyG, hinge_objective, hinge_recipe, method_context

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.errors import RecipeError
from degan_bench.methods import get_method
from degan_bench.methods.base import DStep
from degan_bench.methods.diggan import DigGANConfig, DigGANMethod
from degan_bench.recipes.loader import resolve_file, resolve_recipe
from degan_bench.training.execute import execute_run
from degan_bench.training.objectives.base import MinibatchInfo
from degan_bench.training.stats import StatsCollector


class QuadraticD(nn.Module):
    """D(x) = a/2 ||x||^2: grad_x D = a x, so ||grad|| = |a| ||x|| per sample."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x: torch.Tensor, c: Any = None) -> torch.Tensor:
        return 0.5 * self.a * x.flatten(1).square().sum(1, keepdim=True)


def make_method(D: nn.Module, **options: Any) -> DigGANMethod:
    return DigGANMethod(DigGANConfig(**{"weight": 10.0, **options}), method_context(D))


def d_step(D: nn.Module, fakes: torch.Tensor, reals: torch.Tensor, index: int = 0) -> DStep:
    """What the hinge objective hands the method: both halves are leaves that require grad."""
    fakes_aug, reals_aug = fakes.clone().requires_grad_(True), reals.clone().requires_grad_(True)
    logits = D(torch.cat([fakes_aug, reals_aug]))
    fake_logits, real_logits = logits.split([len(fakes), len(reals)])
    return DStep(
        reals=reals, reals_aug=reals_aug, real_logits=real_logits, real_features=None, G=nn.Identity(), D=D,
        cur_nimg=0, fakes=fakes, fakes_aug=fakes_aug, fake_logits=fake_logits, fake_features=None,
        d_step_index=index,
    )  # fmt: skip


def norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def penalize(method: DigGANMethod, step: DStep) -> dict[str, torch.Tensor]:
    """One D step of one round: the penalty, then the end of the step, which stores the norms."""
    terms = method.d_loss_terms(step)
    method.after_optimizer_step("D", [step])
    return terms


def test_linear_d_has_no_gap_and_no_gradient() -> None:
    torch.manual_seed(0)
    D = LinearD()
    method = make_method(D)
    penalty = penalize(method, d_step(D, torch.randn(4, *SHAPE), 3 * torch.randn(4, *SHAPE)))["diggan"]
    assert penalty.item() == pytest.approx(0.0, abs=1e-9)
    penalty.backward()
    assert D.w.grad is not None and D.w.grad.abs().max().item() < 1e-6
    # both stored norms are ||w|| for every sample
    torch.testing.assert_close(method.prev_fake, D.w.detach().norm().expand(4))
    torch.testing.assert_close(method.prev_real, D.w.detach().norm().expand(4))


def test_quadratic_d_penalty_and_its_double_backward_match_the_closed_form() -> None:
    torch.manual_seed(1)
    a, lam = 0.7, 10.0
    D = QuadraticD(a)
    fakes, reals = torch.randn(4, *SHAPE), 2 * torch.randn(4, *SHAPE)
    method = make_method(D, weight=lam)
    penalty = method.d_loss_terms(d_step(D, fakes, reals))["diggan"]
    gap2 = (norms(fakes) - norms(reals)).square().mean()
    torch.testing.assert_close(penalty, lam * a**2 * gap2)
    penalty.backward()  # d/da lam a^2 gap2 = 2 a lam gap2, only reachable through create_graph
    assert D.a.grad is not None
    torch.testing.assert_close(D.a.grad, 2 * a * lam * gap2)


def test_norms_are_averaged_half_and_half_with_the_previous_round() -> None:
    torch.manual_seed(2)
    a, lam = 1.5, 3.0
    D = QuadraticD(a)
    method = make_method(D, weight=lam)
    batches = [(torch.randn(4, *SHAPE), torch.randn(4, *SHAPE) * (k + 2)) for k in range(3)]
    expected_fake, expected_real = None, None
    for k, (fakes, reals) in enumerate(batches):
        penalty = penalize(method, d_step(D, fakes, reals))["diggan"]
        g_fake, g_real = a * norms(fakes), a * norms(reals)
        if k:  # the stored value is the previous *averaged* norm, so the average is recursive
            g_fake, g_real = 0.5 * g_fake + 0.5 * expected_fake, 0.5 * g_real + 0.5 * expected_real
        torch.testing.assert_close(penalty, lam * (g_fake - g_real).square().mean())
        torch.testing.assert_close(method.prev_fake, g_fake)
        torch.testing.assert_close(method.prev_real, g_real)
        expected_fake, expected_real = g_fake, g_real
    # prev_mix 0 uses the current norms only
    plain = make_method(D, weight=lam, prev_mix=0.0)
    for fakes, reals in batches:
        penalty = penalize(plain, d_step(D, fakes, reals))["diggan"]
    torch.testing.assert_close(penalty, lam * a**2 * (norms(fakes) - norms(reals)).square().mean())


def test_only_the_first_d_step_is_penalized_and_off_means_off() -> None:
    torch.manual_seed(3)
    D = QuadraticD(1.0)
    method = make_method(D)
    fakes, reals = torch.randn(4, *SHAPE), torch.randn(4, *SHAPE)
    for index in (1, 2, 3):
        assert method.d_loss_terms(d_step(D, fakes, reals, index)) == {}
    assert method.prev_fake is None  # later steps neither penalize nor touch the stored norms
    assert set(method.d_loss_terms(d_step(D, fakes, reals, 0))) == {"diggan"}
    for off in ({"enabled": False}, {"weight": 0.0}):
        quiet = make_method(D, **off)
        assert quiet.d_loss_terms(d_step(D, fakes, reals, 0)) == {}


def test_state_round_trip_continues_the_averaging_exactly() -> None:
    torch.manual_seed(4)
    D = QuadraticD(0.9)
    batches = [(torch.randn(4, *SHAPE), torch.randn(4, *SHAPE)) for _ in range(3)]
    straight = make_method(D)
    values = [penalize(straight, d_step(D, f, r))["diggan"] for f, r in batches]
    first = make_method(D)
    for f, r in batches[:2]:
        penalize(first, d_step(D, f, r))
    resumed = make_method(D)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(resumed.d_loss_terms(d_step(D, *batches[2]))["diggan"], values[2])
    fresh = make_method(D)  # without the stored norms the third penalty is another number
    assert not torch.equal(fresh.d_loss_terms(d_step(D, *batches[2]))["diggan"], values[2])
    # a different global batch cannot continue the stored norms
    with pytest.raises(ValueError, match=r"training\.batch"):
        resumed.d_loss_terms(d_step(D, torch.randn(8, *SHAPE), torch.randn(8, *SHAPE)))


def test_each_round_averages_with_its_own_chunk_of_the_previous_step() -> None:
    """Two rounds of 2 in one process: round r uses the stored norms of chunk r (the same samples' slot),
    and the norms of both rounds are stored together when the step ends, as 2 processes x 1 round would."""
    torch.manual_seed(6)
    a = 1.2
    D = QuadraticD(a)
    method = make_method(D)  # batch 4 (ctx.batch), rounds of 2
    steps = [[(torch.randn(2, *SHAPE), torch.randn(2, *SHAPE) * (k + 2)) for k in range(2)] for _ in range(2)]
    for fakes, reals in steps[0]:
        method.d_loss_terms(d_step(D, fakes, reals))
    assert method.prev_fake is None  # nothing is stored before the step ends
    method.after_optimizer_step("D", [])
    first_fake = torch.cat([a * norms(f) for f, _ in steps[0]])
    torch.testing.assert_close(method.prev_fake, first_fake)
    for r, (fakes, reals) in enumerate(steps[1]):
        method.d_loss_terms(d_step(D, fakes, reals))
        # round r averaged with chunk r of the previous step, not with the round before it
        expected = 0.5 * a * norms(fakes) + 0.5 * first_fake[2 * r : 2 * r + 2]
        torch.testing.assert_close(method._pending[-1][0], expected)


# -- inside the hinge objective (BigGAN's 4 D steps) ---------------------------------------------------
class Recording(DigGANMethod):
    name = "test-diggan-recording"

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        terms = super().d_loss_terms(step)
        self.calls.append((step.d_step_index, bool(terms)))
        return terms


def test_hinge_objective_penalizes_each_round_of_the_first_d_step_only() -> None:
    torch.manual_seed(5)
    G, D = ToyG(), QuadraticD(0.5)
    recipe = hinge_recipe("diggan", batch=6)
    ctx = method_context(D, G, G_ema=ToyG(), batch=6, batch_gpu=3, recipe=recipe)
    method = Recording(DigGANConfig(weight=5.0), ctx)
    method.calls = []
    objective = hinge_objective(method, G, D, recipe)
    stats = StatsCollector()
    for i in range(2):
        objective.train_minibatch(lambda: (torch.randn(6, *SHAPE), None), MinibatchInfo(i, 24 * i), stats)
    # 2 iterations x 4 D steps x 2 accumulation rounds; the penalty in both rounds of step 0 only
    assert method.calls == [(s, s == 0) for _ in range(2) for s in range(4) for _ in range(2)]
    # the stored norms cover the whole first D step (both rounds), in chunk order
    assert method.prev_fake is not None and method.prev_fake.shape == (6,)
    assert stats.means()["Loss/D/diggan"] > 0


# -- recipes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "dataset", "weight", "enabled", "epochs", "policy"),
    [
        ("diggan", "cifar10-100pct", 1000, True, 1000, ""),
        ("diggan", "cifar10-20pct", 5000, False, 5000, ""),  # the script omits --use_DigGAN
        ("diggan", "cifar10-10pct", 10000, True, 10000, ""),
        ("diggan", "cifar100-20pct", 5000, True, 5000, ""),
        ("diggan-diffaugment", "cifar10-100pct", 10, True, 1000, "translation,cutout"),
        ("diggan-diffaugment", "cifar100-20pct", 250, True, 10000, "translation,cutout"),
        ("diggan-diffaugment", "cifar100-10pct", 1000, True, 10000, "translation,cutout"),
    ],
)
def test_recipes_follow_the_official_scripts(method, dataset, weight, enabled, epochs, policy) -> None:
    resolved = resolve_recipe(method, dataset)
    cfg = resolved.method_config
    assert (cfg.weight, cfg.enabled, cfg.policy, cfg.prev_mix) == (weight, enabled, policy, 0.5)
    assert resolved.recipe.training.epochs == epochs and resolved.model.arch == "biggan"
    assert resolved.recipe.provenance.upstream_repo == "AilsaF/DigGAN"


def test_baselines_train_as_diggans_scripts_not_as_diffaugments() -> None:
    ours = resolve_recipe("diggan-baseline", "cifar10-10pct")
    theirs = resolve_recipe("biggan", "cifar10-10pct")
    assert (ours.recipe.training.epochs, theirs.recipe.training.epochs) == (10000, 5000)
    assert ours.hash != theirs.hash
    da = resolve_recipe("diggan-diffaugment-baseline", "cifar100-10pct")
    assert da.recipe.training.epochs == 10000 and da.method_config.policy == "translation,cutout"
    assert resolve_recipe("diggan-diffaugment-baseline", "cifar10-20pct").recipe.training.epochs == 5000
    assert resolve_recipe("diggan-baseline", "cifar100-100pct").recipe.training.epochs == 1000
    assert not get_method("diggan-baseline").needs_d_input_grad


def test_paper_intent_switch_and_bad_options() -> None:
    on = resolve_recipe("diggan", "cifar10-20pct", overrides=["diggan.enabled=true"])
    assert on.method_config.enabled and on.method_config.weight == 5000
    notes = " ".join(resolve_recipe("diggan", "cifar10-20pct").recipe.provenance.deviations)
    assert "--use_DigGAN" in notes and "--set diggan.enabled=true" in notes
    with pytest.raises(RecipeError, match="did you mean 'cutout'"):
        resolve_recipe("diggan", "cifar10-10pct", overrides=["diggan.policy=translation,cutuot"])
    with pytest.raises(RecipeError, match="use method 'diggan'"):
        resolve_recipe("diggan-diffaugment", "cifar10-10pct", overrides=["diggan-diffaugment.policy=''"])
    low = resolve_recipe("diggan", "obama-100")
    assert low.model.arch == "stylegan2" and low.method_config.policy == "color,translation,cutout"
    assert any("No official code" in d for d in low.recipe.provenance.deviations)


# -- smoke runs on both backbones ----------------------------------------------------------------------


# 4 channels, 5 iterations of 4 D steps x 5 reals; ticks end at 20, 60 and 100 reals.
BIGGAN_TINY = [
    "model.g_ch=4", "model.d_ch=4", "training.batch=5", "training.kimg=0.1", "training.kimg_per_tick=0.04",
    "training.ema_start_step=2", "training.grid_size=[10,1]",
]  # fmt: skip


def biggan_run(out: Path, **kwargs: Any):
    resolved = resolve_recipe("diggan-diffaugment", "cifar10-10pct", "smoke", BIGGAN_TINY)
    return execute_run(resolved, seed=1, out=out, evaluate=False, handle_signals=False, tensorboard=False,
                       **kwargs)  # fmt: skip


@pytest.mark.slow
def test_biggan_smoke_resumes_bit_identically_with_the_stored_norms(cifar: Path, tmp_path: Path) -> None:
    straight = biggan_run(tmp_path / "straight")
    assert straight is not None and straight.status == "complete"
    stopped = biggan_run(tmp_path / "resumed", stop_at_nimg=80)  # inside the tick 60 -> 100
    assert stopped is not None and stopped.cur_nimg == 80
    saved = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])["method"]["state"]
    assert saved["prev_fake"].shape == (5,) and saved["prev_real"].shape == (5,)
    resumed = biggan_run(tmp_path / "resumed", resume="auto")
    assert resumed is not None and resumed.status == "complete"
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "method", "rng"):
        assert_same(a[key], b[key], key)
    stats = RunDir(tmp_path / "straight").read_stats()
    assert stats[-1]["losses"]["Loss/D/diggan"] > 0
    assert [s["losses"] for s in stats] == [s["losses"] for s in RunDir(tmp_path / "resumed").read_stats()]


SHAPES = Path(__file__).resolve().parent.parent / "recipes" / "stylegan2" / "shapes-100.yaml"
STYLEGAN2_TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
    "model.channel_base=128", "model.channel_max=16", "training.batch=8", "training.batch_gpu=4",
    "training.kimg=0.024", "training.kimg_per_tick=0.016", "training.snapshot_ticks=1",
    "training.image_snapshot_ticks=100", "training.grid_size=[4,2]", "loss.r1_interval=1", "loss.r1_on=raw",
    "method=diggan", "diggan.weight=10", "diggan.policy=color,translation,cutout",
]  # fmt: skip


@pytest.mark.slow
def test_stylegan2_smoke_with_r1_on_the_raw_reals(tmp_path: Path) -> None:
    resolved = resolve_file(SHAPES, "smoke", STYLEGAN2_TINY)
    result = execute_run(resolved, seed=0, out=tmp_path / "sg2", evaluate=False, handle_signals=False,
                         tensorboard=False)  # fmt: skip
    assert result is not None and result.status == "complete"
    losses = RunDir(tmp_path / "sg2").read_stats()[-1]["losses"]
    assert losses["Loss/D/diggan"] > 0 and losses["Loss/Dreg/r1_penalty"] > 0
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "sg2")["last"])["method"]["state"]
    assert state["prev_fake"].shape == (8,)  # the global batch: both rounds of 4


# -- the DigGAN CIFAR table ----------------------------------------------------------------------------
def test_cifar_table_is_diggans_rows_with_diggans_own_baselines() -> None:
    from degan_bench.results.reported import load_reported
    from degan_bench.results.tables import build_table, load_table

    table = load_table("diggan-cifar")
    rows = [(r.method, r.label, r.source.paper if r.source else None) for r in table.rows]
    assert rows == [
        ("diggan-baseline", "BigGAN", "diggan"),
        ("diggan", "BigGAN + DigGAN", "diggan"),
        ("diggan-diffaugment-baseline", "BigGAN + DA", "diggan"),
        ("diggan-diffaugment", "BigGAN + DA + DigGAN", "diggan"),
        ("lecam-diffaugment", "BigGAN + DA + LeCam", "lecam"),
    ]
    cells = build_table(table, [], load_reported()).cells
    ten = cells[(cells.dataset == "cifar10-10pct") & (cells.protocol == "is10k")].set_index("method")
    for method in ("diggan-baseline", "diggan", "diggan-diffaugment-baseline", "diggan-diffaugment"):
        assert ten.loc[method, "recipe_status"] == "ok"
        assert ten.loc[method, "recipe_hash"] == resolve_recipe(method, "cifar10-10pct").hash
        assert resolve_recipe(method, "cifar10-10pct").recipe.training.epochs == 10000
    # no DiffAugment number stands in for DigGAN's baselines; the aggregator's DigGAN row is DA + DigGAN
    assert ten.loc[["diggan-baseline", "diggan", "diggan-diffaugment-baseline"], "reported"].isna().all()
    assert ten.loc["diggan-diffaugment", "reported"] == 8.32
    assert set(cells[cells.reported.notna()].reported_paper) == {"diggan", "lecam"}


# -- two processes: the stored norms span the global batch ---------------------------------------------
WORKER = """
import sys
from pathlib import Path
from degan_bench.recipes.loader import resolve_file
from degan_bench.training.execute import execute_run

recipe = resolve_file(Path(sys.argv[2]), "smoke", sys.argv[3:])
execute_run(recipe, seed=0, out=Path(sys.argv[1]), device="cpu", evaluate=False, handle_signals=False,
            tensorboard=False)
"""


@pytest.mark.slow
def test_two_processes_store_every_processs_norms(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    sets = [
        "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
        "model.channel_base=128", "model.channel_max=16", "training.batch=8", "training.batch_gpu=2",
        "training.kimg=0.032", "training.kimg_per_tick=0.016", "training.snapshot_ticks=1",
        "loss.r1_interval=2", "method=diggan", "diggan.weight=10", "diggan.policy=translation,cutout",
    ]  # fmt: skip

    # One launch (~25 s on 2 cores): exact resume itself is the single-process test above; here the point
    # is that rank 0's checkpoint holds the norms of both processes (2 x 2 rounds x batch_gpu 2), which
    # every process reloads whole and slices by its chunks.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(tmp_path / "run"), str(SHAPES), *sets]  # fmt: skip
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")["last"])
    assert payload["cur_nimg"] == 32 and len(payload["rng"]) == 2
    state = payload["method"]["state"]
    assert state["prev_fake"].shape == state["prev_real"].shape == (8,)
    assert torch.isfinite(state["prev_fake"]).all() and (state["prev_real"] > 0).all()
