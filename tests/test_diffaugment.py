"""DiffAugment ops: ranges, invariants, official rounding, gradients, seeding, policy parsing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from degan_bench.augment import diffaugment as da
from degan_bench.errors import RecipeError
from degan_bench.methods import get_method
from degan_bench.methods.base import MethodContext
from degan_bench.schema import from_dict

SEED = 0


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Statistical checks below are deterministic; their tolerances hold across seeds."""
    torch.manual_seed(SEED)


def distinct_images(n: int, size: int | tuple[int, int] = 16, channels: int = 3) -> torch.Tensor:
    """Images whose pixels are all different and non-zero, so zeroed or moved pixels are traceable."""
    h, w = (size, size) if isinstance(size, int) else size
    values = torch.arange(1, n * channels * h * w + 1, dtype=torch.float64)
    return values.view(n, channels, h, w)


def find_shift(out: torch.Tensor, src: torch.Tensor, max_shift: int) -> tuple[int, int]:
    """The one (dy, dx) with out[i, j] = src[i + dy, j + dx] and zeros elsewhere."""
    padded = nn.functional.pad(src, (max_shift,) * 4)
    h, w = src.shape[-2:]
    found = []
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            window = padded[..., max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]
            if torch.equal(window, out):
                found.append((dy, dx))
    assert len(found) == 1, f"output is not a zero-padded integer shift of the input: {found}"
    return found[0]


# -- color ------------------------------------------------------------------------------------------


def test_brightness_adds_one_offset_per_sample_within_half() -> None:
    x = torch.rand(256, 3, 8, 8) * 2 - 1
    delta = da.brightness(x) - x
    per_sample = delta[:, :1, :1, :1]
    assert torch.allclose(delta, per_sample.expand_as(delta), atol=1e-6)
    assert per_sample.min() >= -0.5 and per_sample.max() <= 0.5
    assert per_sample.min() < -0.4 and per_sample.max() > 0.4  # the full range is used


def test_saturation_keeps_pixel_channel_mean_and_scales_chroma_by_u02() -> None:
    x = torch.rand(256, 3, 8, 8, dtype=torch.float64) * 2 - 1
    y = da.saturation(x)
    assert torch.allclose(y.mean(dim=1), x.mean(dim=1))
    factor = (y - y.mean(dim=1, keepdim=True)) / (x - x.mean(dim=1, keepdim=True))
    per_sample = factor.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert per_sample.min() >= 0 and per_sample.max() <= 2
    assert per_sample.min() < 0.1 and per_sample.max() > 1.9


