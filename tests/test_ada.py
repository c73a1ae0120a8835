"""ADA: the augmentation pipe (identity at p=0, each transform's effect and distribution, double
backward) and the p schedule (adaptive heuristic, linear, fixed, state round-trip, config errors)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from degan_bench.augment.ada import AdaAugment, AdaHeuristic, grid_sample_twice_differentiable
from degan_bench.errors import RecipeError
from degan_bench.methods import get_method
from degan_bench.methods.ada import AdaMethod
from degan_bench.methods.base import DStep, MethodContext
from degan_bench.schema import from_dict

S = 32  # image size for geometric checks
SEED = 0


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Statistical checks below are deterministic; their tolerances hold across seeds."""
    torch.manual_seed(SEED)


def smooth_images(n: int, size: int = S, channels: int = 3) -> torch.Tensor:
    """Random low-frequency images: the sym6 resampling reproduces them almost exactly."""
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.zeros(n, channels, size, size)
    for _ in range(4):
        fy, fx = torch.randint(0, 3, (2, n, 1, 1, 1)).float()
        phase = torch.rand(n, channels, 1, 1) * 2 * math.pi
        images += 0.25 * torch.cos(2 * math.pi * (fy * yy + fx * xx) / size + phase)
    return images


def blobs(n: int, cy: float, cx: float, sigma: float = 1.5, size: int = S) -> torch.Tensor:
    """Grey Gaussian blobs centred at pixel (cy, cx); background 0."""
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return blob.expand(n, 3, size, size).clone()


def moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centroid (y, x) and standard deviations (y, x) of the (clamped non-negative) first channel."""
    mass = images[:, 0].clamp(min=0)
    coords = torch.arange(images.shape[-1], dtype=torch.float32)
    total = mass.sum(dim=(1, 2))
    cy = (mass.sum(dim=2) * coords).sum(dim=1) / total
    cx = (mass.sum(dim=1) * coords).sum(dim=1) / total
    vy = (mass.sum(dim=2) * (coords - cy[:, None]) ** 2).sum(dim=1) / total
    vx = (mass.sum(dim=1) * (coords - cx[:, None]) ** 2).sum(dim=1) / total
    return cy, cx, vy.sqrt(), vx.sqrt()


def robust_std(values: torch.Tensor) -> float:
    """Standard deviation from the median absolute deviation (insensitive to a few border effects)."""
    return float((values - values.median()).abs().median() * 1.4826)


def only(*transforms: str, p: float = 1.0) -> AdaAugment:
    return AdaAugment(transforms, p=p)


# -- the pipe ---------------------------------------------------------------------------------------


def test_p_zero_is_the_exact_identity_and_draws_nothing() -> None:
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    state = torch.get_rng_state()
    assert AdaAugment("bgc", p=0.0)(x) is x
    assert torch.equal(torch.get_rng_state(), state)


def asymmetric(images: torch.Tensor) -> torch.Tensor:
    """The images that differ clearly from every mirror and quarter turn of themselves."""
    variants = [images.flip(-1)] + [images.rot90(k, (2, 3)) for k in (1, 2, 3)]
    distance = torch.stack([(images - v).abs().amax(dim=(1, 2, 3)) for v in variants]).min(dim=0).values
    return images[distance > 0.5]


def test_xflip_mirrors_half_of_the_samples() -> None:
    x = asymmetric(smooth_images(300))
    assert len(x) > 150
    y = only("xflip")(x)
    same = (y - x).abs().amax(dim=(1, 2, 3))
    mirrored = (y - x.flip(-1)).abs().amax(dim=(1, 2, 3))
    assert (torch.minimum(same, mirrored) < 0.1).all()
    assert 0.38 < (mirrored < same).float().mean() < 0.62  # flip with probability 1/2 at p = 1


def test_rotate90_rotates_by_each_multiple_of_90_degrees() -> None:
    x = asymmetric(smooth_images(300))
    assert len(x) > 150
    y = only("rotate90")(x)
    errors = torch.stack([(y - x.rot90(k, (2, 3))).abs().amax(dim=(1, 2, 3)) for k in range(4)], dim=1)
    assert (errors.min(dim=1).values < 0.12).all()
    counts = torch.bincount(errors.argmin(dim=1), minlength=4)
    assert (counts > len(x) / 4 * 0.6).all()  # all four quarter turns occur, about equally


def test_integer_translation_moves_by_whole_pixels_within_an_eighth() -> None:
    x = blobs(300, 15.5, 15.5)
    cy, cx, _, _ = moments(only("xint")(x))
    dy, dx = cy - 15.5, cx - 15.5
    for d in (dy, dx):
        assert (d - d.round()).abs().max() < 0.05
        assert set(d.round().int().tolist()) == set(range(-4, 5))  # round(U(-0.125, 0.125) * 32)


def test_isotropic_scale_is_lognormal_with_log2_std_0_2() -> None:
    x = blobs(400, 15.5, 15.5, sigma=2.0)
    _, _, sy, sx = moments(only("scale")(x))
    _, _, sy0, sx0 = moments(x[:1])
    log_scale_y, log_scale_x = torch.log2(sy / sy0), torch.log2(sx / sx0)
    assert torch.allclose(log_scale_y, log_scale_x, atol=0.02)  # isotropic
    assert abs(log_scale_x.mean()) < 0.03
    assert 0.17 < log_scale_x.std() < 0.23


def test_anisotropic_scale_stretches_one_axis_and_squeezes_the_other() -> None:
    x = blobs(400, 15.5, 15.5, sigma=2.5)
    _, _, sy, sx = moments(only("aniso")(x))
    _, _, sy0, sx0 = moments(x[:1])
    log_x, log_y = torch.log2(sx / sx0), torch.log2(sy / sy0)
    # (s, 1/s), up to the blur of resampling. Beyond s ~ 1.4 the squeezed axis shows reflected copies
    # of the blob from the padding, as in the official pipe.
    moderate = (log_x.abs() < 0.5) & (log_y.abs() < 0.5)
    assert moderate.float().mean() > 0.95
    assert torch.allclose(log_x[moderate], -log_y[moderate], atol=0.05)
    assert 0.17 < robust_std(log_x) < 0.23


def test_rotation_keeps_the_radius_and_fires_with_overall_probability_p() -> None:
    # 5 px right of the centre: far enough from the border that no reflected copy is rotated in.
    x = blobs(600, 15.5, 20.5)
    cy, cx, _, _ = moments(only("rotate", p=0.5)(x))
    radius = torch.hypot(cy - 15.5, cx - 15.5)
    assert (radius - 5).abs().max() < 0.3
    moved = torch.hypot(cy - 15.5, cx - 20.5) > 0.6
    # Pre- and post-rotation each fire with 1 - sqrt(1 - p), so P(rotated) = p = 0.5 (not 0.75);
    # a few rotations by |angle| < 0.12 rad stay undetected.
    assert 0.4 < moved.float().mean() < 0.56
    angle = torch.atan2(cy - 15.5, cx - 15.5)[moved]
    assert angle.min() < -2.5 and angle.max() > 2.5  # uniform over the full circle


def test_fractional_translation_is_normal_with_std_an_eighth_of_the_size() -> None:
    x = blobs(800, 15.5, 15.5)
    cy, cx, _, _ = moments(only("xfrac")(x))
    for d in (cy - 15.5, cx - 15.5):
        assert 0.9 * S / 8 < d.std() < 1.1 * S / 8
        assert (d - d.round()).abs().max() > 0.3  # not whole pixels


@pytest.mark.parametrize(
    "transforms", [("xflip", "rotate90", "xint"), ("scale",), ("rotate",), ("aniso",), ("xfrac",)]
)
def test_geometric_transforms_keep_a_constant_image_constant(transforms: tuple[str, ...]) -> None:
    # Reflect padding: no black borders enter the image. (Composite transforms can reach beyond the
    # padding, which the official code caps at the image size, and then do bring in zeros.)
    x = torch.full((200, 3, 16, 16), 0.7)
    assert (AdaAugment(transforms, p=1.0)(x) - 0.7).abs().max() < 1e-3


def test_brightness_adds_normal_offsets_with_std_0_2() -> None:
    x = torch.rand(2000, 3, 4, 4) * 2 - 1
    delta = only("brightness")(x) - x
    per_sample = delta[:, 0, 0, 0]
    assert torch.allclose(delta, per_sample.view(-1, 1, 1, 1).expand_as(delta), atol=1e-5)
    assert 0.185 < per_sample.std() < 0.215 and abs(per_sample.mean()) < 0.015


def test_brightness_fires_with_probability_p() -> None:
    x = torch.rand(2000, 3, 4, 4)
    changed = (only("brightness", p=0.3)(x) - x).abs().amax(dim=(1, 2, 3)) > 0
    assert 0.26 < changed.float().mean() < 0.34


def test_contrast_scales_around_zero_lognormally_with_log2_std_0_5() -> None:
    x = torch.rand(2000, 3, 4, 4) + 0.5
    ratio = only("contrast")(x) / x
    per_sample = ratio[:, 0, 0, 0]
    assert torch.allclose(ratio, per_sample.view(-1, 1, 1, 1).expand_as(ratio), rtol=1e-5)
    assert 0.46 < torch.log2(per_sample).std() < 0.54


def test_luma_flip_negates_grey_images_half_of_the_time() -> None:
    grey = (torch.rand(1000, 1, 4, 4) * 2 - 1).expand(1000, 3, 4, 4)
    y = only("lumaflip")(grey)
    negated = (y + grey).abs().amax(dim=(1, 2, 3)) < 1e-5
    kept = (y - grey).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (negated | kept).all()
    assert 0.44 < negated.float().mean() < 0.56


def test_luma_flip_reflects_colours_about_the_grey_plane() -> None:
    x = torch.rand(200, 3, 4, 4)
    y = only("lumaflip")(x)
    flipped = (y - x).abs().amax(dim=(1, 2, 3)) > 1e-5
    # Chroma (deviation from the channel mean) is kept; the channel mean is negated.
    chroma = lambda t: t - t.mean(dim=1, keepdim=True)  # noqa: E731
    assert torch.allclose(chroma(y), chroma(x), atol=1e-5)
    assert torch.allclose(y[flipped].mean(dim=1), -x[flipped].mean(dim=1), atol=1e-5)


def test_hue_rotation_keeps_luma_and_chroma_length_and_grey() -> None:
    x = torch.rand(200, 3, 4, 4)
    y = only("hue")(x)
    chroma_x, chroma_y = x - x.mean(dim=1, keepdim=True), y - y.mean(dim=1, keepdim=True)
    assert torch.allclose(y.mean(dim=1), x.mean(dim=1), atol=1e-5)
    assert torch.allclose(chroma_y.norm(dim=1), chroma_x.norm(dim=1), atol=1e-5)
    assert (chroma_y - chroma_x).abs().max() > 0.1
    grey = x[:, :1].expand(200, 3, 4, 4)
    assert torch.allclose(only("hue")(grey), grey, atol=1e-5)


def test_saturation_scales_chroma_lognormally_with_log2_std_1() -> None:
    x = torch.rand(2000, 3, 4, 4)
    y = only("saturation")(x)
    assert torch.allclose(y.mean(dim=1), x.mean(dim=1), atol=1e-5)
    chroma_x, chroma_y = x - x.mean(dim=1, keepdim=True), y - y.mean(dim=1, keepdim=True)
    ratio = chroma_y.flatten(1).norm(dim=1) / chroma_x.flatten(1).norm(dim=1)
    assert torch.allclose(chroma_y, chroma_x * ratio.view(-1, 1, 1, 1), atol=1e-4)
    assert 0.92 < torch.log2(ratio).std() < 1.08


def test_grey_single_channel_images_are_supported() -> None:
    y = AdaAugment("bgc", p=1.0)(torch.rand(4, 1, 16, 16))
    assert y.shape == (4, 1, 16, 16) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="1 or 3 channels"):
        AdaAugment("color", p=1.0)(torch.rand(2, 2, 8, 8))


def test_half_precision_inputs_are_augmented_and_returned_in_their_dtype() -> None:
    x = torch.rand(4, 3, 16, 16)
    pipe = AdaAugment("bgc", p=0.8)
    reference = pipe(x, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = pipe(x.bfloat16(), generator=torch.Generator().manual_seed(2))
    assert y.dtype == torch.bfloat16
    assert (y.float() - reference).abs().max() < 0.05  # bf16 rounding of input and output only


def test_seeded_and_generator_draws_are_reproducible() -> None:
    x = torch.rand(4, 3, 16, 16)
    pipe = AdaAugment("bgc", p=0.7)
    torch.manual_seed(9)
    a = pipe(x)
    torch.manual_seed(9)
    assert torch.equal(pipe(x), a)
    state = torch.get_rng_state()
    b = pipe(x, generator=torch.Generator().manual_seed(9))
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(a, b)


def test_unknown_sets_and_transforms_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown ADA augment set 'bgcfnc'"):
        AdaAugment("bgcfnc")
    with pytest.raises(ValueError, match="unknown ADA transforms"):
        AdaAugment(("xflip", "cutout"))


# -- autograd ---------------------------------------------------------------------------------------


def test_grid_sample_wrapper_matches_torch_and_has_correct_second_order_gradients() -> None:
    images = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(2, 4, 3, 2, dtype=torch.float64) * 2.4 - 1.2
    reference = nn.functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    assert torch.allclose(grid_sample_twice_differentiable(images, grid), reference)
    assert torch.autograd.gradcheck(lambda t: grid_sample_twice_differentiable(t, grid), (images,))
    assert torch.autograd.gradgradcheck(lambda t: grid_sample_twice_differentiable(t, grid), (images,))
    with pytest.raises(ValueError, match="detach the grid"):
        grid_sample_twice_differentiable(images, grid.requires_grad_(True))


def test_whole_pipe_gradients_are_correct_to_second_order() -> None:
    def pipe(t: torch.Tensor) -> torch.Tensor:
        return AdaAugment("bgc", p=0.8)(t, generator=torch.Generator().manual_seed(4))

    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pipe, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(pipe, (x,), fast_mode=True)


def test_r1_through_the_pipe_reaches_the_discriminator() -> None:
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Softplus(), nn.Flatten(), nn.Linear(4 * 14 * 14, 1))
    reals = torch.rand(4, 3, 16, 16, requires_grad=True)
    logits = D(AdaAugment("bgc", p=1.0)(reals))
    (grad,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
    penalty = grad.square().sum(dim=(1, 2, 3)).mean()
    penalty.backward()
    # The final bias does not affect dD/dx; every other parameter gets a finite, non-zero gradient.
    for param in (D[0].weight, D[0].bias, D[3].weight):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


# -- the p schedule ---------------------------------------------------------------------------------


def context(batch: int = 16, total_kimg: float = 10.0) -> MethodContext:
    identity = nn.Identity()
    return MethodContext(
        G=identity, D=identity, G_ema=identity, device=torch.device("cpu"), resolution=16, num_images=100,
        batch=batch, batch_gpu=batch, total_kimg=total_kimg, g_lr=0.002, d_lr=0.002, betas=(0.0, 0.99),
    )  # fmt: skip


def ada(batch: int = 16, total_kimg: float = 10.0, **options: object) -> AdaMethod:
    cls = get_method("ada")
    return cls(from_dict(cls.Config, options), context(batch, total_kimg))


def d_step(real_logits: torch.Tensor) -> DStep:
    n = real_logits.shape[0]
    images = torch.zeros(n, 3, 4, 4)
    return DStep(
        z=torch.zeros(n, 2), c=torch.zeros(n, 0), reals=images, reals_aug=images, real_logits=real_logits,
        real_features=None, fakes=images, fakes_aug=images, fake_logits=-real_logits, fake_features=None,
        G=nn.Identity(), D=nn.Identity(), cur_nimg=0,
    )  # fmt: skip


def run_minibatches(
    method: AdaMethod, logits: list[float], count: int, start: int = 0, batch: int = 16
) -> list[float]:
    """Feed ``count`` minibatches whose reals all get ``logits``; return p after each."""
    history = []
    for i in range(start, start + count):
        method.after_optimizer_step("D", [d_step(torch.tensor(logits).view(-1, 1))])
        method.end_of_minibatch((i + 1) * batch, i)
        history.append(method.pipe.p)
    return history


def test_adaptive_p_rises_when_d_is_confident_on_reals() -> None:
    method = ada(batch=16)
    step = 16 * 4 / 500_000  # batch * interval / (speed_kimg * 1000)
    history = run_minibatches(method, [1.0, 2.0, 0.5, 3.0], 12)
    assert history[:3] == [0.0, 0.0, 0.0]  # adjusted every 4th minibatch only
    assert history[3] == pytest.approx(step) and history[7] == pytest.approx(2 * step)
    assert history[11] == pytest.approx(3 * step)
    assert method.tick_stats() == {"augment_p": pytest.approx(3 * step), "ada_rt": 1.0}


def test_adaptive_p_falls_when_logits_are_negative_and_stops_at_zero() -> None:
    method = ada(batch=16, p_init=0.0003)
    history = run_minibatches(method, [-1.0, -0.2], 12)
    step = 16 * 4 / 500_000
    assert history[3] == pytest.approx(0.0003 - step) and history[7] == pytest.approx(0.0003 - 2 * step)
    assert history[11] == 0.0
    assert method.tick_stats()["ada_rt"] == -1.0


def test_adaptive_uses_the_mean_sign_against_the_target() -> None:
    # r_t = mean sign = (3 - 1) / 4 = 0.5: below 0.6 -> down; exactly the target -> unchanged.
    method = ada(p_init=0.5)
    run_minibatches(method, [5.0, 0.1, 0.2, -9.0], 4)
    assert method.pipe.p < 0.5 and method.tick_stats()["ada_rt"] == 0.5
    tie = ada(p_init=0.5, target=0.5)
    run_minibatches(tie, [5.0, 0.1, 0.2, -9.0], 4)
    assert tie.pipe.p == 0.5


def test_adaptive_speed_and_interval_options() -> None:
    method = ada(batch=32, interval=2, speed_kimg=100)
    history = run_minibatches(method, [1.0], 4, batch=32)
    step = 32 * 2 / 100_000
    assert history == [0.0, pytest.approx(step), pytest.approx(step), pytest.approx(2 * step)]


def test_p_has_no_upper_clamp_by_default_and_p_max_adds_one() -> None:
    free = ada(p_init=1.0)
    run_minibatches(free, [1.0], 8)
    assert free.pipe.p > 1.0  # as in the official code
    clamped = ada(p_init=1.0, p_max=1.0)
    run_minibatches(clamped, [1.0], 8)
    assert clamped.pipe.p == 1.0


def test_linear_mode_ramps_to_the_target_at_adjustment_points() -> None:
    method = ada(batch=16, total_kimg=1.0, mode="linear", target=0.6)
    history = run_minibatches(method, [-1.0], 8)  # the logits do not matter
    assert history[:3] == [0.0, 0.0, 0.0]
    assert history[3] == pytest.approx(0.6 * (64 / 1000) / 1.0)
    assert history[4:7] == [history[3]] * 3
    assert history[7] == pytest.approx(0.6 * (128 / 1000) / 1.0)


def test_fixed_mode_keeps_p_and_still_reports_rt() -> None:
    method = ada(mode="fixed", p_init=0.25)
    assert method.pipe.p == 0.25
    assert method.tick_stats() == {"augment_p": 0.25}  # no r_t before the first measurement
    run_minibatches(method, [1.0, -1.0, 1.0, 1.0], 8)
    assert method.pipe.p == 0.25 and method.tick_stats()["ada_rt"] == 0.5


def test_every_d_evaluation_of_reals_counts_in_rt() -> None:
    method = ada(p_init=0.5)
    for i in range(4):  # two accumulation rounds per minibatch, with different logits
        method.after_optimizer_step("D", [d_step(torch.ones(3, 1))])
        method.after_optimizer_step("D", [d_step(-torch.ones(1, 1))])
        method.end_of_minibatch((i + 1) * 16, i)
    assert method.tick_stats()["ada_rt"] == 0.5  # (12 - 4) / 16


def test_state_dict_round_trip_resumes_exactly_mid_interval() -> None:
    original = ada(batch=16)
    pattern = [[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [1.0, 0.5]]
    for i in range(6):  # stop between adjustments, with a partial sign window
        run_minibatches(original, pattern[i % 4], 1, start=i)
    state = json.loads(json.dumps(original.state_dict()))  # plain JSON-able data
    resumed = ada(batch=16)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == original.state_dict()
    for i in range(6, 30):
        a = run_minibatches(original, pattern[i % 4], 1, start=i)
        b = run_minibatches(resumed, pattern[i % 4], 1, start=i)
        assert a == b
    assert resumed.tick_stats() == original.tick_stats()


def test_heuristic_sums_over_processes_under_distributed(tmp_path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        pipe = AdaAugment("bgc")
        heuristic = AdaHeuristic(
            pipe, mode="adaptive", target=0.6, interval=2, speed_kimg=500, batch=8, total_kimg=1
        )
        heuristic.observe(torch.ones(8, 1))
        heuristic.end_of_minibatch(8)
        heuristic.end_of_minibatch(16)  # a minibatch without observations still joins the reduce
        assert heuristic.last_rt == 1.0 and pipe.p == pytest.approx(8 * 2 / 500_000)
    finally:
        dist.destroy_process_group()


def test_method_augments_with_its_pipe() -> None:
    method = ada(mode="fixed", p_init=1.0, augment_set="color")
    x = torch.rand(4, 3, 8, 8)
    torch.manual_seed(1)
    y = method.augment(x)
    torch.manual_seed(1)
    assert torch.equal(y, AdaAugment("color", p=1.0)(x))
    assert ada().augment(x) is x  # p starts at 0


def test_config_validation() -> None:
    cls = get_method("ada")
    with pytest.raises(RecipeError, match="did you mean 'adaptive'"):
        from_dict(cls.Config, {"mode": "adaptve"})
    with pytest.raises(RecipeError, match="above the maximum"):
        from_dict(cls.Config, {"target": 1.5})
    with pytest.raises(RecipeError, match="'bgcfnc' is not allowed"):
        from_dict(cls.Config, {"augment_set": "bgcfnc"})
    with pytest.raises(RecipeError, match=r"p_init 0\.5 is above p_max 0\.2"):
        from_dict(cls.Config, {"p_init": 0.5, "p_max": 0.2})
    with pytest.raises(RecipeError, match="below the minimum"):
        from_dict(cls.Config, {"interval": 0})
    with pytest.raises(RecipeError, match="unknown key"):
        from_dict(cls.Config, {"ada_kimg": 100})
