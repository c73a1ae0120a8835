"""CR-BigGAN: the consistency penalty against closed forms on a linear D, the CR pair each --CR_augment
makes (flip + translation of the DiffAugmented reals, or the raw reals), the extra reals scored in the same
D pass of every D step (and in their own pass under StyleGAN2's objective), the recipes against the official
scripts, a smoke run through the CLI, and exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import assert_same
from torch import nn
from toy_gan import SHAPE, LinearD, ToyG, hinge_recipe, method_context
from toy_gan import hinge_objective as toy_hinge_objective
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.augment.diffaugment import diff_augment
from degan_bench.cli.app import app
from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.errors import RecipeError
from degan_bench.methods.base import DStep, Method
from degan_bench.methods.cr import CRBigGANMethod, CRConfig, parse_cr_augment, random_flip
from degan_bench.recipes.loader import resolve_file, resolve_recipe
from degan_bench.recipes.schema import LossConfig
from degan_bench.training.execute import execute_run
from degan_bench.training.objectives.base import MinibatchInfo
from degan_bench.training.objectives.stylegan2 import Networks, StyleGAN2Loss
from degan_bench.training.stats import StatsCollector

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def make(D: nn.Module, **options: Any) -> CRBigGANMethod:
    return CRBigGANMethod(CRConfig(**options), method_context(D))


def d_step(D: LinearD, reals: torch.Tensor, extra: torch.Tensor) -> DStep:
    logits = D(torch.cat([reals, extra]))
    real_logits, extra_logits = logits.split([len(reals), len(extra)])
    return DStep(
        reals=reals, reals_aug=reals, real_logits=real_logits, real_features=None, G=nn.Identity(), D=D,
        cur_nimg=0, extra_logits={"cr": extra_logits},
    )  # fmt: skip


# -- the penalty in closed form ----------------------------------------------------------------------------
def test_penalty_and_its_gradient_match_the_closed_form_with_both_sides_differentiated() -> None:
    torch.manual_seed(0)
    D, lam = LinearD(), 10.0
    reals, other = torch.randn(5, *SHAPE), torch.randn(5, *SHAPE)
    penalty = make(D, weight=lam).d_loss_terms(d_step(D, reals, other))["cr"]
    diff = (other - reals).flatten(1)  # D(x') - D(x) = w . (x' - x)
    gap = diff @ D.w.detach().flatten()
    torch.testing.assert_close(penalty, lam * gap.square().mean())
    penalty.backward()
    # d/dw lam mean((w.(x'-x))^2) = 2 lam mean(gap (x'-x)): needs the gradient through *both* logits
    expected = 2 * lam * (gap[:, None] * diff).mean(0)
    torch.testing.assert_close(D.w.grad.flatten(), expected)


def test_pairs_follow_cr_augment() -> None:
    torch.manual_seed(1)
    D = LinearD()
    reals, reals_aug, c = torch.randn(6, *SHAPE), torch.randn(6, *SHAPE), torch.zeros(6, 0)
    # --CR_augment "": the un-augmented reals themselves (BigGAN.py:464-465)
    images, labels = make(D, augment="").extra_d_inputs(reals, reals_aug, c)["cr"]
    assert images is reals and labels is c
    # "flip": each augmented real or its mirror, drawn as the official coin
    torch.manual_seed(2)
    flipped, _ = make(D, augment="flip").extra_d_inputs(reals, reals_aug, c)["cr"]
    for got, x in zip(flipped, reals_aug, strict=True):
        assert torch.equal(got, x) or torch.equal(got, x.flip(2))
    torch.manual_seed(2)
    coin = torch.randint(0, 2, size=[6, 1, 1, 1])
    assert torch.equal(flipped, torch.where(coin > 0, reals_aug.flip(3), reals_aug))
    # "flip,translation": the flip, then DiffAugment's translation, on the DiffAugmented reals
    torch.manual_seed(3)
    got, _ = make(D, augment="flip,translation").extra_d_inputs(reals, reals_aug, c)["cr"]
    torch.manual_seed(3)
    assert torch.equal(got, diff_augment(random_flip(reals_aug), "translation"))
    # lambda 0: no extra images, so D's passes are the plain ones
    assert make(D, weight=0.0).extra_d_inputs(reals, reals_aug, c) == {}


def test_cr_augment_parsing() -> None:
    assert parse_cr_augment("flip,translation") == (True, ("translation",))
    assert parse_cr_augment("") == (False, ())
    assert parse_cr_augment("flip") == (True, ())
    assert parse_cr_augment("translation,cutout") == (False, ("translation", "cutout"))
    with pytest.raises(ValueError, match="may only come first"):
        parse_cr_augment("translation,flip")
    with pytest.raises(RecipeError, match="did you mean 'translation'"):
        resolve_recipe("biggan-cr", "cifar10-10pct", overrides=["biggan-cr.augment=flip,translaton"])
    with pytest.raises(RecipeError, match="use method 'biggan-cr'"):
        resolve_recipe(
            "biggan-cr-diffaugment", "cifar10-10pct", overrides=["biggan-cr-diffaugment.policy=''"]
        )


# -- inside the objectives ---------------------------------------------------------------------------------
class RecordingCR(CRBigGANMethod):
    name = "test-cr-recording"

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        terms = super().d_loss_terms(step)
        self.calls.append((step.d_step_index, set(terms), tuple(step.extra_logits["cr"].shape)))
        return terms


def hinge_objective(method_cls: type[Method], options: Any, D: LinearD):
    torch.manual_seed(5)
    G = ToyG()
    recipe = hinge_recipe("biggan-cr", batch=6)
    method = method_cls(options, method_context(D, G, recipe=recipe))
    return toy_hinge_objective(method, G, D, recipe), method


def test_every_d_step_scores_the_cr_reals_in_its_one_d_pass() -> None:
    D = LinearD()
    objective, method = hinge_objective(RecordingCR, CRConfig(weight=10.0), D)
    method.calls = []
    stats = StatsCollector()
    objective.train_minibatch(lambda: (torch.randn(6, *SHAPE), None), MinibatchInfo(0, 0), stats)
    # 4 D steps x 2 rounds, each penalized, each with one D pass over [fakes; reals; CR reals] (3 x 3);
    # the G step's passes (2 rounds of 3 fakes) carry no CR reals.
    assert method.calls == [(s, {"cr"}, (3, 1)) for s in range(4) for _ in range(2)]
    assert D.calls == [9] * 8 + [3] * 2
    assert stats.means()["Loss/D/cr"] > 0 and "Loss/G/cr" not in stats.means()
    plain_D = LinearD()
    plain, _ = hinge_objective(Method, None, plain_D)
    plain.train_minibatch(lambda: (torch.randn(6, *SHAPE), None), MinibatchInfo(0, 0), StatsCollector())
    assert plain_D.calls == [6] * 8 + [3] * 2  # no extra inputs: the passes are [fakes; reals] as before


def test_separate_d_forward_scores_the_extra_reals_with_the_reals() -> None:
    D = LinearD()
    objective, method = hinge_objective(RecordingCR, CRConfig(weight=1.0), D)
    objective.lcfg.d_forward = "separate"
    method.calls = []
    objective.train_minibatch(lambda: (torch.randn(6, *SHAPE), None), MinibatchInfo(0, 0), StatsCollector())
    assert D.calls[:2] == [6, 3]  # [reals; CR reals], then the fakes
    assert all(call[1] == {"cr"} for call in method.calls)


class ToySG2(nn.Module):
    """The StyleGAN2 G contract with a linear synthesis."""

    z_dim, w_dim, c_dim, num_ws, img_resolution = 4, 4, 0, 2, 4

    def __init__(self) -> None:
        super().__init__()
        self.map = nn.Linear(4, 4)
        self.to_img = nn.Linear(4, 48)
        self.register_buffer("w_avg", torch.zeros(4))

    def mapping(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        return self.map(z)[:, None].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="random"):
        return self.to_img(ws.mean(1)).view(-1, *SHAPE)


class TripledReals(Method):
    name = "test-tripled-reals"

    def extra_d_inputs(self, reals, reals_aug, real_c):
        return {"tripled": (reals_aug * 3, real_c)}


@pytest.mark.parametrize("method_cls", [Method, TripledReals])
def test_stylegan2_objective_scores_extra_images_in_a_pass_of_their_own(method_cls: type[Method]) -> None:
    torch.manual_seed(0)
    G, D = ToySG2(), LinearD()
    loss = StyleGAN2Loss(Networks(G, D, G.synthesis, D), method_cls(None, method_context(D, G, "ns_r1")),
                         LossConfig(r1_gamma=1.0, style_mixing_prob=0.0))  # fmt: skip
    reals, c = torch.randn(4, *SHAPE), torch.zeros(4, 0)
    result = loss.d_main(reals, c, torch.randn(4, 4), c, gain=1.0, cur_nimg=0, with_r1=False, r1_gain=1.0)
    step = result.step
    assert isinstance(step, DStep)
    if method_cls is Method:
        assert step.extra_logits == {} and D.calls == [4, 4]
    else:
        assert D.calls == [4, 4, 4]
        torch.testing.assert_close(step.extra_logits["tripled"], 3 * step.real_logits)


# -- recipes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "dataset", "policy", "augment", "epochs"),
    [
        # scripts/cr-biggan-cifar*.sh: --CR 10, default --CR_augment flip,translation (utils.py:143), no DA
        ("biggan-cr", "cifar10-100pct", "", "flip,translation", 1000),
        ("biggan-cr", "cifar10-10pct", "", "flip,translation", 5000),
        ("biggan-cr", "cifar100-100pct", "", "flip,translation", 2000),
        # scripts/DiffAugment-cr-biggan-cifar*-0.{1,2}.sh: --DiffAugment translation,cutout --CR_augment ""
        ("biggan-cr-diffaugment", "cifar10-20pct", "translation,cutout", "", 5000),
        ("biggan-cr-diffaugment", "cifar100-10pct", "translation,cutout", "", 5000),
        # scripts/DiffAugment-cr-biggan-cifar{10,100}.sh: --DiffAugment cutout --CR 10 (default --CR_augment)
        ("biggan-cr-diffaugment", "cifar10-100pct", "cutout", "flip,translation", 1000),
        ("biggan-cr-diffaugment", "cifar100-100pct", "cutout", "flip,translation", 2000),
    ],
)
def test_recipes_follow_the_official_scripts(method, dataset, policy, augment, epochs) -> None:
    resolved = resolve_recipe(method, dataset)
    cfg, recipe = resolved.method_config, resolved.recipe
    assert (cfg.weight, cfg.policy, cfg.augment) == (10.0, policy, augment)
    assert recipe.training.epochs == epochs and resolved.model.arch == "biggan"
    assert (recipe.training.batch, recipe.loss.d_steps, recipe.training.ema_start_step) == (50, 4, 1000)
    assert resolved.model.c_dim == (100 if dataset.startswith("cifar100") else 10)
    assert recipe.provenance.upstream_repo == "mit-han-lab/data-efficient-gans"
    script = recipe.provenance.upstream_command
    assert "--CR 10" in script and f"--num_epochs {epochs}" in script


def test_table_rows_are_trainable() -> None:
    from degan_bench.results.reported import load_reported
    from degan_bench.results.tables import build_table, load_table

    cells = build_table(load_table("diffaugment-cifar-biggan"), [], load_reported()).cells
    cr = cells[cells["method"].isin(["biggan-cr", "biggan-cr-diffaugment"])]
    assert len(cr) == 24 and (cr["recipe_status"] == "ok").all() and cr["reported"].notna().all()
    ten = cr[(cr["dataset"] == "cifar10-10pct") & (cr["protocol"] == "fid10k_test")].set_index("method")
    assert ten.loc["biggan-cr", "reported"] == 37.45 and ten.loc["biggan-cr-diffaugment", "reported"] == 18.70


# -- real loop on CPU -------------------------------------------------------------------------------------
def test_smoke_through_the_cli(cifar: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # the shipped smoke preset, cut to 4 channels and 3 iterations
    sets = ["--set", "model.g_ch=4", "--set", "model.d_ch=4", "--set", "training.kimg=0.12"]
    result = CliRunner().invoke(
        app, ["run", "biggan-cr", "cifar10-10pct", "--preset", "smoke", "--device", "cpu", "--no-eval",
              "--out", str(out), *sets],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    losses = RunDir(out).read_stats()[-1]["losses"]
    assert losses["Loss/D/cr"] > 0 and "Loss/G/cr" not in losses


TINY = [
    "model.g_ch=4", "model.d_ch=4", "training.batch=5", "training.kimg=0.1", "training.kimg_per_tick=0.04",
    "training.ema_start_step=2", "training.grid_size=[10,1]",
]  # fmt: skip


def tiny_run(out: Path, *extra: str, **kwargs: Any):
    # the 100 % recipe (cutout, then flip + translation of it) on the 10 % data the tests prepare
    overrides = [*TINY, "dataset=cifar10-10pct", *extra]
    resolved = resolve_file(RECIPES / "biggan-cr-diffaugment" / "cifar10-100pct.yaml", "smoke", overrides)
    return execute_run(resolved, seed=1, out=out, evaluate=False, handle_signals=False, tensorboard=False,
                       **kwargs)  # fmt: skip


@pytest.mark.slow
def test_resume_is_bit_identical(cifar: Path, tmp_path: Path) -> None:
    straight = tiny_run(tmp_path / "straight")
    assert straight is not None and straight.status == "complete"
    stopped = tiny_run(tmp_path / "resumed", stop_at_nimg=80)
    assert stopped is not None and stopped.cur_nimg == 80
    resumed = tiny_run(tmp_path / "resumed", resume="auto")
    assert resumed is not None and resumed.status == "complete"
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "method", "rng"):
        assert_same(a[key], b[key], key)
    stats = RunDir(tmp_path / "straight").read_stats()
    assert stats[-1]["losses"]["Loss/D/cr"] > 0
    assert [s["losses"] for s in stats] == [s["losses"] for s in RunDir(tmp_path / "resumed").read_stats()]
