"""The BigGAN objective (loss.kind hinge) on toy networks whose outputs are known in closed form: hinge
values, the D:G step ratio and the reals each D step sees, uniform class labels, G_ema per G step from
the start iteration on each code base's counter, and the per-half leaves for methods that need grad_x D."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from degan_bench.methods.base import Method, MethodContext
from degan_bench.recipes.schema import LossConfig, Recipe, TrainingConfig
from degan_bench.training.ema import fixed_decay
from degan_bench.training.objectives import get_objective
from degan_bench.training.objectives.base import MinibatchInfo, ObjectiveContext
from degan_bench.training.objectives.hinge import hinge_d_loss, hinge_g_loss
from degan_bench.training.stats import StatsCollector

RES, Z, C = 4, 3, 5


class ToyG(nn.Module):
    """Conditional: images = linear(z) + class embedding; a buffer so the state-wide EMA is visible."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim, self.c_dim = Z, C
        self.fc = nn.Linear(Z, 3 * RES * RES)
        self.embed = nn.Linear(C, 3 * RES * RES, bias=False)
        self.register_buffer("stat", torch.zeros(1))

    def forward(self, z, c, **_kwargs):
        if self.training:
            self.stat.add_(1.0)
        return (self.fc(z) + self.embed(c)).view(-1, 3, RES, RES)


class ToyD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3 * RES * RES) * 0.1)
        self.proj = nn.Parameter(torch.randn(C, 3 * RES * RES) * 0.1)

    def forward(self, x, c, return_features=False):
        h = x.flatten(1)
        logits = (h * self.w).sum(1, keepdim=True) + ((c @ self.proj) * h).sum(1, keepdim=True)
        return (logits, h) if return_features else logits


class Recorder(Method):
    name = "test-recorder"

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.calls: list[tuple[str, int]] = []
        self.d_steps: list = []

    def after_optimizer_step(self, phase, steps):
        self.calls.append((phase, len(steps)))
        self.d_steps.extend(s for s in steps if phase == "D")


class InputGrad(Recorder):
    name = "test-input-grad"
    needs_d_input_grad = True

    def d_loss_terms(self, step):
        # what DigGAN does: per-half gradients of the summed logits w.r.t. the augmented D inputs
        grads = torch.autograd.grad(
            step.fake_logits.sum() + step.real_logits.sum(),
            [step.fakes_aug, step.reals_aug],
            create_graph=True,
        )
        self.grads = [g.detach() for g in grads]
        D = step.D  # ToyD is linear in x per class: grad_x D(x, c) = w + proj[c] (weights before the step)
        self.expected = [(D.w + cond @ D.proj).detach() for cond in (step.c, step.real_c)]
        return {"gap": (grads[0].flatten(1).norm(dim=1) - grads[1].flatten(1).norm(dim=1)).square().mean()}


def build(
    method_cls=Recorder, d_steps=4, batch=6, batch_gpu=3, ema_decay=0.5, ema_start_step=2, ema_itr_base=0
):
    torch.manual_seed(0)
    G, D = ToyG(), ToyD()
    G_ema = ToyG().eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    recipe = Recipe(
        method="biggan",
        dataset="cifar10",
        purpose="demo",
        loss=LossConfig(kind="hinge", d_steps=d_steps, r1_gamma=0.0, pl_weight=0.0),
        training=TrainingConfig(
            batch=batch,
            batch_gpu=batch_gpu,
            ema_decay=ema_decay,
            ema_start_step=ema_start_step,
            ema_itr_base=ema_itr_base,
        ),
    )
    ctx = MethodContext(
        G=G, D=D, G_ema=G_ema, device=torch.device("cpu"), resolution=RES, num_images=100, batch=batch,
        batch_gpu=batch_gpu, total_kimg=1.0, g_lr=2e-4, d_lr=2e-4, betas=(0.0, 0.999), recipe=recipe,
        objective="hinge",
    )  # fmt: skip
    method = method_cls(None, ctx)
    objective = get_objective("hinge")(
        ObjectiveContext(
            G=G,
            D=D,
            G_ema=G_ema,
            method=method,
            recipe=recipe,
            device=torch.device("cpu"),
            batch_gpu=batch_gpu,
            rounds=batch // batch_gpu,
            world_size=1,
            autocast=contextlib.nullcontext,
            scaler=None,
            labels=None,
        )
    )
    return objective, method, G, D, G_ema


class Reals:
    """A real source that numbers its batches, so each D step's reals can be identified."""

    def __init__(self, batch: int) -> None:
        self.batch, self.count = batch, 0

    def __call__(self):
        self.count += 1
        images = torch.full((self.batch, 3, RES, RES), float(self.count) / 10)
        return images, torch.arange(self.batch) % C


def test_hinge_values_match_the_closed_form() -> None:
    real = torch.tensor([[2.0], [0.5], [-1.0]])
    fake = torch.tensor([[-2.0], [0.0], [3.0]])
    loss_real, loss_fake = hinge_d_loss(real, fake)
    assert float(loss_real) == pytest.approx((0 + 0.5 + 2.0) / 3)  # mean relu(1 - D(x))
    assert float(loss_fake) == pytest.approx((0 + 1.0 + 4.0) / 3)  # mean relu(1 + D(G(z)))
    assert float(hinge_g_loss(fake)) == pytest.approx(-1.0 / 3)


