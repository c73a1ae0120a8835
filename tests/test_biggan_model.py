"""BigGAN (32 px CIFAR): official parameter counts, the model contract, conditioning, spectral norm."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F
from gan32_support import (
    assert_deterministic_under_seed,
    assert_sn_normalizes,
    assert_state_restores_exactly,
    assert_stem_body_is_forward,
    assert_trunk_head_is_forward,
    count,
)

from degan_bench.errors import RecipeError
from degan_bench.models import build_models, parse_model_config
from degan_bench.models.biggan.config import PRESETS, BigGANConfig, preset
from degan_bench.models.biggan.layers import DBlock, Layers
from degan_bench.models.biggan.networks import Discriminator, Generator, build, sample
from degan_bench.models.spectral_norm import SNConv2d, SNEmbedding, SNLinear, sn_modules

# Reference numbers (G, D): the official classes instantiated on the CPU (not vendored here).
# - diffaugment_cifar: mit-han-lab/data-efficient-gans @ 0b63395 DiffAugment-biggan-cifar/BigGAN.py
#   Generator(**config) / Discriminator(**config) from utils.prepare_parser() with the flags of
#   scripts/DiffAugment-biggan-cifar10*.sh (--dataset C10 / C100, --G_attn 0 --D_attn 0, N02 init).
# - studiogan_cifar: VITA-Group/Ultra-Data-Efficient-GAN-Training @ 9a9a8df
#   "BigGAN and DiffAugGAN/models/big_resnet.py" with configs/CIFAR10_less/DiffAugGAN_adv.json's model
#   block (z 80, shared 128, conv dims 96, SN G+D, attention after G block 2 / D block 1, ProjGAN_adv),
#   num_classes 10 and 100 (CIFAR100_less/DiffAugGAN_adv.json has the same model block).
OFFICIAL_COUNTS = {
    ("diffaugment_cifar", 10): (4_304_387, 4_207_361),
    ("diffaugment_cifar", 100): (4_580_867, 4_230_401),
    ("studiogan_cifar", 10): (9_416_196, 2_415_170),
    ("studiogan_cifar", 100): (9_427_716, 2_432_450),
}

# Tiny widths for CPU: 32 G channels; D 32 (DiffAugment) / 16 (StudioGAN) channels.
TINY = {
    "diffaugment_cifar": preset("diffaugment_cifar", c_dim=5, z_dim=32, g_ch=8, d_ch=8),
    "studiogan_cifar": preset("studiogan_cifar", c_dim=5, z_dim=20, g_ch=8, d_ch=8, shared_dim=16),
}
N = 4


def inputs(cfg: BigGANConfig, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(N, cfg.z_dim, generator=gen)
    return z, F.one_hot(torch.arange(N) % cfg.c_dim, cfg.c_dim).float()


@pytest.fixture(params=sorted(TINY))
def tiny(request: pytest.FixtureRequest) -> tuple[str, BigGANConfig]:
    return request.param, TINY[request.param]


# ------------------------------------------------------------------------------------------------
# Faithfulness


@functools.cache
def full_size(name: str, classes: int) -> tuple[Generator, Discriminator]:
    # Orthogonal init of the full StudioGAN nets takes seconds on the CPU and cannot change a count, so
    # the CIFAR-100 variants are counted with N(0, 0.02) init.
    cfg = preset(name, c_dim=classes) if classes == 10 else preset(name, c_dim=classes, init="N02")
    return build_models(cfg, 32)  # type: ignore[return-value]


@pytest.mark.parametrize(("name", "classes"), sorted(OFFICIAL_COUNTS))
def test_parameter_counts_match_the_official_networks(name: str, classes: int) -> None:
    G, D = full_size(name, classes)
    assert (count(G), count(D)) == OFFICIAL_COUNTS[(name, classes)]


def test_preset_layouts() -> None:
    assert PRESETS["diffaugment_cifar"] == BigGANConfig()  # the defaults are the DiffAugment scripts'
    G, D = full_size("diffaugment_cifar", 10)
    assert G.shared is None and G.linear.in_features == 128 and G.channels == 256 and D.feature_dim == 256
    assert isinstance(G.blocks[0].bn1.gain, torch.nn.Embedding)  # per-BN class embeddings, no SN
    assert not any(type(m).__name__ == "SelfAttention" for m in (*G.modules(), *D.modules()))
    assert all(m.sn_style == "biggan" and m.sn_eps == 1e-8 for m in sn_modules(G) + sn_modules(D))
    G, D = full_size("studiogan_cifar", 10)
    assert G.linear.in_features == 20 and G.shared is not None and G.shared.embedding_dim == 128
    assert isinstance(G.blocks[0].bn1.gain, SNLinear) and G.blocks[0].bn1.gain.in_features == 148
    assert [type(b).__name__ for b in G.blocks] == ["GBlock", "GBlock", "SelfAttention", "GBlock"]
    assert [type(b).__name__ for b in D.blocks] == ["DBlock", "SelfAttention", "DBlock", "DBlock", "DBlock"]
    assert G.channels == 384 and D.feature_dim == 192 and isinstance(D.embed, SNEmbedding)
    assert all(m.sn_style == "torch" and m.sn_eps == 1e-6 for m in sn_modules(G) + sn_modules(D))


def test_init_styles() -> None:
    torch.manual_seed(0)
    G, D = build(preset("diffaugment_cifar", g_ch=16, d_ch=8), 32)  # N(0, 0.02) weights, default biases
    w = G.blocks[0].conv1.weight
    assert abs(w.std().item() - 0.02) < 1e-3 and abs(G.blocks[0].bn1.gain.weight.std().item() - 0.02) < 3e-3
    assert G.blocks[0].conv1.bias.abs().max() > 0
    G, D = build(TINY["studiogan_cifar"], 32)  # orthogonal weights, zero biases
    lin = G.linear.weight  # [C * 16, 5]: orthonormal columns
    torch.testing.assert_close(lin.t() @ lin, torch.eye(lin.shape[1]), atol=1e-5, rtol=0)
    biases = [m.bias for m in (*G.modules(), *D.modules()) if isinstance(m, (SNConv2d, SNLinear))]
    assert biases and all(b is None or not b.any() for b in biases)


def test_studiogan_shortcut_reads_relu_of_the_input() -> None:
    # StudioGAN's in-place ReLU overwrites the block input its shortcut holds: block(x) == block(relu(x)).
    layers = Layers(sn=False, style="torch", num_itrs=1, eps=1e-6)
    x = torch.randn(2, 8, 8, 8)
    for downsample in (True, False):
        torch.manual_seed(0)
        studio = DBlock(8, 8, layers, preactivation=True, downsample=downsample, shortcut_relu=True)
        torch.manual_seed(0)
        biggan = DBlock(8, 8, layers, preactivation=True, downsample=downsample, shortcut_relu=False)
        assert torch.equal(studio(x), studio(F.relu(x)))
        assert torch.equal(studio(F.relu(x)), biggan(F.relu(x)))
        assert not torch.allclose(biggan(x), biggan(F.relu(x)))


# ------------------------------------------------------------------------------------------------
# Contract


def test_shapes_and_range(tiny: tuple[str, BigGANConfig]) -> None:
    _, cfg = tiny
    G, D = build(cfg, 32)
    z, c = inputs(cfg)
    assert (G.z_dim, G.c_dim, D.c_dim) == (cfg.z_dim, 5, 5)
    for training in (True, False):
        G.train(training)
        img = G(z, c, truncation_psi=1.0, noise_mode="const")
        assert img.shape == (N, 3, 32, 32) and img.abs().max() <= 1 and img.std() > 0
    logits, features = D(img, c, return_features=True)
    assert logits.shape == (N, 1) and features.shape == (N, D.feature_dim)
    assert D(img, c).shape == (N, 1)
    with pytest.raises(ValueError, match="truncation_psi"):
        G(z, c, truncation_psi=0.7)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, c, noise_mode="bogus")
    with pytest.raises(ValueError, match="c must be one-hot"):
        G(z, None)
    with pytest.raises(ValueError, match="c must be one-hot"):
        D(img, c[:, :3])


def test_stem_body_and_trunk_head_decompose_the_forward(tiny: tuple[str, BigGANConfig]) -> None:
    name, cfg = tiny
    G, D = build(cfg, 32)
    z, c = inputs(cfg)
    h, cond = G.stem(z, c)
    assert h.shape == (N, G.channels, 4, 4) and len(cond) == 3
    if name == "studiogan_cifar":  # [shared(y), z chunk i]; the first chunk feeds the linear
        assert all(t.shape == (N, 16 + 5) for t in cond)
        assert torch.equal(cond[1][:, 16:], z[:, 10:15])
        torch.testing.assert_close(h.flatten(1), G.linear(z[:, :5]))
    else:
        assert all(torch.equal(t, c.argmax(1)) for t in cond)
    assert_stem_body_is_forward(G, z, c)
    G.eval()
    assert_trunk_head_is_forward(D, G(z, c).detach(), c)


def test_classes_condition_both_networks(tiny: tuple[str, BigGANConfig]) -> None:
    _, cfg = tiny
    G, D = build(cfg, 32)
    G.eval()
    D.eval()
    z, c = inputs(cfg)
    z = z[:1].expand(N, -1)  # one z, four classes
    img = G(z, c)
    assert all(not torch.allclose(img[0], img[i], atol=1e-4) for i in range(1, N))
    features = D.trunk(img)
    other = c.roll(1, dims=1)
    delta = D.head(features, c) - D.head(features, other)
    # the change is exactly the projection term <embed(y), h>
    table = D.embed.sn_weight()
    expected = (table[c.argmax(1)] * features).sum(1, keepdim=True) - (table[other.argmax(1)] * features).sum(
        1, keepdim=True
    )
    torch.testing.assert_close(delta, expected, rtol=1e-4, atol=1e-5)
    assert delta.abs().min() > 0


def test_gradients_reach_every_parameter(tiny: tuple[str, BigGANConfig]) -> None:
    _, cfg = tiny
    G, D = build(cfg, 32)
    with torch.no_grad():  # attention gains start at 0, which would block its convs' gradients
        for m in (*G.modules(), *D.modules()):
            if type(m).__name__ == "SelfAttention":
                m.gamma.fill_(0.5)
    z, c = inputs(cfg)
    (F.relu(1 - D(torch.randn(N, 3, 32, 32), c)).mean() - D(G(z, c), c).mean()).backward()
    for net in (G, D):
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing


# ------------------------------------------------------------------------------------------------
# Spectral norm, state, determinism


def test_spectral_norm_bounds_every_sn_weight(tiny: tuple[str, BigGANConfig]) -> None:
    _, cfg = tiny
    G, D = build(cfg, 32)
    # G: every conv and linear (+ shared-embedding BN linears); its class embeddings stay plain
    assert {type(m) for m in sn_modules(G)} <= {SNConv2d, SNLinear}
    assert len(sn_modules(D)) == 3 + 3 + 2 + 2 + 2 + (4 if cfg.d_attn_after else 0)  # blocks, linear, embed
    assert_sn_normalizes(G)
    assert_sn_normalizes(D)


def test_spectral_norm_styles_in_eval_mode() -> None:
    for style in ("biggan", "torch"):
        torch.manual_seed(0)
        layer = SNLinear(6, 5, style=style, eps=1e-8)
        layer.train()
        layer(torch.randn(2, 6))
        u, v = layer.u.clone(), layer.v.clone()
        layer.eval()
        w_eval = layer.sn_weight()
        assert torch.equal(layer.u, u) and torch.equal(layer.v, v)  # eval never stores
        mat = layer.weight.detach()
        if style == "torch":  # the stored pair, no iteration
            sigma = torch.dot(u, mat @ v)
        else:  # one more iteration from the stored u, discarded
            v1 = F.normalize(mat.t() @ u, dim=0, eps=1e-8)
            sigma = torch.dot(F.normalize(mat @ v1, dim=0, eps=1e-8), mat @ v1)
        torch.testing.assert_close(w_eval, layer.weight / sigma)
        layer.train()
        layer.sn_weight()
        assert not torch.equal(layer.u, u)  # train mode iterates and stores


def test_state_dict_restores_outputs_exactly(tiny: tuple[str, BigGANConfig]) -> None:
    _, cfg = tiny
    z, c = inputs(cfg)
    assert_state_restores_exactly(lambda: Generator(cfg), (z, c))
    assert_state_restores_exactly(lambda: Discriminator(cfg), (torch.randn(N, 3, 32, 32), c))


def test_deterministic_under_seed(tiny: tuple[str, BigGANConfig]) -> None:
    _, cfg = tiny
    assert_deterministic_under_seed(lambda: build(cfg, 32)[0])
    assert_deterministic_under_seed(lambda: build(cfg, 32)[1])


def test_sample_per_class() -> None:
    cfg = TINY["diffaugment_cifar"]
    G, _ = build(cfg, 32)
    G.eval()
    images, labels = sample(G, 3, class_index=2, seed=5)
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [2, 2, 2]
    again, _ = sample(G, 3, class_index=2, seed=5)
    assert torch.equal(images, again)
    _, labels = sample(G, 6, seed=5)
    assert labels.min() >= 0 and labels.max() < 5
    _, labels = sample(G, 2, class_index=torch.tensor([4, 0]), seed=5)
    assert labels.tolist() == [4, 0]
    with pytest.raises(ValueError, match="class indices"):
        sample(G, 1, class_index=5)


# ------------------------------------------------------------------------------------------------
# Registry and config validation


def test_registry_parses_and_builds() -> None:
    cfg = parse_model_config({"arch": "biggan", "c_dim": 5, "g_ch": 8, "d_ch": 8, "z_dim": 32})
    assert cfg == TINY["diffaugment_cifar"]
    G, D = build_models(cfg, 32)
    assert isinstance(G, Generator) and isinstance(D, Discriminator)
    with pytest.raises(RecipeError, match=r"32 px.*-> set data.resolution: 32") as err:
        build_models(cfg, 64)
    assert "\n" not in str(err.value)
    with pytest.raises(RecipeError, match="hier needs a shared class embedding"):
        parse_model_config({"arch": "biggan", "hier": True})
    with pytest.raises(RecipeError, match="z_dim must divide"):
        parse_model_config({"arch": "biggan", "hier": True, "shared_dim": 16, "z_dim": 30})
    with pytest.raises(RecipeError, match=r"did you mean 'model\.g_ch'"):
        parse_model_config({"arch": "biggan", "g_chh": 8})
    assert dataclasses.replace(PRESETS["studiogan_cifar"], c_dim=100) == preset("studiogan_cifar", c_dim=100)


def test_sn_layers_accept_torch_pruning_masks() -> None:
    # The lottery-ticket IMP masks G's conv weights with torch.nn.utils.prune; SN must see the masked weight.
    from torch.nn.utils import prune

    cfg = TINY["studiogan_cifar"]
    G, _ = build(cfg, 32)
    G.eval()
    z, c = inputs(cfg)
    conv = G.blocks[0].conv1
    mask = (torch.rand_like(conv.weight) > 0.5).float()
    before = G(z, c)
    prune.custom_from_mask(conv, "weight", mask)
    assert torch.equal(conv.weight, conv.weight_orig * mask)
    assert not torch.allclose(G(z, c), before)
    with torch.no_grad():
        assert torch.equal(conv.sn_weight() == 0, (mask == 0) | (conv.weight_orig == 0))
