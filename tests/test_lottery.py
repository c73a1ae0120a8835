"""Lottery-ticket pieces on toy tensors: global magnitude pruning (both official rules), the prunable
tensors of the real models, and the AdvAug perturbation (size, sign, the BigGAN code's zero steps)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from degan_bench.methods.lottery import LotteryConfig, find_section, perturb
from degan_bench.methods.pruning import apply_masks, conv_weights, count, full_masks, prune_global
from degan_bench.models.biggan.config import preset
from degan_bench.models.biggan.networks import build as build_biggan
from degan_bench.models.sngan.config import SNGANConfig
from degan_bench.models.sngan.networks import build as build_sngan


def two_layers(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(8, 4, 3, 3, generator=gen),
        "b.weight": torch.randn(16, 8, 3, 3, generator=gen) * 3.0,
    }


def test_torch_rule_prunes_exactly_round_ratio_of_the_remaining_each_round() -> None:
    weights = two_layers()
    masks = full_masks(weights)
    remaining, total = count(masks)
    assert (remaining, total) == (1440, 1440)
    for k in range(1, 8):
        # Weights drift between rounds (a new training): prune from fresh magnitudes each time.
        weights = {n: w + 0.1 * torch.randn_like(w) for n, w in weights.items()}
        masks = prune_global(weights, masks, 0.2, "torch_l1")
        new_remaining, _ = count(masks)
        assert new_remaining == remaining - round(0.2 * remaining)
        remaining = new_remaining
        assert remaining / total == pytest.approx(0.8**k, abs=2 / total * k)


def test_pruned_entries_stay_pruned_and_the_smallest_alive_go() -> None:
    weights = two_layers()
    first = prune_global(weights, full_masks(weights), 0.2, "torch_l1")
    # Even if a pruned weight became the largest, it stays pruned: only remaining entries compete.
    bumped = {n: torch.where(first[n], w, torch.full_like(w, 100.0)) for n, w in weights.items()}
    second = prune_global(bumped, first, 0.2, "torch_l1")
    for n in weights:
        assert not (second[n] & ~first[n]).any()
    alive = torch.cat([weights[n].abs()[first[n]] for n in weights])
    kept = torch.cat([weights[n].abs()[second[n]] for n in weights])
    removed = torch.cat([weights[n].abs()[first[n] & ~second[n]] for n in weights])
    assert len(removed) == round(0.2 * len(alive)) and removed.max() <= kept.min()


def test_the_rule_is_global_across_layers() -> None:
    # Layer a is 100x smaller than b: the 20 % smallest of the whole pool all come from a.
    weights = {"a.weight": torch.rand(40, 4, 3, 3) * 0.01 + 1e-4, "b.weight": torch.rand(4, 4, 3, 3) + 1.0}
    masks = prune_global(weights, full_masks(weights), 0.2, "torch_l1")
    pruned_a = int((~masks["a.weight"]).sum())
    assert pruned_a == round(0.2 * (1440 + 144)) and masks["b.weight"].all()
    # Per-layer pruning would have taken 20 % of each layer instead.
    assert pruned_a != round(0.2 * 1440)


def test_studiogan_threshold_prunes_floor_plus_one_and_ties() -> None:
    weights = two_layers(1)
    masks = prune_global(weights, full_masks(weights), 0.2, "studiogan_threshold")
    remaining, total = count(masks)
    assert total - remaining == int(0.2 * total) + 1  # distinct magnitudes: floor(0.2 n) + 1
    again = prune_global(weights, masks, 0.2, "studiogan_threshold")
    assert remaining - count(again)[0] == int(0.2 * remaining) + 1
    tied = {"a.weight": torch.ones(1, 1, 2, 5)}
    assert count(prune_global(tied, full_masks(tied), 0.2, "studiogan_threshold"))[0] == 0  # ties all go


def test_bad_amount_and_mismatched_masks_are_refused() -> None:
    weights = two_layers()
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        prune_global(weights, full_masks(weights), 1.0)
    with pytest.raises(ValueError, match="name different tensors"):
        prune_global(weights, {"a.weight": full_masks(weights)["a.weight"]}, 0.2)


@pytest.mark.parametrize("family", ["biggan", "sngan"])
def test_prunable_tensors_are_exactly_the_conv_kernels(family: str) -> None:
    if family == "biggan":
        G, D = build_biggan(preset("studiogan_cifar", z_dim=20, g_ch=8, d_ch=8, shared_dim=16), 32)
    else:
        G, D = build_sngan(SNGANConfig(g_ch=8, d_ch=8), 32)
    for net in (G, D):
        convs = {f"{name}.weight" for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
        assert set(conv_weights(net)) == convs and convs
    masks = prune_global(conv_weights(G), full_masks(conv_weights(G)), 0.2)
    apply_masks(G, masks)
    for name, p in conv_weights(G).items():
        assert (p[~masks[name]] == 0).all()
    assert not any(n.endswith("linear.weight") for n in masks)  # linears are never pruned


def test_perturbation_is_gamma_times_sign_of_the_score_gradient() -> None:
    w = torch.tensor([[1.5], [-0.5], [2.0]])
    h = torch.randn(4, 3, requires_grad=True)

    def mean_logit(x: torch.Tensor) -> torch.Tensor:
        return (x @ w).mean()

    adv = perturb(h, mean_logit, steps=1, gamma=0.01)
    assert torch.allclose(adv - h, 0.01 * torch.sign(w.t()).expand(4, 3))
    assert torch.allclose(
        perturb(h, mean_logit, steps=3, gamma=0.01) - h, 0.03 * torch.sign(w.t()).expand(4, 3)
    )
    # The perturbation is a constant: gradients flow to h as through the identity.
    (grad,) = torch.autograd.grad(adv.sum(), h)
    assert torch.equal(grad, torch.ones_like(h))
    # Zero steps (the released BigGAN default) leave the features as they are.
    assert torch.equal(perturb(h, mean_logit, steps=0, gamma=0.01), h)


def test_hinge_real_score_does_not_move_confident_samples() -> None:
    # BigGAN code: PGD ascends -mean(relu(1 - D)); where D > 1 the gradient, hence the sign, is 0.
    w = torch.tensor([[1.0], [1.0]])
    h = torch.tensor([[2.0, 2.0], [-1.0, 0.0]])

    def hinge_real(x: torch.Tensor) -> torch.Tensor:
        return -F.relu(1.0 - x @ w).mean()

    delta = perturb(h, hinge_real, steps=1, gamma=0.1) - h
    assert torch.equal(delta[0], torch.zeros(2)) and torch.allclose(delta[1], torch.full((2,), 0.1))


def test_config_keeps_stage_one_unaugmented_and_names_the_chain() -> None:
    with pytest.raises(ValueError, match="without augmentation"):
        LotteryConfig(stage="find", advaug="gd").check()
    section = {"stage": "train", "round": 5, "policy": "color", "advaug": "gd", "advaug_gamma": 0.01}
    assert find_section(section, 2) == {
        "stage": "find", "round": 2, "policy": "none", "advaug": "none", "advaug_gamma": 0.01,
    }  # fmt: skip