def test_four_d_steps_on_their_own_reals_then_one_g_step() -> None:
    objective, method, _G, _D, _G_ema = build()
    reals = Reals(6)
    stats = StatsCollector()
    consumed = objective.train_minibatch(reals, MinibatchInfo(batch_idx=0, cur_nimg=0), stats)
    assert consumed == 24 and objective.reals_per_minibatch() == 24 and reals.count == 4
    assert method.calls == [("D", 2), ("D", 2), ("D", 2), ("D", 2), ("G", 2)]  # 2 rounds of batch_gpu 3
    # D step k trains on the k-th batch of reals, and reports its index
    assert [(s.d_step_index, float(s.reals[0, 0, 0, 0])) for s in method.d_steps[::2]] == [
        (k, pytest.approx((k + 1) / 10)) for k in range(4)
    ]
    means = stats.means()
    assert means["Loss/D/loss"] == pytest.approx(means["Loss/D/real"] + means["Loss/D/fake"], rel=1e-6)


def test_d_loss_reported_is_hinge_of_the_d_logits() -> None:
    objective, method, *_ = build(d_steps=1, batch=3, batch_gpu=3)
    stats = StatsCollector()
    objective.train_minibatch(Reals(3), MinibatchInfo(0, 0), stats)
    step = method.d_steps[0]
    real, fake = hinge_d_loss(step.real_logits.detach(), step.fake_logits.detach())
    assert stats.means()["Loss/D/loss"] == pytest.approx(float(real + fake), rel=1e-6)


def test_fake_labels_are_uniform_over_classes() -> None:
    objective, _method, *_ = build()
    labels = objective.draw_c(20000).argmax(1)
    counts = torch.bincount(labels, minlength=C).float() / 20000
    assert torch.all((counts - 1 / C).abs() < 0.015)


@pytest.mark.parametrize(
    ("itr_base", "averaged"),
    [
        # DiffAugment/DigGAN train.py, StudioGAN: ema.update(itr) with itr = 0, 1, 2, ... and `if itr and itr
        # < start`: step 1 averages (itr 0 is falsy), steps 2..start copy, averaging from step start + 1.
        (0, [True, False, False, True, True, True]),
        # upstream BigGAN-PyTorch increments itr before the step: steps 1..start - 1 copy.
        (1, [False, False, True, True, True, True]),
    ],
)
def test_g_ema_schedule_follows_the_code_bases_iteration_counter(itr_base: int, averaged: list[bool]) -> None:
    assert [fixed_decay(step, 0.5, 3, itr_base) == 0.5 for step in range(1, 7)] == averaged
    assert [fixed_decay(step, 0.5, 3, itr_base) for step in range(1, 7)] == [
        0.5 if a else 0.0 for a in averaged
    ]
    assert all(fixed_decay(step, 0.5, 0, itr_base) == 0.5 for step in range(1, 4))  # SNGAN: from step 1


@pytest.mark.parametrize("itr_base", [0, 1])
def test_g_ema_averages_the_whole_state_on_the_schedule(itr_base: int) -> None:
    objective, _method, G, _D, G_ema = build(ema_decay=0.5, ema_start_step=3, ema_itr_base=itr_base)
    reals = Reals(6)
    expected = {k: v.clone() for k, v in G_ema.state_dict().items()}  # G_ema starts as a copy of G
    for batch_idx in range(5):
        objective.train_minibatch(
            reals, MinibatchInfo(batch_idx=batch_idx, cur_nimg=24 * batch_idx), StatsCollector()
        )
        decay = fixed_decay(batch_idx + 1, 0.5, 3, itr_base)
        assert decay in (0.0, 0.5)
        expected = {k: expected[k] * decay + v * (1 - decay) for k, v in G.state_dict().items()}
        for key, value in G_ema.state_dict().items():
            torch.testing.assert_close(value, expected[key], msg=f"{key} after G step {batch_idx + 1}")
    assert float(G_ema.stat) != float(G.stat)  # buffers are averaged too, as BigGAN-PyTorch's ema does


def test_input_grad_methods_get_leaves_that_d_consumed() -> None:
    objective, method, *_ = build(method_cls=InputGrad, d_steps=1, batch=3, batch_gpu=3)
    objective.train_minibatch(Reals(3), MinibatchInfo(0, 0), StatsCollector())
    step = method.d_steps[0]
    assert step.fakes_aug.is_leaf and step.fakes_aug.requires_grad
    assert step.reals_aug.is_leaf and step.reals_aug.requires_grad
    for grad, expected in zip(method.grads, method.expected, strict=True):
        torch.testing.assert_close(grad, expected.view_as(grad))


def test_hinge_refuses_stylegan2_regularizers() -> None:
    from degan_bench.errors import RecipeError

    with pytest.raises(RecipeError, match=r"r1_gamma"):
        objective, *_ = build()
        recipe = objective.ctx.recipe
        recipe.loss.r1_gamma = 10.0
        get_objective("hinge")(objective.ctx)
