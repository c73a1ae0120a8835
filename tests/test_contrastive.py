"""The MoCo pieces shared by InsGen and FakeCLR, and the two methods' hooks on a tiny StyleGAN2 (CPU)."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import TINY_MODEL
from torch import nn

from degan_bench.errors import MethodError
from degan_bench.methods import get_method
from degan_bench.methods.base import DStep, GStep, MethodContext
from degan_bench.methods.contrastive import (
    KeyQueue,
    ProjectionHead,
    default_queue_size,
    gather_from_processes,
    generate_with_style_mixing,
    info_nce,
    momentum_update,
)
from degan_bench.methods.fakeclr import batch_diversity, latent_perturbation
from degan_bench.models import build_models
from degan_bench.recipes.loader import resolve_file

SHAPES = Path(__file__).resolve().parent.parent / "recipes" / "stylegan2" / "shapes-100.yaml"
TINY = TINY_MODEL


def make_method(name: str, *overrides: str, num_images: int = 100, device: str = "cpu", seed: int = 0) -> Any:
    resolved = resolve_file(SHAPES, "smoke", [*TINY, f"method={name}", *overrides])
    torch.manual_seed(seed)
    G, D = build_models(resolved.model, 16)
    tcfg = resolved.recipe.training
    ctx = MethodContext(
        G=G, D=D, G_ema=copy.deepcopy(G), device=torch.device(device), resolution=16, num_images=num_images,
        batch=tcfg.batch, batch_gpu=4, total_kimg=tcfg.kimg, g_lr=tcfg.g_lr, d_lr=tcfg.d_lr,
        betas=tuple(tcfg.betas), recipe=resolved.recipe,
    )  # fmt: skip
    return get_method(name)(resolved.method_config, ctx)


# -- InfoNCE -------------------------------------------------------------------------------------------
def test_info_nce_equals_the_closed_form_on_hand_made_features() -> None:
    s = 1 / math.sqrt(2)
    query = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    positive = torch.tensor([[0.6, 0.8, 0.0], [0.0, s, s]])
    negatives = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [s, s, 0.0]])
    tau = 0.5
    # per sample: -log( e^{pos/tau} / (e^{pos/tau} + sum_j e^{neg_j/tau}) )
    pos = [0.6, s]
    neg = [[0.0, -1.0, s], [0.0, 0.0, s]]
    expected = [
        -pos[i] / tau + math.log(math.exp(pos[i] / tau) + sum(math.exp(n / tau) for n in neg[i]))
        for i in range(2)
    ]
    loss = info_nce(query, positive, negatives, tau)
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-6)

    bias = torch.tensor([1.0, 0.5, float("-inf")])  # the last negative is left out
    biased = [
        -pos[i] / tau
        + math.log(
            math.exp(pos[i] / tau)
            + sum(math.exp((n + b) / tau) for n, b in zip(neg[i][:2], (1.0, 0.5), strict=True))
        )
        for i in range(2)
    ]
    assert info_nce(query, positive, negatives, tau, bias).item() == pytest.approx(sum(biased) / 2, rel=1e-6)


# -- the queue -----------------------------------------------------------------------------------------
def rows(start: int, count: int) -> torch.Tensor:
    """Distinguishable keys: row i is (start + i) in every column."""
    return torch.arange(start, start + count, dtype=torch.float32)[:, None].repeat(1, 3)


def test_queue_is_a_fifo_of_the_right_size_and_dtype() -> None:
    queue = KeyQueue(5, 3)
    assert queue.keys.shape == (5, 3) and queue.keys.dtype == torch.float32
    assert queue.steps.dtype == torch.int64 and queue.steps.tolist() == [-1] * 5
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(5))  # random unit keys to start with

    pushed: list[torch.Tensor] = []
    for step, (start, count) in enumerate([(0, 2), (2, 2), (4, 3), (7, 1), (8, 4)]):
        queue.push(rows(start, count), step)
        pushed.extend(rows(start, count))
        held = min(len(pushed), 5)
        newest_first = torch.argsort(queue.recency())[:held]
        # The queue holds the last 5 keys pushed, newest first by recency.
        assert torch.equal(queue.keys[newest_first], torch.stack(pushed[::-1][:held]))
    assert queue.steps[torch.argsort(queue.recency())].tolist() == [4, 4, 4, 4, 3]

    # A push larger than the queue keeps its first `capacity` keys (the official behaviour).
    queue.push(rows(100, 7), 9)
    assert sorted(queue.keys[:, 0].tolist()) == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert queue.steps.tolist() == [9] * 5


def test_queue_survives_checkpoint_and_resume_exactly() -> None:
    a = KeyQueue(6, 4)
    for step in range(3):
        a.push(torch.randn(4, 4), step)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = KeyQueue(6, 4)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(a.keys, b.keys) and torch.equal(a.steps, b.steps) and a.ptr == b.ptr
    more = torch.randn(4, 4)
    a.push(more, 3)
    b.push(more, 3)
    assert torch.equal(a.keys, b.keys) and torch.equal(a.steps, b.steps)
    with pytest.raises(ValueError, match="cannot load"):
        KeyQueue(5, 4).load_state_dict(a.state_dict())


def test_default_queue_size_is_five_percent_doubled_with_mirror() -> None:
    assert default_queue_size(200, "double") == 10  # 100-shot with --mirror=1
    assert default_queue_size(100, "random") == 5
    assert default_queue_size(140000, "double") == 7000  # FFHQ 70k x-flipped
    assert default_queue_size(2 * 5153, "double") == 2 * 257  # int(0.05 * 5153) = 257, then doubled
    with pytest.raises(MethodError, match="queue size"):
        make_method("insgen", num_images=10)
    assert make_method("insgen", "insgen.fake_queue_size=3", "insgen.real_queue_size=2", num_images=10)


# -- momentum ------------------------------------------------------------------------------------------
def test_momentum_update_arithmetic() -> None:
    torch.manual_seed(1)
    target, source = nn.Linear(4, 3), nn.Linear(4, 3)
    before = [p.detach().double().clone() for p in target.parameters()]
    momentum_update(target, source, 0.9)
    for p_new, p_old, p_src in zip(target.parameters(), before, source.parameters(), strict=True):
        expected = 0.9 * p_old + 0.1 * p_src.detach().double()
        assert torch.allclose(p_new.double(), expected, atol=1e-7, rtol=0)

    head = ProjectionHead(4, 2)
    with torch.no_grad():
        for p in head.mlp.parameters():
            p.add_(1.0)
    query_before = [p.clone() for p in head.mlp.parameters()]
    key_before = [p.clone() for p in head.momentum_mlp.parameters()]
    head.update_momentum(0.999)
    for q, q0, k, k0 in zip(
        head.mlp.parameters(), query_before, head.momentum_mlp.parameters(), key_before, strict=True
    ):
        assert torch.equal(q, q0)  # the query MLP is only trained
        assert torch.allclose(k, 0.999 * k0 + 0.001 * q0, atol=1e-7, rtol=0)


def test_d_ema_follows_d_with_momentum_once_per_minibatch() -> None:
    method = make_method("insgen")
    D = method.ctx.D
    with torch.no_grad():
        for p in D.parameters():
            p.add_(0.5)
    ema_before = [p.clone() for p in method.D_ema.parameters()]
    method.end_of_minibatch(8, 1)
    for p_ema, p0, p in zip(method.D_ema.parameters(), ema_before, D.parameters(), strict=True):
        assert torch.allclose(p_ema, 0.999 * p0 + 0.001 * p, atol=1e-6, rtol=0)


def test_gather_is_the_identity_without_torch_distributed() -> None:
    keys = torch.randn(5, 3)
    assert gather_from_processes(keys) is keys


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    torch.set_num_threads(1)
    try:
        method = make_method(
            "insgen", "insgen.real_queue_size=16", "insgen.fake_queue_size=16", seed=rank
        )  # heads and queues start differently on each rank
        torch.manual_seed(100 + rank)
        step = d_step(method)
        sum(method.d_loss_terms(step).values()).backward()
        method.after_optimizer_step("D", [step])
        torch.save(
            {
                "heads": {k: h.state_dict() for k, h in method.heads.items()},
                "queues": {k: q.state_dict() for k, q in method.queues.items()},
                "real_features": step.real_features.detach(),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_heads_and_queues_stay_identical_and_queues_gather_every_rank(tmp_path: Path) -> None:
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name in ("heads", "queues"):
        for key in a[name]:
            for field, value in a[name][key].items():
                assert (
                    value == b[name][key][field]
                    if isinstance(value, int)
                    else torch.equal(value, b[name][key][field])
                ), f"{name}.{key}.{field} differs between ranks"
    real = a["queues"]["real"]
    assert real["ptr"] == 8 and real["steps"][:8].tolist() == [1] * 8  # 4 keys from each of the 2 ranks
    assert not torch.equal(a["real_features"], b["real_features"])  # the ranks saw different reals


# -- FakeCLR's techniques -------------------------------------------------------------------------------
def test_fakeclr_noise_has_the_specified_per_dimension_std() -> None:
    magnitudes = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, -2.0, -4.0])
    z = magnitudes.repeat(40000, 1)
    delta = latent_perturbation(z, generator=torch.Generator().manual_seed(0))
    expected_std = 0.1 * magnitudes.abs().clamp(max=3.0)
    measured = delta.std(dim=0)
    assert measured[0] == 0  # no noise where z_i = 0
    # 40k samples: the std estimate is within ~0.4% (1 sigma) of the truth; allow 2%.
    assert torch.allclose(measured[1:], expected_std[1:], rtol=0.02)
    assert delta.mean(dim=0).abs().max() < 0.01


def fill_queue(method: Any) -> None:
    """Push 2 keys at each of minibatches 0..4 into a 10-key queue: ages 1..5 at minibatch 5."""
    for minibatch in range(5):
        method.queues["fake"].push(torch.nn.functional.normalize(torch.randn(2, 128), dim=1), minibatch)


def test_forgetting_factor_weights_old_negatives_less_in_paper_mode_only() -> None:
    paper = make_method("fakeclr", "fakeclr.variant=paper_reading", "fakeclr.queue_size=10")
    fill_queue(paper)
    keys, bias = paper.negatives("fake", 5)
    assert torch.equal(keys, paper.queues["fake"].keys)
    steps = paper.queues["fake"].steps
    for i in range(10):
        for j in range(10):
            if steps[i] < steps[j]:  # i is older
                assert bias[i] < bias[j]
    assert torch.allclose(bias, 0.99 ** (5 - steps).float())

    released = make_method("fakeclr", "fakeclr.variant=released", "fakeclr.queue_size=10")
    fill_queue(released)
    _keys, bias = released.negatives("fake", 5)
    assert torch.equal(bias, torch.ones(10))


def test_diversity_aware_queue_size_follows_the_diversity_of_the_fakes() -> None:
    method = make_method(
        "fakeclr",
        "fakeclr.variant=paper_reading",
        "fakeclr.queue_size=16",
        "fakeclr.min_queue_size=2",
        "fakeclr.diversity_ema=0",
    )
    same = torch.nn.functional.normalize(torch.ones(4, 128), dim=1)
    assert batch_diversity(same).item() == pytest.approx(0.0, abs=1e-6)
    method.push("fake", same, 0)
    _keys, bias = method.negatives("fake", 1)
    assert int(torch.isfinite(bias).sum()) == 2  # no diversity: the minimum size
    # The entries in use are the newest ones.
    assert torch.isfinite(bias[method.queues["fake"].recency() < 2]).all()

    orthogonal = torch.eye(128)[:8]
    assert batch_diversity(orthogonal).item() == pytest.approx(1.0)
    method.push("fake", orthogonal, 1)
    _keys, bias = method.negatives("fake", 2)
    assert bool(torch.isfinite(bias).all())  # fully diverse: the whole queue

    released = make_method("fakeclr", "fakeclr.queue_size=16", "fakeclr.variant=released")
    released.push("fake", same, 0)
    assert bool(torch.isfinite(released.negatives("fake", 1)[1]).all())


# -- gradients -----------------------------------------------------------------------------------------
def g_step(method: Any) -> GStep:
    G, D = method.ctx.G, method.ctx.D
    G.requires_grad_(True)
    D.requires_grad_(False)  # as the loop does in the G phase
    z = torch.randn(4, G.z_dim)
    c = torch.zeros(4, 0)
    fakes = G(z, c)
    fakes_aug = method.augment(fakes)
    logits, features = D(fakes_aug, c, return_features=True)
    return GStep(z=z, c=c, fakes=fakes, fakes_aug=fakes_aug, fake_logits=logits, fake_features=features,
                 G=G, D=D, cur_nimg=0)  # fmt: skip


def d_step(method: Any) -> DStep:
    G, D = method.ctx.G, method.ctx.D
    G.requires_grad_(False)
    D.requires_grad_(True)
    z, c = torch.randn(4, G.z_dim), torch.zeros(4, 0)
    with torch.no_grad():
        fakes = G(z, c)
    reals = torch.rand(4, 3, 16, 16) * 2 - 1
    reals_aug, fakes_aug = method.augment(reals), method.augment(fakes)
    real_logits, real_features = D(reals_aug, c, return_features=True)
    fake_logits, fake_features = D(fakes_aug, c, return_features=True)
    return DStep(reals=reals, reals_aug=reals_aug, real_logits=real_logits, real_features=real_features,
                 G=G, D=D, cur_nimg=8, phase="main", z=z, c=c, real_c=c, fakes=fakes, fakes_aug=fakes_aug,
                 fake_logits=fake_logits, fake_features=fake_features)  # fmt: skip


def grad_norm(module: nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def has_grads(module: nn.Module) -> bool:
    return any(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("name", ["insgen", "fakeclr"])
@pytest.mark.parametrize("query_view", ["fresh", "adversarial"])
def test_gradients_reach_g_through_the_g_term_and_the_heads_through_the_d_terms(
    name: str, query_view: str
) -> None:
    method = make_method(name, f"{name}.ada.p_init=0.5", f"{name}.query_view={query_view}")
    G, D = method.ctx.G, method.ctx.D

    terms = method.g_loss_terms(g_step(method))
    assert set(terms) == {"fake_cl_on_g"}
    terms["fake_cl_on_g"].backward()
    assert grad_norm(G) > 0
    assert not has_grads(D) and not has_grads(method.D_ema)
    assert not any(has_grads(head) for head in method.heads.values())  # frozen in the G step
    G.zero_grad(set_to_none=True)

    terms = method.d_loss_terms(d_step(method))
    assert set(terms) == ({"real_cl", "fake_cl"} if name == "insgen" else {"fake_cl"})
    for value in terms.values():
        assert torch.isfinite(value) and value > 0
    sum(terms.values()).backward()
    assert grad_norm(D) > 0
    assert not has_grads(G) and not has_grads(method.D_ema)
    for head in method.heads.values():
        assert grad_norm(head.mlp) > 0 and not has_grads(head.momentum_mlp)

    # The heads' own optimizer steps once after the D step and clears the gradients.
    before = {k: [p.clone() for p in h.mlp.parameters()] for k, h in method.heads.items()}
    method.after_optimizer_step("D", [d_step(method)])
    for key, head in method.heads.items():
        assert any(not torch.equal(p, p0) for p, p0 in zip(head.mlp.parameters(), before[key], strict=True))
        assert not has_grads(head.mlp)


def newest(queue: KeyQueue, count: int) -> torch.Tensor:
    """The last ``count`` keys pushed, in push order."""
    return queue.keys[torch.argsort(queue.recency())[:count]].flip(0)


def test_the_right_keys_are_queued() -> None:
    """InsGen: real queue <- D_ema keys of the second view; fake queue <- momentum projection of the online
    D features of the unperturbed fake. FakeCLR: keys of D_ema on the perturbed fake. With p = 0 the views
    are the images themselves, and D_ema is moved away from D so that the two are told apart."""
    method = make_method("insgen", "insgen.query_view=adversarial")
    with torch.no_grad():
        for p in method.D_ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    step = d_step(method)
    method.d_loss_terms(step)
    assert method.queues["real"].ptr == 0  # the keys wait for the end of the phase
    method.flush_pending()
    real_keys = method.heads["real"].key(method.features(method.D_ema, step.reals, step.real_c))
    assert torch.allclose(newest(method.queues["real"], 4), real_keys, atol=1e-6)
    fake_keys = method.heads["fake"].key(step.fake_features)
    assert torch.allclose(newest(method.queues["fake"], 4), fake_keys, atol=1e-6)
    assert method.queues["real"].steps[torch.argsort(method.queues["real"].recency())[:4]].tolist() == [1] * 4

    method = make_method("fakeclr", "fakeclr.query_view=adversarial")
    step = d_step(method)
    rng = torch.get_rng_state()
    method.d_loss_terms(step)
    method.flush_pending()
    torch.set_rng_state(rng)  # replay the perturbed generation
    with torch.no_grad():
        perturbed = generate_with_style_mixing(step.G, step.z + latent_perturbation(step.z), step.c, 0.9)
        keys = method.heads["fake"].key(method.features(method.D_ema, perturbed, step.c))
    assert torch.allclose(newest(method.queues["fake"], 4), keys, atol=1e-6)
    assert not torch.allclose(keys, method.heads["fake"].key(step.fake_features), atol=1e-3)


def test_fp16_autocast_is_refused_on_cuda() -> None:
    with pytest.raises(MethodError, match="amp=bf16"):
        make_method("fakeclr", "performance.amp=fp16", device="cuda")
