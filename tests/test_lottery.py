"""Lottery-ticket pieces on toy tensors: global magnitude pruning (both official rules), the prunable
tensors of the real models, the AdvAug perturbation (size, sign, the BigGAN code's zero steps), and which
IMP mask chain a Stage II ticket trains with."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from degan_bench.errors import MethodError
from degan_bench.methods.base import MethodContext
from degan_bench.methods.lottery import (
    ARTIFACTS,
    INIT_FILE,
    MASK_FILE,
    LotteryConfig,
    LotteryMethod,
    averaged_weights,
    find_section,
    perturb,
)
from degan_bench.methods.pruning import apply_masks, conv_weights, count, full_masks, prune_global
from degan_bench.models.biggan.config import preset
from degan_bench.models.biggan.networks import build as build_biggan
from degan_bench.models.sngan.config import SNGANConfig
from degan_bench.models.sngan.networks import build as build_sngan
from degan_bench.recipes.loader import canonical_hash


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


# -- item 2 of the third review: the averaged generator's own mask chain (SNGAN Stage II) --------------------
def test_averaged_weights_are_g_ema_where_kept_and_the_init_where_g_pruned() -> None:
    init = {"a.weight": torch.full((2, 1, 1, 1), 5.0), "b.weight": torch.full((3, 1, 1, 1), -4.0)}
    g_ema = {"a.weight": torch.tensor([0.5, 0.0]).view(2, 1, 1, 1), "b.weight": torch.zeros(3, 1, 1, 1)}
    g_masks = {
        "a.weight": torch.tensor([True, False]).view(2, 1, 1, 1),
        "b.weight": torch.zeros(3, 1, 1, 1).bool(),
    }
    out = averaged_weights(g_ema, g_masks, init)
    assert (
        out["a.weight"].flatten().tolist() == [0.5, 5.0] and out["b.weight"].flatten().tolist() == [-4.0] * 3
    )


def test_the_averaged_chain_keeps_what_g_pruned_when_its_rewound_init_is_large() -> None:
    """SNGAN/train_impg_less.py prunes avg_gen_net on its own weights, gen_avg_param, which holds the
    rewound initial value where G's mask pruned; pruning our G_ema (zero there) would drop those first."""
    init = {"w.weight": torch.tensor([3.0, 2.0, 0.1, 0.2, 0.3]).view(5, 1, 1, 1)}
    g_mask = {"w.weight": torch.tensor([False, True, True, True, True]).view(5, 1, 1, 1)}  # G pruned entry 0
    ema_mask = full_masks(init)  # the averaged chain kept everything so far
    g_ema = {"w.weight": torch.tensor([0.0, 1.0, 0.4, 0.5, 0.6]).view(5, 1, 1, 1)}  # ours: zero where pruned
    official = prune_global(averaged_weights(g_ema, g_mask, init), ema_mask, 0.2)
    naive = prune_global(g_ema, ema_mask, 0.2)
    assert official["w.weight"].flatten().tolist() == [True, True, False, True, True]  # |0.4| goes
    assert naive["w.weight"].flatten().tolist() == [False, True, True, True, True]


def test_stage_two_takes_the_chain_ticket_mask_names(tmp_path: Path) -> None:
    """lottery.ticket_mask g_ema trains with the averaged generator's chain, g with G's."""
    G, D = build_sngan(SNGANConfig(z_dim=8, g_ch=4, d_ch=4), 32)
    names = list(conv_weights(G))
    g_chain = {k: torch.rand(v.shape) > 0.3 for k, v in conv_weights(G).items()}
    ema_chain = {k: torch.rand(v.shape) > 0.5 for k, v in conv_weights(G).items()}
    for ticket_mask, expected in (("g", g_chain), ("g_ema", ema_chain)):
        runs = tmp_path / ticket_mask
        section = {"stage": "train", "round": 1, "policy": "none", "advaug": "gd", "ticket_mask": ticket_mask}
        recipe = {"method": "lottery", "dataset": "toy", "lottery": section}
        find = runs / "find-1"
        (find / ARTIFACTS).mkdir(parents=True)
        run_info = {"recipe_hash": canonical_hash({**recipe, "lottery": find_section(section, 1)}), "seed": 0}
        (find / "run.json").write_text(json.dumps({**run_info, "status": "complete"}))
        torch.save({"G": G.state_dict(), "D": D.state_dict()}, find / ARTIFACTS / INIT_FILE)
        masks = {"round": 1, "G": g_chain, "G_ema": ema_chain, "D": {}, "source": "find-0"}
        torch.save(masks, find / ARTIFACTS / MASK_FILE)
        (runs / "ticket").mkdir()
        (runs / "ticket" / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        G_ema = copy.deepcopy(G)
        ctx = MethodContext(G=G, D=D, G_ema=G_ema, device=torch.device("cpu"), resolution=32, num_images=10,
                            batch=2, batch_gpu=2, total_kimg=1.0, g_lr=1e-4, d_lr=1e-4, betas=(0.0, 0.9),
                            objective="hinge", run_dir=runs / "ticket", seed=0)  # fmt: skip
        method = LotteryMethod(LotteryConfig(**section), ctx)
        assert list(method.g_masks) == names
        assert all(torch.equal(method.g_masks[k], expected[k]) for k in names), ticket_mask
        assert all((G_ema.state_dict()[k][~expected[k]] == 0).all() for k in names)
        saved = torch.load(runs / "ticket" / ARTIFACTS / MASK_FILE, weights_only=True)
        assert saved["ticket_mask"] == ticket_mask and saved["source"] == "find-1"
    # a chain made before the averaged masks were kept cannot give them
    del masks["G_ema"]
    torch.save(masks, tmp_path / "g_ema" / "find-1" / ARTIFACTS / MASK_FILE)
    shutil.rmtree(tmp_path / "g_ema" / "ticket" / ARTIFACTS)
    with pytest.raises(MethodError, match="no G_ema mask chain"):
        LotteryMethod(LotteryConfig(**section), ctx)
