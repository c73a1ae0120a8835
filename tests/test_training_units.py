"""Units of the training loop: loss values on fixed inputs, R1 variants, EMA, sampler, checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.methods.base import Method, MethodContext
from degan_bench.recipes.schema import LossConfig
from degan_bench.training.ema import ema_beta, update_ema
from degan_bench.training.objectives.stylegan2 import Networks, StyleGAN2Loss
from degan_bench.training.sampler import RealImageSampler


class ToyG(nn.Module):
    """Satisfies the G contract with a linear synthesis, so gradients are known in closed form."""

    def __init__(self, z_dim: int = 4, res: int = 4) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.c_dim, self.num_ws, self.img_resolution = z_dim, z_dim, 0, 2, res
        self.map = nn.Linear(z_dim, z_dim)
        self.to_img = nn.Linear(z_dim, 3 * res * res)
        self.register_buffer("w_avg", torch.zeros(z_dim))

    def mapping(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        w = self.map(z)
        if update_w_avg:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.995))
        return w[:, None].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="random"):
        return self.to_img(ws.mean(1)).view(-1, 3, self.img_resolution, self.img_resolution)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random"):
        return self.synthesis(self.mapping(z, c), noise_mode)


class LinearD(nn.Module):
    def __init__(self, res: int = 4) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3 * res * res) * 0.1)

    def forward(self, x, c=None, return_features=False):
        logits = (x.flatten(1) * self.w).sum(1, keepdim=True)
        return (logits, x.flatten(1)) if return_features else logits


class Doubling(Method):
    name = "test-doubling"

    def augment(self, images):
        return images * 2.0


def make_loss(
    r1_on: str, method_cls: type[Method] = Method, gamma: float = 10.0
) -> tuple[StyleGAN2Loss, ToyG, LinearD]:
    torch.manual_seed(0)
    G, D = ToyG(), LinearD()
    ctx = MethodContext(
        G=G,
        D=D,
        G_ema=G,
        device=torch.device("cpu"),
        resolution=4,
        num_images=4,
        batch=4,
        batch_gpu=4,
        total_kimg=1.0,
        g_lr=0.002,
        d_lr=0.002,
        betas=(0.0, 0.99),
    )
    cfg = LossConfig(r1_gamma=gamma, r1_on=r1_on, style_mixing_prob=0.0)
    return StyleGAN2Loss(Networks(G, D, G.synthesis, D), method_cls(None, ctx), cfg), G, D


def test_d_loss_and_r1_match_closed_form() -> None:
    loss, G, D = make_loss("raw")
    reals = torch.randn(4, 3, 4, 4)
    z = torch.randn(4, 4)
    c = torch.zeros(4, 0)
    torch.manual_seed(1)
    result = loss.d_main(reals, c, z, c, gain=1.0, cur_nimg=0, with_r1=True, r1_gain=1.0)
    torch.manual_seed(1)
    with torch.no_grad():
        fakes = G.synthesis(G.mapping(z, c))
        expected = F.softplus(D(fakes)).mean() + F.softplus(-D(reals)).mean()
    assert float(result.stats["Loss/D/loss"]) == pytest.approx(float(expected), rel=1e-6)
    # D is linear: grad_x D(x) = w for every sample, so the R1 penalty is |w|^2.
    w_norm2 = float(D.w.detach().square().sum())
    assert float(result.stats["Loss/Dreg/r1_penalty"]) == pytest.approx(w_norm2, rel=1e-5)
    # The gradient of the total D loss w.r.t. w includes d/dw (gamma/2 |w|^2) = gamma * w.
    assert D.w.grad is not None


def test_r1_raw_differentiates_through_the_augmentation() -> None:
    raw, _G, D = make_loss("raw", Doubling)
    augmented, _G2, D2 = make_loss("augmented", Doubling)
    reals = torch.randn(4, 3, 4, 4)
    c = torch.zeros(4, 0)
    r_raw = raw.d_r1(reals, c, gain=1.0, r1_gain=1.0, cur_nimg=0)
    r_aug = augmented.d_r1(reals, c, gain=1.0, r1_gain=1.0, cur_nimg=0)
    w2 = float(D.w.detach().square().sum())
    assert float(D2.w.detach().square().sum()) == pytest.approx(w2)
    # d D(2x) / dx = 2w  ->  penalty 4|w|^2 ; d D(y) / dy at y = 2x  ->  |w|^2
    assert float(r_raw.stats["Loss/Dreg/r1_penalty"]) == pytest.approx(4 * w2, rel=1e-5)
    assert float(r_aug.stats["Loss/Dreg/r1_penalty"]) == pytest.approx(w2, rel=1e-5)
    assert r_raw.step.phase == "reg" and r_raw.step.fakes is None


def test_g_loss_is_nonsaturating_and_reaches_g() -> None:
    loss, G, D = make_loss("raw")
    z = torch.randn(4, 4)
    c = torch.zeros(4, 0)
    D.requires_grad_(False)
    result = loss.g_main(z, c, gain=1.0, cur_nimg=0)
    with torch.no_grad():
        expected = F.softplus(-D(G(z))).mean()
    assert float(result.stats["Loss/G/loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert G.to_img.weight.grad is not None and G.map.weight.grad is not None
    assert D.w.grad is None


def test_path_length_target_keeps_its_gradient_through_the_batch_mean() -> None:
    # stylegan2-ada: pl_mean = lerp(running, lengths.mean(), decay); penalty = (lengths - pl_mean)^2 with
    # pl_mean *not* detached; only the stored running value is.
    loss, G, _D = make_loss("raw")
    loss.cfg.pl_weight, loss.cfg.pl_decay = 2.0, 0.5  # a large decay makes the mean's gradient visible
    loss.pl_mean.fill_(0.3)
    z, c = torch.randn(4, 4), torch.zeros(4, 0)
    torch.manual_seed(5)
    loss.g_path_length(z, c, gain=1.0)
    got = G.to_img.weight.grad.clone()
    assert float(loss.pl_mean) != 0.3 and not loss.pl_mean.requires_grad

    def by_hand(detach: bool) -> torch.Tensor:
        G.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        fakes, ws = loss.generate(z, c, fast=False)
        noise = torch.randn_like(fakes) / 4.0  # sqrt(4 * 4)
        (grads,) = torch.autograd.grad((fakes * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        mean = lengths.mean().detach() if detach else lengths.mean()
        target = torch.tensor(0.3).lerp(mean, 0.5)
        ((lengths - target).square().mean() * 2.0).backward()
        return G.to_img.weight.grad.clone()

    torch.testing.assert_close(got, by_hand(detach=False))
    assert not torch.allclose(got, by_hand(detach=True))


def _mixing_structure(mode: str, prob: float, n: int = 256) -> list[int]:
    """Per sample, how many leading layers come from the first latents (num_ws = no mixing)."""
    loss, G, _D = make_loss("raw")
    G.num_ws = 6
    loss.cfg.style_mixing, loss.cfg.style_mixing_prob = mode, prob
    torch.manual_seed(2)
    z = torch.randn(n, 4)
    _images, ws = loss.generate(z, torch.zeros(n, 0))
    first = G.mapping(z, None)
    cutoffs = []
    for i in range(n):
        same = [bool(torch.equal(ws[i, k], first[i, k])) for k in range(6)]
        k = same.index(False) if False in same else 6
        assert all(same[:k]) and not any(same[k:])  # a prefix from z, the rest from the second latents
        cutoffs.append(k)
    return cutoffs


def test_style_mixing_per_sample_draws_each_samples_decision_and_cutoff() -> None:
    cutoffs = _mixing_structure("per_sample", 0.5)
    unmixed = sum(k == 6 for k in cutoffs) / len(cutoffs)
    assert 0.35 < unmixed < 0.65  # p = 0.5 per sample (binomial sd 0.03)
    assert set(cutoffs) == {1, 2, 3, 4, 5, 6}  # cutoffs uniform in [1, num_ws) per mixed sample
    batch = _mixing_structure("minibatch", 1.0)
    assert len(set(batch)) == 1 and batch[0] in range(1, 6)  # one cutoff for the whole round


def test_ema_beta_schedules() -> None:
    # half-life: after ema_kimg thousand images the old average keeps weight 1/2
    beta = ema_beta(batch=16, cur_nimg=50_000, ema_kimg=10, ema_rampup=None, ema_start_kimg=0)
    assert beta ** (10_000 / 16) == pytest.approx(0.5)
    assert ema_beta(batch=16, cur_nimg=9_000, ema_kimg=10, ema_rampup=None, ema_start_kimg=10) == 0.0
    ramp = ema_beta(batch=64, cur_nimg=1000, ema_kimg=20, ema_rampup=0.05, ema_start_kimg=0)
    assert ramp == pytest.approx(0.5 ** (64 / 50))
    assert ema_beta(batch=8, cur_nimg=10, ema_kimg=0, ema_rampup=None, ema_start_kimg=0) == 0.0


def test_update_ema_averages_parameters_and_copies_buffers() -> None:
    a, b = ToyG(), ToyG()
    b.w_avg.fill_(3.0)
    before = a.map.weight.detach().clone()
    update_ema(a, b, 0.25)
    assert torch.allclose(a.map.weight, 0.25 * before + 0.75 * b.map.weight)
    assert torch.equal(a.w_avg, b.w_avg)


def images(n: int = 10, res: int = 4) -> np.ndarray:
    return np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(res, 1).repeat(res, 2).repeat(3, 3) * 20


def test_sampler_is_deterministic_and_resumes_exactly() -> None:
    data = images()
    a = RealImageSampler(data, batch=4, seed=3, mirror="random", device=torch.device("cpu"))
    first = [a.next()[0] for _ in range(3)]
    state = a.state_dict()
    rest = [a.next()[0] for _ in range(5)]
    b = RealImageSampler(data, batch=4, seed=3, mirror="random", device=torch.device("cpu"))
    b.load_state_dict(state)
    for x, y in zip(rest, [b.next()[0] for _ in range(5)], strict=True):
        assert torch.equal(x, y)
    c = RealImageSampler(data, batch=4, seed=3, mirror="random", device=torch.device("cpu"))
    assert all(torch.equal(x, c.next()[0]) for x in first)


def test_sampler_epochs_cover_the_set_and_double_mirror_flips_each_image_once() -> None:
    res = 4
    data = np.random.RandomState(0).randint(0, 255, (6, res, res, 3)).astype(np.uint8)
    s = RealImageSampler(data, batch=4, seed=0, mirror="double", device=torch.device("cpu"))
    batches = torch.cat([s.next()[0] for _ in range(3)])  # 12 items = one epoch of the doubled set
    reals = torch.from_numpy(data).permute(0, 3, 1, 2).float() / 127.5 - 1
    plain = sum(int(any(torch.equal(x, r) for x in batches)) for r in reals)
    flipped = sum(int(any(torch.equal(x, r.flip(2)) for x in batches)) for r in reals)
    assert plain == 6 and flipped == 6


def test_sampler_prefetch_path_reports_consumed_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("degan_bench.training.sampler.DEVICE_RESIDENT_BYTES", 0)
    data = images()
    a = RealImageSampler(data, batch=4, seed=1, mirror="none", device=torch.device("cpu"))
    a.next()
    state = a.state_dict()
    expected = a.next()[0]
    b = RealImageSampler(data, batch=4, seed=1, mirror="none", device=torch.device("cpu"))
    b.load_state_dict(state)
    assert torch.equal(b.next()[0], expected)
    a.close()
    b.close()


def test_rng_state_round_trip() -> None:
    import random

    state = ckpt.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_checkpoints_keep_last_k_and_best(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    for nimg in (100, 200, 300, 400):
        path = ckpt.save_checkpoint(run, {"cur_nimg": nimg, "x": torch.tensor([nimg])}, keep=2)
        if nimg == 200:
            ckpt.mark_best(run, path)
    found = ckpt.list_checkpoints(run.path)
    assert sorted(k for k in found if k.startswith("ckpt-")) == [
        ckpt.checkpoint_name(300),
        ckpt.checkpoint_name(400),
    ]
    assert found["last"].name == ckpt.checkpoint_name(400)
    assert int(ckpt.load_checkpoint(found["best"])["x"]) == 200


def test_process_killed_mid_checkpoint_write_leaves_previous_valid(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    ckpt.save_checkpoint(RunDir(run_dir), {"cur_nimg": 100, "x": torch.tensor([1])}, keep=3)
    script = textwrap.dedent(f"""
        import os, torch
        from degan_bench.core import checkpoint as ckpt
        from degan_bench.core.rundir import RunDir
        def die(fd):  # the process is killed after writing some bytes, before the rename
            os._exit(9)
        os.fsync = die
        ckpt.save_checkpoint(RunDir({str(run_dir)!r}), {{"cur_nimg": 200, "x": torch.zeros(100000)}}, keep=3)
    """)
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}
    )
    assert proc.returncode == 9
    found = ckpt.latest_valid_checkpoint(RunDir(run_dir))
    assert found is not None and found[1]["cur_nimg"] == 100
    assert not (run_dir / "checkpoints" / ckpt.checkpoint_name(200)).exists()


def test_truncated_checkpoint_is_skipped_with_a_message(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    ckpt.save_checkpoint(run, {"cur_nimg": 100}, keep=3)
    bad = ckpt.save_checkpoint(run, {"cur_nimg": 200, "x": torch.zeros(1000)}, keep=3)
    bad.write_bytes(bad.read_bytes()[:100])
    messages: list[str] = []
    found = ckpt.latest_valid_checkpoint(run, log=messages.append)
    assert found is not None and found[1]["cur_nimg"] == 100
    assert messages and "cannot be read" in messages[0]