def test_contrast_keeps_image_mean_and_scales_deviation_by_u05_15() -> None:
    x = torch.rand(256, 3, 8, 8, dtype=torch.float64) * 2 - 1
    y = da.contrast(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    factor = ((y - y.mean(dim=(1, 2, 3), keepdim=True)) / (x - x.mean(dim=(1, 2, 3), keepdim=True))).flatten(
        1
    )
    assert torch.allclose(factor, factor[:, :1].expand_as(factor))
    assert factor.min() >= 0.5 and factor.max() <= 1.5
    assert factor.min() < 0.6 and factor.max() > 1.4


def test_color_is_brightness_then_saturation_then_contrast() -> None:
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    torch.manual_seed(5)
    combined = da.color(x)
    torch.manual_seed(5)
    sequential = da.contrast(da.saturation(da.brightness(x)))
    assert torch.equal(combined, sequential)


# -- translation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "max_shift"), [(16, 2), (20, 3), (15, 2), (17, 2)])
def test_translation_is_a_zero_padded_integer_shift_with_official_range(size: int, max_shift: int) -> None:
    # int(S * 0.125 + 0.5): 20 -> 3 (round half up, not Python's round-half-even 2), 15 -> 2, 17 -> 2.
    x = distinct_images(300, size, channels=2)
    y = da.translation(x)
    shifts = {find_shift(y[i], x[i], max_shift + 1) for i in range(len(x))}
    assert all(abs(dy) <= max_shift and abs(dx) <= max_shift for dy, dx in shifts)
    assert {dy for dy, _ in shifts} == set(range(-max_shift, max_shift + 1))
    assert {dx for _, dx in shifts} == set(range(-max_shift, max_shift + 1))


def test_translation_keeps_the_multiset_of_the_pixels_that_stay_inside() -> None:
    x = distinct_images(64, 16)
    y = da.translation(x)
    for i in range(len(x)):
        dy, dx = find_shift(y[i], x[i], 3)
        kept = x[i][:, max(dy, 0) : 16 + min(dy, 0), max(dx, 0) : 16 + min(dx, 0)]
        nonzero = y[i][y[i] != 0]
        assert torch.equal(nonzero.sort().values, kept.flatten().sort().values)
        assert (y[i] == 0).sum() == 3 * (256 - kept.shape[1] * kept.shape[2])


def test_translation_shifts_rows_and_columns_independently_on_non_square_images() -> None:
    x = distinct_images(300, (16, 24), channels=1)
    y = da.translation(x)
    shifts = [find_shift(y[i], x[i], 4) for i in range(len(x))]
    assert max(abs(dy) for dy, _ in shifts) == 2  # int(16 * 0.125 + 0.5)
    assert max(abs(dx) for _, dx in shifts) == 3  # int(24 * 0.125 + 0.5)


# -- cutout -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "side"), [(16, 8), (15, 8), (17, 9), (32, 16)])
def test_cutout_zeroes_exactly_one_clipped_square_of_the_official_side(size: int, side: int) -> None:
    x = distinct_images(400, size)
    y = da.cutout(x)
    zero = y == 0
    assert torch.equal(zero.all(dim=1), zero.any(dim=1)), "cutout must zero all channels of a pixel"
    assert torch.equal(y[~zero], x[~zero]), "pixels outside the square are untouched"
    clipped = 0
    for mask in zero[:, 0]:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert mask[top:bottom, left:right].all() and mask.sum() == (bottom - top) * (right - left)
        for lo, hi in ((top, bottom), (left, right)):
            assert hi - lo <= side
            if hi - lo < side:  # shorter than the side only where the square leaves the image
                assert lo == 0 or hi == size
                clipped += 1
    assert clipped > 0  # centres are uniform over the image, so clipping happens
    full = [m for m in zero[:, 0] if m.sum() == side * side]
    assert full, "unclipped squares occur"


@pytest.mark.parametrize(("size", "side"), [(16, 8), (17, 9)])
def test_cutout_centre_reaches_exactly_the_official_positions(size: int, side: int) -> None:
    # Official centre range: [0, S] for an even side, [0, S - 1] for an odd one;
    # first zeroed row = centre - side // 2.
    x = distinct_images(2000, size, channels=1)
    mask = da.cutout(x)[:, 0] == 0
    rows = mask.any(dim=2)
    first = rows.float().argmax(dim=1)
    height = rows.sum(dim=1)
    top = torch.where(first == 0, height - side, first)  # negative when clipped at the top
    last_centre = size if side % 2 == 0 else size - 1
    assert set(top.tolist()) == set(range(-(side // 2), last_centre - side // 2 + 1))


# -- autograd, seeding ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["brightness", "saturation", "contrast", "translation", "cutout", "color"])
def test_gradients_flow_through_every_op(op: str) -> None:
    x = (torch.rand(4, 3, 16, 16, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    weights = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    torch.manual_seed(0)
    (getattr(da, op)(x) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def fn(inp: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        return getattr(da, op)(inp)

    small = (torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (small,))


def test_cutout_gradient_is_the_mask() -> None:
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = da.cutout(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).to(x.dtype))


def test_gradients_reach_a_generator_through_the_full_policy() -> None:
    G = nn.Conv2d(3, 3, 3, padding=1)
    fakes = torch.tanh(G(torch.randn(4, 3, 16, 16)))
    da.diff_augment(fakes, "color,translation,cutout").square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_same_seed_same_augmentation_and_generator_leaves_global_rng_alone() -> None:
    x = torch.rand(8, 3, 16, 16)
    torch.manual_seed(3)
    a = da.diff_augment(x, "color,translation,cutout")
    torch.manual_seed(3)
    b = da.diff_augment(x, "color,translation,cutout")
    assert torch.equal(a, b)
    c = da.diff_augment(x, "color,translation,cutout")
    assert not torch.equal(a, c)

    state = torch.get_rng_state()
    g1 = da.diff_augment(x, "color,translation,cutout", generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(g1, a)  # a CPU generator seeded like the global one draws the same numbers


def test_policy_order_is_respected() -> None:
    x = distinct_images(16, 16)
    torch.manual_seed(1)
    a = da.diff_augment(x, "translation,cutout")
    torch.manual_seed(1)
    b = da.cutout(da.translation(x))
    assert torch.equal(a, b)


# -- policy parsing and the method --------------------------------------------------------------------


def test_parse_policy() -> None:
    assert da.parse_policy("color,translation,cutout") == ("color", "translation", "cutout")
    assert da.parse_policy(" translation , cutout ") == ("translation", "cutout")
    assert da.parse_policy("") == ()
    with pytest.raises(ValueError, match=r"unknown op 'colour'; did you mean 'color'"):
        da.parse_policy("colour,cutout")
    with pytest.raises(ValueError, match="stray comma"):
        da.parse_policy("color,,cutout")
    with pytest.raises(ValueError, match="unknown op 'flip'"):
        da.diff_augment(torch.zeros(1, 3, 4, 4), "flip")


def _context() -> MethodContext:
    identity = nn.Identity()
    return MethodContext(
        G=identity, D=identity, G_ema=identity, device=torch.device("cpu"), resolution=16, num_images=100,
        batch=16, batch_gpu=16, total_kimg=300.0, g_lr=0.002, d_lr=0.002, betas=(0.0, 0.99),
    )  # fmt: skip


def test_method_config_validation_and_augment() -> None:
    cls = get_method("diffaugment")
    assert cls.name == "diffaugment"
    assert from_dict(cls.Config, {}).policy == "color,translation,cutout"
    with pytest.raises(RecipeError, match="unknown op 'rotate'"):
        from_dict(cls.Config, {"policy": "color,rotate"}, path="diffaugment", source="r.yaml")
    with pytest.raises(RecipeError, match="policy is empty"):
        from_dict(cls.Config, {"policy": ""})

    method = cls(from_dict(cls.Config, {"policy": "translation,cutout"}), _context())
    x = distinct_images(4, 16)
    torch.manual_seed(2)
    y = method.augment(x)
    torch.manual_seed(2)
    assert torch.equal(y, da.cutout(da.translation(x)))
    assert method.state_dict() == {} and method.tick_stats() == {}
