"""StyleGAN2 generator/discriminator: official parameter counts, the model contract, layer invariants."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from degan_bench.errors import RecipeError
from degan_bench.models import build_models, parse_model_config
from degan_bench.models.stylegan2.config import REFERENCE_CONFIGS, StyleGAN2Config
from degan_bench.models.stylegan2.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    fir_blur,
    fir_downsample2d,
    fir_upsample2d,
    make_fir_filter,
    modulated_conv2d,
)
from degan_bench.models.stylegan2.networks import Discriminator, Generator, build

TINY = StyleGAN2Config(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32, mbstd_group=2)
TINY_COND = dataclasses.replace(TINY, c_dim=5, d_cmap_layers=2)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def set_noise_strength(G: Generator, value: float) -> None:
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(value)


# ------------------------------------------------------------------------------------------------
# Faithfulness: parameter counts of the official networks

# Reference numbers (G, D) come from instantiating NVlabs/stylegan2-ada-pytorch @ d72cc7d
# training/networks.py (Generator / Discriminator) on the CPU with the kwargs its train.py builds:
#   ada-paper256: cfg_specs['paper256'] (channel_base 16384, map 8, mbstd 8), 256 px;
#   ada-cifar: cfg_specs['cifar'] (channel_base 32768, map 2, mbstd 32, D architecture 'orig'),
#     32 px, --cond=1 with CIFAR-10's 10 classes (D's label mapping keeps the default 8 layers).
# The TF StyleGAN2 of mit-han-lab/data-efficient-gans (DiffAugment-stylegan2/training/
# networks_stylegan2.py) has the same trainable tensor shapes for fmap_base F as the ADA classes with
# channel_base 2F (lod, dlatent_avg and the noise inputs are non-trainable); the ADA instantiation
# gave the numbers below, and _tf_trainable_count re-derives them from the TF variable shapes:
#   diffaugment-tf-low-shot: run_low_shot.py, G/D defaults fmap_base 16384, mbstd 4, 256 px;
#   diffaugment-tf-ffhq: run_ffhq.py, fmap_base 8192 (the same networks as ada-paper256);
#   diffaugment-tf-cifar: run_cifar.py, --fmap-base 2048, 32 px.
OFFICIAL_COUNTS = {
    "diffaugment-tf-low-shot": (30_034_338, 28_864_129),
    "diffaugment-tf-ffhq": (24_767_458, 24_001_089),
    "diffaugment-tf-cifar": (13_506_963, 13_918_849),
    "ada-paper256": (24_767_458, 24_001_089),
    "ada-cifar": (20_215_315, 23_089_664),
}
TF_FMAP_BASE = {"diffaugment-tf-low-shot": 16384, "diffaugment-tf-ffhq": 8192, "diffaugment-tf-cifar": 2048}


def _tf_trainable_count(
    resolution: int, fmap_base: int, fmap_max: int = 512, latent: int = 512
) -> tuple[int, int]:
    """Trainable variables of TF G_main / D_stylegan2 (unconditional), from their variable shapes."""

    def nf(stage: int) -> int:
        return min(int(fmap_base / 2.0**stage), fmap_max)

    def mod_conv(cin: int, cout: int, k: int, noise: bool) -> int:  # weight, mod_weight/bias, bias, noise
        return k * k * cin * cout + latent * cin + cin + cout + (1 if noise else 0)

    log2 = int(math.log2(resolution))
    g = 8 * (latent * latent + latent)  # G_mapping Dense0..7
    g += nf(1) * 16 + mod_conv(nf(1), nf(1), 3, True) + mod_conv(nf(1), 3, 1, False)  # 4x4 const, conv, torgb
    for res in range(3, log2 + 1):
        g += mod_conv(nf(res - 2), nf(res - 1), 3, True) + mod_conv(nf(res - 1), nf(res - 1), 3, True)
        g += mod_conv(nf(res - 1), 3, 1, False)
    d = 3 * nf(log2 - 1) + nf(log2 - 1)  # FromRGB
    for res in range(log2, 2, -1):
        cin, cout = nf(res - 1), nf(res - 2)
        d += 9 * cin * cin + cin + 9 * cin * cout + cout + cin * cout  # Conv0, Conv1_down, Skip (no bias)
    d += 9 * (nf(1) + 1) * nf(1) + nf(1) + nf(1) * 16 * nf(0) + nf(0) + nf(0) + 1  # Conv, Dense0, Output
    return g, d


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_counts_match_the_official_networks(name: str) -> None:
    cfg, resolution = REFERENCE_CONFIGS[name]
    G, D = build(cfg, resolution)
    assert (count(G), count(D)) == OFFICIAL_COUNTS[name]
    if name in TF_FMAP_BASE:
        assert _tf_trainable_count(resolution, TF_FMAP_BASE[name]) == OFFICIAL_COUNTS[name]


def test_reference_configs_have_the_official_layouts() -> None:
    cfg, res = REFERENCE_CONFIGS["diffaugment-tf-low-shot"]
    G, D = build(cfg, res)
    assert G.num_ws == 14 and count(G.mapping) == 8 * (512 * 512 + 512)
    assert [b.conv.weight.shape[0] for b in G.synthesis.blocks] == [512, 512, 512, 512, 512, 256, 128]
    cfg, res = REFERENCE_CONFIGS["ada-cifar"]
    G, D = build(cfg, res)
    assert G.num_ws == 8 and len(G.mapping.layers) == 2 and D.label_mapping is not None
    assert len(D.label_mapping.layers) == 8 and all(b.skip is None for b in D.blocks)
    assert D.epilogue.mbstd is not None and D.epilogue.mbstd.group_size == 32


# ------------------------------------------------------------------------------------------------
# Contract


@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_output_shapes(resolution: int) -> None:
    G, D = build(TINY, resolution)
    z = torch.randn(4, TINY.z_dim)
    ws = G.mapping(z, None)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2
    assert ws.shape == (4, G.num_ws, TINY.w_dim)
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution) == (32, 32, 0, resolution)
    img = G(z)
    assert img.shape == (4, 3, resolution, resolution) and torch.isfinite(img).all()
    logits, features = D(img, return_features=True)
    assert logits.shape == (4, 1)
    assert features.shape == (4, min(TINY.channel_base // 4, TINY.channel_max)) == (4, D.feature_dim)


def test_conditioning_shapes_and_errors() -> None:
    G, D = build(TINY_COND, 16)
    z, c = torch.randn(4, 32), F.one_hot(torch.tensor([0, 1, 2, 4]), 5).float()
    img = G(z, c)
    assert img.shape == (4, 3, 16, 16)
    assert D(img, c).shape == (4, 1)
    assert D.label_mapping is not None and D.label_mapping.map(None, c).shape == (4, D.feature_dim)
    assert not torch.allclose(G(z, c, noise_mode="const"), G(z, c.roll(1, 0), noise_mode="const"))
    assert not torch.allclose(D(img, c), D(img, c.roll(1, 0)))
    with pytest.raises(ValueError, match="c must be"):
        G(z)
    with pytest.raises(ValueError, match="c must be"):
        D(img)
    # unconditional networks ignore c, including the empty [N, 0] labels of unlabelled datasets
    G0, D0 = build(TINY, 16)
    G0.eval()
    img0 = G0(z, None, noise_mode="const")
    assert torch.equal(G0(z, torch.zeros(4, 0), noise_mode="const"), img0)
    assert torch.equal(D0(img0, torch.zeros(4, 0)), D0(img0))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    G, D = build(dataclasses.replace(TINY_COND, d_architecture="resnet"), 16)
    z, c = torch.randn(4, 32), F.one_hot(torch.arange(4), 5).float()
    F.softplus(-D(G(z, c), c)).sum().backward()
    reals = torch.randn(4, 3, 16, 16)
    D.zero_grad()
    (F.softplus(D(G(z, c).detach(), c)) + F.softplus(-D(reals, c))).sum().backward()
    for net in (G, D):
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing
    assert any(n.startswith("mapping.layers.0") for n, _ in G.named_parameters())


def test_truncation_psi_zero_gives_the_w_avg_image() -> None:
    G, _ = build(TINY, 16)
    G.eval()
    set_noise_strength(G, 0.5)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    imgs = G(torch.randn(3, 32), truncation_psi=0.0, noise_mode="const")
    expected = G.synthesis(G.mapping.w_avg.expand(1, G.num_ws, -1), noise_mode="const")
    torch.testing.assert_close(imgs, expected.expand(3, -1, -1, -1), atol=1e-5, rtol=1e-5)
    # a cutoff truncates only the first ws
    ws = G.mapping(torch.randn(2, 32), truncation_psi=0.0, truncation_cutoff=3)
    assert torch.equal(ws[:, :3], G.mapping.w_avg.expand(2, 3, -1))
    assert not torch.allclose(ws[:, 3:], G.mapping.w_avg.expand(2, G.num_ws - 3, -1))


def test_w_avg_tracks_the_mean_w_only_when_asked() -> None:
    G, _ = build(TINY, 16)
    z = torch.randn(8, 32)
    G.mapping(z)
    assert torch.equal(G.mapping.w_avg, torch.zeros(32))
    G.mapping(z, update_w_avg=True)
    w_mean = G.mapping.map(z, None).mean(dim=0)
    torch.testing.assert_close(G.mapping.w_avg, (1 - TINY.w_avg_beta) * w_mean)
    assert "mapping.w_avg" in G.state_dict()  # saved with checkpoints


def test_noise_modes() -> None:
    G, _ = build(TINY, 16)
    G.eval()
    set_noise_strength(G, 1.0)
    z = torch.randn(2, 32)
    assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const"))
    assert torch.equal(G(z, noise_mode="none"), G(z, noise_mode="none"))
    assert not torch.allclose(G(z, noise_mode="random"), G(z, noise_mode="random"))
    assert not torch.allclose(G(z, noise_mode="const"), G(z, noise_mode="none"))
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="fixed")


def test_style_mixing_by_splicing_ws() -> None:
    G, _ = build(TINY, 16)
    G.eval()
    ws1, ws2 = G.mapping(torch.randn(2, 32)), G.mapping(torch.randn(2, 32))
    cutoff = 3
    mixed = torch.cat([ws1[:, :cutoff], ws2[:, cutoff:]], dim=1)
    out = G.synthesis(mixed, noise_mode="const")
    assert out.shape == (2, 3, 16, 16)
    assert not torch.allclose(out, G.synthesis(ws1, noise_mode="const"))
    # the last w only drives the final toRGB: changing it changes the image
    last_changed = torch.cat([ws1[:, :-1], ws2[:, -1:]], dim=1)
    assert not torch.allclose(
        G.synthesis(last_changed, noise_mode="const"), G.synthesis(ws1, noise_mode="const")
    )
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(ws1[:, :-1])


def test_fused_and_activation_scaling_modconv_agree() -> None:
    G, _ = build(TINY_COND, 16)
    set_noise_strength(G, 0.3)
    ws = G.mapping(torch.randn(3, 32), F.one_hot(torch.arange(3), 5).float())
    fused = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    scaled = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(fused, scaled, atol=1e-5, rtol=1e-5)


def test_discriminator_features_feed_the_logits() -> None:
    _, D = build(TINY_COND, 16)
    images, c = torch.randn(4, 3, 16, 16), F.one_hot(torch.arange(4), 5).float()
    logits, features = D(images, c, return_features=True)
    trunk = D.trunk(images)
    assert trunk.shape == (4, D.feature_dim, 4, 4)
    torch.testing.assert_close(features, trunk.mean(dim=[2, 3]))
    torch.testing.assert_close(logits, D.head(trunk, c))
    torch.testing.assert_close(logits, D(images, c))
    assert features.requires_grad
    with pytest.raises(ValueError, match="D expects images"):
        D(torch.randn(4, 3, 8, 8), c)


def test_residual_discriminator_block_scales_the_sum_by_sqrt_half() -> None:
    _, D = build(TINY, 16)
    block = D.blocks[1]
    assert block.skip is not None and block.fromrgb is None
    x = torch.randn(2, block.conv.weight.shape[1], 8, 8)
    expected = (block.skip(x) + block.conv_down(block.conv(x))) * math.sqrt(0.5)
    torch.testing.assert_close(block(x, torch.empty(0)), expected)
    _, D_orig = build(dataclasses.replace(TINY, d_architecture="orig"), 16)
    assert all(b.skip is None for b in D_orig.blocks)
    assert count(D) - count(D_orig) == sum(b.skip.weight.numel() for b in D.blocks if b.skip is not None)


def test_cpu_determinism_under_a_seed() -> None:
    def run() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        torch.manual_seed(123)
        G, D = build(TINY, 16)
        set_noise_strength(G, 0.5)
        img = G(torch.randn(4, 32))  # random noise included
        return G.state_dict(), img, D(img)

    sd1, img1, logits1 = run()
    sd2, img2, logits2 = run()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert torch.equal(img1, img2) and torch.equal(logits1, logits2)


def test_conv_clamp_bounds_the_outputs() -> None:
    clamp = 0.05
    G, D = build(dataclasses.replace(TINY, conv_clamp=clamp), 16)
    img = G(torch.randn(4, 32) * 10)
    # every toRGB output is clamped and the FIR upsampling (positive filter) cannot exceed its input
    assert img.abs().max() <= len(G.synthesis.blocks) * clamp + 1e-6
    assert D(img).shape == (4, 1)


def test_build_through_the_model_registry() -> None:
    cfg = parse_model_config(
        {"arch": "stylegan2", "z_dim": 32, "w_dim": 32, "channel_base": 256, "channel_max": 32}
    )
    G, D = build_models(cfg, 16)
    assert isinstance(G, Generator) and isinstance(D, Discriminator)
    with pytest.raises(RecipeError, match="mapping_layers 0"):
        parse_model_config({"mapping_layers": 0, "z_dim": 16})
    with pytest.raises(ValueError, match="power of two"):
        build(TINY, 24)


# ------------------------------------------------------------------------------------------------
# Layers


def test_equalized_lr_runtime_scaling() -> None:
    torch.manual_seed(0)
    fc = EqualizedLinear(256, 128, lr_mult=0.01, bias_init=0.5)
    assert fc.weight.std().item() == pytest.approx(100.0, rel=0.05)  # stored as N(0, 1) / lr_mult
    assert fc.weight_gain == pytest.approx(0.01 / 16) and fc.bias_gain == 0.01
    x = torch.randn(8, 256)
    torch.testing.assert_close(fc(x), x @ (fc.weight * 0.01 / 16).t() + 0.5 * 0.01)
    conv = EqualizedConv2d(16, 8, 3)
    assert conv.weight_gain == pytest.approx(1 / math.sqrt(16 * 9))
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight / math.sqrt(144), conv.bias, padding=1))
    # He gain: a lrelu layer keeps the second moment of unit-variance inputs near 1
    deep = EqualizedLinear(512, 512, activation="lrelu")
    y = deep(torch.randn(4096, 512))
    assert y.square().mean().item() == pytest.approx(1.0, rel=0.1)


def _upfirdn_reference(
    x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int], gain: float
):
    """The FIR resampling definition: zero-insert, pad, convolve with f * gain, keep every down-th pixel."""
    n, c, h, w = x.shape
    if up > 1:
        z = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kernel = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, kernel, groups=c)[:, :, ::down, ::down]


def test_fir_filter_and_resampling() -> None:
    f = make_fir_filter()
    assert f.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(
        f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    )
    with pytest.raises(ValueError, match="symmetric"):
        make_fir_filter((1, 2, 3, 4))

    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    f64 = f.double()
    # same padding as the official upsample2d / downsample2d ((taps+1)//2, (taps-2)//2 around the up signal)
    torch.testing.assert_close(fir_upsample2d(x, f64), _upfirdn_reference(x, f64, 2, 1, (2, 1), 4.0))
    torch.testing.assert_close(fir_downsample2d(x, f64), _upfirdn_reference(x, f64, 1, 2, (1, 1), 1.0))

    const = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(fir_downsample2d(const, f)[..., 1:-1, 1:-1], torch.tensor(3.0))
    assert torch.allclose(fir_upsample2d(const, f)[..., 2:-2, 2:-2], torch.tensor(3.0))
    # with a zero border no energy leaves the image, so both preserve the mean exactly
    bordered = F.pad(torch.rand(2, 3, 6, 6, dtype=torch.float64), [1, 1, 1, 1])
    torch.testing.assert_close(fir_upsample2d(bordered, f64).mean(), bordered.mean())
    torch.testing.assert_close(fir_downsample2d(bordered, f64).mean(), bordered.mean())
    # centred: resampling commutes with a horizontal flip
    for op in (fir_upsample2d, fir_downsample2d):
        torch.testing.assert_close(op(x.flip(-1), f64), op(x, f64).flip(-1))


def test_fir_ops_have_exact_first_and_second_derivatives() -> None:
    # the FIR ops carry their own adjoint backward (so R1's double backward stays cheap); check it
    f = make_fir_filter().double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)  # odd size: output_padding path
    for op in (
        lambda t: fir_upsample2d(t, f),
        lambda t: fir_downsample2d(t, f),
        lambda t: fir_blur(t, f, pad=1, gain=4),
    ):
        assert torch.autograd.gradcheck(op, (x,))
        assert torch.autograd.gradgradcheck(op, (x,))


def test_resampling_convs_are_centred() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    conv = EqualizedConv2d(4, 6, 3, down=True, activation="lrelu")
    skip = EqualizedConv2d(4, 6, 1, down=True, bias=False)
    with torch.no_grad():
        conv.weight.add_(conv.weight.flip(-1))  # left-right symmetric kernels
    for layer in (conv, skip):
        out = layer(x)
        assert out.shape == (2, 6, 4, 4)
        torch.testing.assert_close(layer(x.flip(-1)), out.flip(-1))
    weight = torch.randn(6, 4, 3, 3)
    weight = weight + weight.flip(-1)
    styles = torch.randn(2, 4)
    for fused in (True, False):
        up = modulated_conv2d(x, weight, styles, up=True, fir=make_fir_filter(), fused=fused)
        assert up.shape == (2, 6, 16, 16)
        flipped = modulated_conv2d(x.flip(-1), weight, styles, up=True, fir=make_fir_filter(), fused=fused)
        torch.testing.assert_close(flipped, up.flip(-1), atol=1e-5, rtol=1e-5)


def test_modulated_conv_matches_a_per_sample_convolution() -> None:
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    expected = []
    for n in range(3):
        w = weight * styles[n].reshape(1, 4, 1, 1)
        w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()  # demodulate (Eq. 3)
        expected.append(F.conv2d(x[n : n + 1], w, padding=1))
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, fused=fused)
        torch.testing.assert_close(out, torch.cat(expected), atol=1e-5, rtol=1e-5)
        # demodulation removes any per-sample style scale
        torch.testing.assert_close(
            modulated_conv2d(x, weight, styles * 7.0, fused=fused), out, atol=1e-5, rtol=1e-5
        )
    plain = modulated_conv2d(x, weight, styles, demodulate=False)
    torch.testing.assert_close(
        plain[1:2], F.conv2d(x[1:2], weight * styles[1].reshape(1, 4, 1, 1), padding=1)
    )


def test_minibatch_stddev_grouping_matches_the_official() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 6, 4, 4)
    out = MinibatchStdDev(group_size=4, num_channels=2)(x)
    assert out.shape == (8, 8, 4, 4)
    torch.testing.assert_close(out[:, :6], x)
    # groups are strided: with 8 samples in groups of 4, sample i is grouped with i +- 2, i +- 4, ...
    for sample in range(8):
        members = x[sample % 2 :: 2]
        for k in range(2):
            chunk = members[:, 3 * k : 3 * (k + 1)]
            expected = (chunk.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            assert torch.allclose(out[sample, 6 + k], expected)
    # group = min(group_size, N): a batch of 3 forms one group of 3
    small = MinibatchStdDev(group_size=4)(x[:3])
    assert torch.allclose(small[:, -1], (x[:3].var(dim=0, unbiased=False) + 1e-8).sqrt().mean())
    # the official code cannot split 6 samples into groups of 4 either
    with pytest.raises(ValueError, match="not divisible by the group size 4"):
        MinibatchStdDev(group_size=4)(x[:6])
