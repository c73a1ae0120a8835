"""SNGAN (32 px CIFAR-10, lottery-ticket paper): official parameter counts, the model contract, SN in D."""

from __future__ import annotations

import pytest
import torch
from gan32_support import (
    assert_deterministic_under_seed,
    assert_sn_normalizes,
    assert_state_restores_exactly,
    assert_stem_body_is_forward,
    assert_trunk_head_is_forward,
    count,
)
from torch import nn

from degan_bench.errors import RecipeError
from degan_bench.models import build_models, parse_model_config
from degan_bench.models.sngan.config import SNGANConfig
from degan_bench.models.sngan.networks import Discriminator, Generator, build
from degan_bench.models.spectral_norm import SNConv2d, SNLinear, sn_modules

# Reference numbers (G, D): VITA-Group/Ultra-Data-Efficient-GAN-Training @ 9a9a8df
# SNGAN/models/sngan_cifar10.py Generator(args) / Discriminator(args) instantiated on the CPU with the
# README commands' args (latent_dim 128, gf_dim 256, df_dim 128, bottom_width 4, d_spectral_norm True).
OFFICIAL_COUNTS = (4_276_739, 1_053_824)

TINY = SNGANConfig(z_dim=16, g_ch=16, d_ch=16)
N = 4


def test_parameter_counts_match_the_official_networks() -> None:
    G, D = build_models(SNGANConfig(), 32)
    assert (count(G), count(D)) == OFFICIAL_COUNTS
    assert G.linear.in_features == 128 and G.channels == 256 and D.feature_dim == 128


def test_spectral_norm_in_d_only_and_init() -> None:
    torch.manual_seed(0)
    G, D = build(SNGANConfig(g_ch=64, d_ch=32), 32)
    assert not sn_modules(G)
    # every D conv (3 + 3 + 2 + 2) and the bias-free output linear, torch-style, eps 1e-12
    assert len(sn_modules(D)) == 11 and D.linear.bias is None and isinstance(D.linear, SNLinear)
    assert all(
        isinstance(m, (SNConv2d, SNLinear)) for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    assert all(m.sn_style == "torch" and m.sn_eps == 1e-12 for m in sn_modules(D))
    assert_sn_normalizes(D)
    # Xavier-uniform convs (bound sqrt(6 / (fan_in + fan_out))), BN weights N(1, 0.02), linears left default
    w = G.blocks[0].conv1.weight
    bound = (6 / (64 * 9 + 64 * 9)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    gammas = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(gammas.mean().item() - 1) < 0.01 and 0.01 < gammas.std().item() < 0.03
    assert all(not m.bias.any() for m in G.modules() if isinstance(m, nn.BatchNorm2d))
    # torch's default Linear init: uniform with bound 1/sqrt(fan_in) (> Xavier's sqrt(6 / (128 + 1024)))
    top = G.linear.weight.abs().max().item()
    assert 0.95 / 128**0.5 < top <= 1 / 128**0.5


def test_contract() -> None:
    G, D = build(TINY, 32)
    assert (G.z_dim, G.c_dim, D.c_dim) == (16, 0, 0)
    z = torch.randn(N, 16)
    img = G(z, torch.zeros(N, 0), truncation_psi=1.0, noise_mode="const")
    assert img.shape == (N, 3, 32, 32) and img.abs().max() <= 1 and img.std() > 0
    G.eval()
    assert torch.equal(G(z), G(z, torch.zeros(N, 0)))  # unconditional: c None or [N, 0]
    h, cond = G.stem(z, None)
    assert h.shape == (N, 16, 4, 4) and cond is None
    assert_stem_body_is_forward(G, z, None)
    x = G(z).detach()
    assert_trunk_head_is_forward(D, x, None)
    D.eval()
    assert torch.equal(D(x), D(x, torch.zeros(N, 0)))
    with pytest.raises(ValueError, match="unconditional"):
        G(z, torch.ones(N, 3))
    with pytest.raises(ValueError, match="unconditional"):
        D(x, torch.ones(N, 3))
    with pytest.raises(ValueError, match="truncation_psi"):
        G(z, truncation_psi=0.5)


def test_gradients_reach_every_parameter() -> None:
    G, D = build(TINY, 32)
    (torch.relu(1 - D(torch.randn(N, 3, 32, 32))).mean() - D(G(torch.randn(N, 16))).mean()).backward()
    for net in (G, D):
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing


def test_state_dict_restores_outputs_exactly_and_seeds_determine_init() -> None:
    assert_state_restores_exactly(lambda: Discriminator(TINY), (torch.randn(N, 3, 32, 32),))
    assert_deterministic_under_seed(lambda: Generator(TINY))
    assert_deterministic_under_seed(lambda: Discriminator(TINY))
    # G has no SN buffers, only BN statistics: restoring them makes eval outputs identical
    G = Generator(TINY)
    G(torch.randn(8, 16))
    other = Generator(TINY)
    other.load_state_dict(G.state_dict())
    G.eval()
    other.eval()
    z = torch.randn(2, 16)
    assert torch.equal(G(z), other(z))


def test_registry() -> None:
    cfg = parse_model_config({"arch": "sngan", "z_dim": 16, "g_ch": 16, "d_ch": 16})
    assert cfg == TINY
    G, D = build_models(cfg, 32)
    assert isinstance(G, Generator) and isinstance(D, Discriminator)
    with pytest.raises(RecipeError, match="32 px"):
        build_models(cfg, 16)
