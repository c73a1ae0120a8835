"""Adaptive discriminator augmentation (Karras et al., NeurIPS 2020): the augmentation pipeline and the
p heuristic.

:class:`AdaAugment` is a differentiable pipeline with the behaviour of stylegan2-ada-pytorch's
``training/augment.py`` (commit d72cc7d) for the ``blit``/``geom``/``color`` groups. Every transform of
the chosen set fires independently per sample with probability ``p``:

=================  ============================================================================
xflip              mirror x with probability 1/2 (so a flip happens with probability p/2)
rotate90           rotate by k * 90 degrees, k uniform in {0, 1, 2, 3}
xint               integer translation, uniform in [-0.125, 0.125] of the size, rounded to pixels
scale              isotropic scale, lognormal: 2 ** N(0, 0.2)
rotate             arbitrary rotation, uniform in [-pi, pi]; applied before AND after aniso, each
                   with p_rot = 1 - sqrt(1 - p) so that P(any rotation) = p
aniso              anisotropic scale (s, 1/s), s = 2 ** N(0, 0.2)
xfrac              fractional translation, N(0, 0.125) of the size
brightness         add N(0, 0.2)
contrast           scale by 2 ** N(0, 0.5)
lumaflip           Householder reflection about the luma axis with probability 1/2
hue                rotate about the luma axis, uniform in [-pi, pi]
saturation         scale the chroma by 2 ** N(0, 1)
=================  ============================================================================

Geometric transforms are composed into one 3x3 matrix per sample and executed once: reflect padding,
2x upsampling with the orthogonal 'sym6' wavelet low-pass filter, bilinear sampling, 2x downsampling
with the same filter. Colour transforms are composed into one 4x4 matrix. Random numbers are drawn from
the images' device RNG (or ``generator``) in the official order, so seeded runs match it and the loop's
RNG capture makes resume exact. ``p == 0`` returns the input tensor itself.

The pipeline is twice differentiable w.r.t. the images (R1 through the augmentation needs a double
backward), which PyTorch's ``grid_sample`` is not; :func:`grid_sample_twice_differentiable` fixes that.

:class:`AdaHeuristic` adjusts ``p`` from the sign of D's outputs on reals (``mode='adaptive'``), ramps it
linearly (``'linear'``, the ``--ada_linear`` of InsGen/FakeCLR), or keeps it (``'fixed'``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Literal

import torch
import torch.nn.functional as F

Generator = torch.Generator | None

#: transform groups of stylegan2-ada-pytorch ``train.py --augpipe`` that this pipeline implements
AUGMENT_SETS: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "bg": ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"),
    "bgc": (
        "xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
        "brightness", "contrast", "lumaflip", "hue", "saturation",
    ),
}  # fmt: skip

_GEOMETRIC = frozenset(AUGMENT_SETS["bg"])
_COLOR = frozenset(AUGMENT_SETS["color"])

# Transform strengths (official AugmentPipe defaults).
XINT_MAX = 0.125  # integer translation range, fraction of the image size
SCALE_STD = 0.2  # log2 std of isotropic scaling
ROTATE_MAX = 1.0  # rotation range, 1 = full circle
ANISO_STD = 0.2  # log2 std of anisotropic scaling
XFRAC_STD = 0.125  # std of fractional translation, fraction of the image size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2 std
HUE_MAX = 1.0  # 1 = full circle
SATURATION_STD = 1.0  # log2 std

#: Daubechies symlet-6 decomposition low-pass filter (the standard published coefficients, e.g.
#: PyWavelets ``Wavelet('sym6').dec_lo``). Orthogonal, so downsampling with it undoes upsampling.
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip
_TAPS = len(SYM6)
_FILTER_MARGIN = _TAPS // 4  # low-res pixels the filter needs beyond the output on each side


# ---------------------------------------------------------------------------------------------------
# grid_sample with a double backward w.r.t. its input
# ---------------------------------------------------------------------------------------------------


class _GridSample(torch.autograd.Function):
    """Bilinear sampling (zeros padding, align_corners=False); gradients w.r.t. the input only."""

    @staticmethod
    def forward(ctx: Any, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(images, grid)
        return torch.grid_sampler_2d(images, grid, 0, 0, False)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        images, grid = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        return _GridSampleTranspose.apply(grad_output, images, grid), None


class _GridSampleTranspose(torch.autograd.Function):
    """The input gradient of :class:`_GridSample`: the transpose of a linear map of ``grad_output``.

    Its own derivative w.r.t. ``grad_output`` is therefore the forward sampling again.
    """

    @staticmethod
    def forward(
        ctx: Any, grad_output: torch.Tensor, images: torch.Tensor, grid: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(grid)
        # The input gradient depends on ``images`` only through its shape (no grid gradient is asked for).
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, images, grid, 0, 0, False, [True, False]
        )
        return grad_images

    @staticmethod
    def backward(ctx: Any, grad_grad_images: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (grid,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return _GridSample.apply(grad_grad_images, grid), None, None


def grid_sample_twice_differentiable(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(images, grid, 'bilinear', 'zeros', align_corners=False)`` with gradients of any
    order w.r.t. ``images``. ``grid`` must not require grad (ADA's grid comes from random parameters)."""
    if grid.requires_grad:
        raise ValueError("grid_sample_twice_differentiable gives no gradient w.r.t. grid; detach the grid")
    return _GridSample.apply(images, grid)


# ---------------------------------------------------------------------------------------------------
# Matrices
# ---------------------------------------------------------------------------------------------------


def _batch_matrix(rows: list[list[Any]], like: torch.Tensor) -> torch.Tensor:
    """(N, R, C) matrices from rows of per-sample tensors and Python numbers; ``like`` is an (N,)
    tensor giving N, dtype and device."""
    n = like.shape[0]
    elems = [e if isinstance(e, torch.Tensor) else like.new_full((n,), float(e)) for row in rows for e in row]
    return torch.stack(elems, dim=-1).view(n, len(rows), len(rows[0]))


def _affine2d(a: Any, b: Any, tx: Any, c: Any, d: Any, ty: Any, like: torch.Tensor) -> torch.Tensor:
    return _batch_matrix([[a, b, tx], [c, d, ty], [0, 0, 1]], like)


def _rotation2d(theta: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(theta), torch.sin(theta)
    return _affine2d(cos, -sin, 0, sin, cos, 0, theta)


def _translation2d(tx: float, ty: float, device: torch.device) -> torch.Tensor:
    return torch.tensor([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]], device=device)


def _scaling2d(sx: float, sy: float, device: torch.device) -> torch.Tensor:
    return torch.diag(torch.tensor([sx, sy, 1.0], device=device))


# ---------------------------------------------------------------------------------------------------
# Resampling filters (separable, 2x)
# ---------------------------------------------------------------------------------------------------


def _upsample2x(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Zero-insertion 2x upsampling convolved with ``taps`` (sum 1, gain 2 per axis): (H, W) -> (2H, 2W)."""
    n, c, h, w = x.shape
    pad = (_TAPS - 2) // 2
    y = x.reshape(n * c, 1, h, w)
    y = F.conv_transpose2d(y, (taps * 2).view(1, 1, 1, _TAPS), stride=(1, 2), padding=(0, pad))
    y = F.conv_transpose2d(y, (taps * 2).view(1, 1, _TAPS, 1), stride=(2, 1), padding=(pad, 0))
    return y.view(n, c, 2 * h, 2 * w)


def _downsample2x_crop(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Correlate with ``taps`` and keep every other sample, dropping the filter margin:
    (2(H + 2m), 2(W + 2m)) -> (H, W) with m = _FILTER_MARGIN."""
    n, c, h2, w2 = x.shape
    y = x.reshape(n * c, 1, h2, w2)[:, :, 1:-1, 1:-1]
    y = F.conv2d(y, taps.view(1, 1, 1, _TAPS), stride=(1, 2))
    y = F.conv2d(y, taps.view(1, 1, _TAPS, 1), stride=(2, 1))
    return y.view(n, c, y.shape[2], y.shape[3])


# ---------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------


class _Draws:
    """Per-sample float32 random draws on the images' device, in the official shapes and order."""

    def __init__(self, n: int, device: torch.device, generator: Generator) -> None:
        self.n, self.device, self.generator = n, device, generator

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand((self.n, *shape), device=self.device, generator=self.generator)

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn((self.n, *shape), device=self.device, generator=self.generator)

    def fires(self, probability: float) -> torch.Tensor:
        """Per-sample booleans, True with ``probability``."""
        return self.uniform() < probability


class AdaAugment:
    """The ADA augmentation pipeline with strength ``p`` (a Python float, checkpointed by the owner).

    ``augment_set`` is one of :data:`AUGMENT_SETS` or a collection of transform names (e.g.
    ``("xflip",)``), which run in the fixed official order whatever the collection's order. Call it
    on NCHW images (1 or 3 channels for colour transforms); the result is differentiable w.r.t. the
    images to any order.
    """

    def __init__(self, augment_set: str | Collection[str] = "bgc", p: float = 0.0) -> None:
        if isinstance(augment_set, str):
            if augment_set not in AUGMENT_SETS:
                raise ValueError(
                    f"unknown ADA augment set {augment_set!r}; choose one of {', '.join(AUGMENT_SETS)}"
                )
            transforms = AUGMENT_SETS[augment_set]
        else:
            transforms = tuple(augment_set)
            unknown = sorted(set(transforms) - set(AUGMENT_SETS["bgc"]))
            if unknown:
                raise ValueError(f"unknown ADA transforms {unknown}; known: {', '.join(AUGMENT_SETS['bgc'])}")
        self.transforms = frozenset(transforms)
        self.p = float(p)
        self._taps: dict[torch.device, torch.Tensor] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])

    def __call__(self, images: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"ADA expects NCHW images, got shape {tuple(images.shape)}")
        if self.p == 0:
            return images
        # The pipe runs in float32 as the official one does, also under autocast; half-precision inputs
        # are converted, float64 stays float64 (gradient checks).
        x = images if images.dtype in (torch.float32, torch.float64) else images.float()
        draws = _Draws(x.shape[0], x.device, generator)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.transforms & _GEOMETRIC:
                x = self._apply_geometric(x, self._geometric_inverse(x, draws))
            if self.transforms & _COLOR:
                x = self._apply_color(x, self._color_matrix(x, draws))
        return x.to(images.dtype)

    def _geometric_inverse(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        """Per-sample 3x3 matrix taking centred output pixel coordinates to centred input ones.

        Transforms are applied to the image in the listed order, so their inverses compose from the
        right: ``inv = inv_1 @ inv_2 @ ...``.
        """
        n, _, h, w = x.shape
        uniform, normal, fires = draws.uniform, draws.normal, draws.fires
        p = self.p
        inv = torch.eye(3, device=x.device).expand(n, 3, 3)
        zero = torch.zeros(n, device=x.device)

        if "xflip" in self.transforms:
            flip = torch.floor(uniform() * 2)
            flip = torch.where(fires(p), flip, zero)
            inv = inv @ _affine2d(1 - 2 * flip, 0, 0, 0, 1, 0, zero)
        if "rotate90" in self.transforms:
            quarter_turns = torch.floor(uniform() * 4)
            quarter_turns = torch.where(fires(p), quarter_turns, zero)
            inv = inv @ _rotation2d(math.pi / 2 * quarter_turns)
        if "xint" in self.transforms:
            shift = (uniform(2) * 2 - 1) * XINT_MAX
            shift = torch.where(uniform(1) < p, shift, torch.zeros_like(shift))  # one gate, both axes
            dx, dy = torch.round(shift[:, 0] * w), torch.round(shift[:, 1] * h)
            inv = inv @ _affine2d(1, 0, -dx, 0, 1, -dy, zero)
        if "scale" in self.transforms:
            s = torch.exp2(normal() * SCALE_STD)
            s = torch.where(fires(p), s, torch.ones_like(s))
            inv = inv @ _affine2d(1 / s, 0, 0, 0, 1 / s, 0, zero)
        # The rotation fires before and/or after the anisotropic scaling; P(either) = p.
        p_rotate = 1 - math.sqrt(min(max(1 - p, 0.0), 1.0))
        if "rotate" in self.transforms:
            theta = (uniform() * 2 - 1) * math.pi * ROTATE_MAX
            inv = inv @ _rotation2d(torch.where(fires(p_rotate), theta, zero))
        if "aniso" in self.transforms:
            s = torch.exp2(normal() * ANISO_STD)
            s = torch.where(fires(p), s, torch.ones_like(s))
            inv = inv @ _affine2d(1 / s, 0, 0, 0, s, 0, zero)
        if "rotate" in self.transforms:
            theta = (uniform() * 2 - 1) * math.pi * ROTATE_MAX
            inv = inv @ _rotation2d(torch.where(fires(p_rotate), theta, zero))
        if "xfrac" in self.transforms:
            shift = normal(2) * XFRAC_STD
            shift = torch.where(uniform(1) < p, shift, torch.zeros_like(shift))
            inv = inv @ _affine2d(1, 0, -shift[:, 0] * w, 0, 1, -shift[:, 1] * h, zero)
        return inv

    def _apply_geometric(self, x: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        device = x.device
        taps = self._filter(device).to(x.dtype)
        half_w, half_h = (w - 1) / 2, (h - 1) / 2

        # Reflect-pad enough that every output corner (plus the filter support) samples real pixels.
        corners = torch.tensor(
            [[-half_w, -half_h, 1.0], [half_w, -half_h, 1.0], [half_w, half_h, 1.0], [-half_w, half_h, 1.0]],
            device=device,
        )
        src = (inv @ corners.t())[:, :2, :]  # (n, xy, corner) in centred input coordinates
        reach = torch.stack([-src[:, 0].min(), -src[:, 1].min(), src[:, 0].max(), src[:, 1].max()])
        need = reach + reach.new_tensor([2 * _FILTER_MARGIN - half_w, 2 * _FILTER_MARGIN - half_h] * 2)
        limit = need.new_tensor([w - 1, h - 1, w - 1, h - 1])
        pad_left, pad_top, pad_right, pad_bottom = (
            torch.minimum(need.clamp(min=0), limit).ceil().int().tolist()
        )
        x = F.pad(x, [pad_left, pad_right, pad_top, pad_bottom], mode="reflect")
        inv = _translation2d((pad_left - pad_right) / 2, (pad_top - pad_bottom) / 2, device) @ inv

        # Work at 2x. Upsampled centred coordinates are twice the low-res ones, except that the sym6
        # pair places the signal half a high-res pixel off centre.
        x = _upsample2x(x, taps)
        inv = _scaling2d(2, 2, device) @ inv @ _scaling2d(0.5, 0.5, device)
        inv = _translation2d(-0.5, -0.5, device) @ inv @ _translation2d(0.5, 0.5, device)

        # Sample an output canvas with the filter margin, in the normalized coordinates of grid_sample.
        out_h, out_w = 2 * (h + 2 * _FILTER_MARGIN), 2 * (w + 2 * _FILTER_MARGIN)
        in_h, in_w = x.shape[2], x.shape[3]
        theta = _scaling2d(2 / in_w, 2 / in_h, device) @ inv @ _scaling2d(out_w / 2, out_h / 2, device)
        grid = F.affine_grid(theta[:, :2, :].to(x.dtype), [n, c, out_h, out_w], align_corners=False)
        x = grid_sample_twice_differentiable(x, grid)
        return _downsample2x_crop(x, taps)

    def _color_matrix(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        """Per-sample 4x4 homogeneous matrix acting on RGB colours (applied in the listed order)."""
        n, c = x.shape[:2]
        uniform, normal, fires = draws.uniform, draws.normal, draws.fires
        p = self.p
        zero, one = torch.zeros(n, device=x.device), torch.ones(n, device=x.device)
        eye = torch.eye(4, device=x.device)
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=x.device) / math.sqrt(3)
        luma_outer = torch.outer(luma, luma)
        m = eye.expand(n, 4, 4)

        if "brightness" in self.transforms:
            b = normal() * BRIGHTNESS_STD
            b = torch.where(fires(p), b, zero)
            m = _batch_matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], zero) @ m
        if "contrast" in self.transforms:
            k = torch.exp2(normal() * CONTRAST_STD)
            k = torch.where(fires(p), k, one)
            m = _batch_matrix([[k, 0, 0, 0], [0, k, 0, 0], [0, 0, k, 0], [0, 0, 0, 1]], zero) @ m
        if "lumaflip" in self.transforms:
            flip = torch.floor(uniform() * 2)
            flip = torch.where(fires(p), flip, zero)
            m = (eye - 2 * luma_outer * flip.view(n, 1, 1)) @ m
        if "hue" in self.transforms and c > 1:
            theta = (uniform() * 2 - 1) * math.pi * HUE_MAX
            theta = torch.where(fires(p), theta, zero)
            m = _rotation_about_luma(theta) @ m
        if "saturation" in self.transforms and c > 1:
            s = torch.exp2(normal() * SATURATION_STD)
            s = torch.where(fires(p), s, one)
            m = (luma_outer + (eye - luma_outer) * s.view(n, 1, 1)) @ m
        return m

    @staticmethod
    def _apply_color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        if c == 3:
            m = m.to(x.dtype)
            flat = m[:, :3, :3] @ flat + m[:, :3, 3:]
        elif c == 1:
            # Grey images: the mean of the RGB outputs for a grey input.
            rows = m[:, :3, :].mean(dim=1, keepdim=True).to(x.dtype)
            flat = flat * rows[:, :, :3].sum(dim=2, keepdim=True) + rows[:, :, 3:]
        else:
            raise ValueError(f"ADA colour transforms need 1 or 3 channels, got {c}")
        return flat.view(n, c, h, w)

    def _filter(self, device: torch.device) -> torch.Tensor:
        taps = self._taps.get(device)
        if taps is None:
            taps = torch.tensor(SYM6, dtype=torch.float32, device=device)
            taps = self._taps[device] = taps / taps.sum()
        return taps


def _rotation_about_luma(theta: torch.Tensor) -> torch.Tensor:
    """(N, 4, 4) homogeneous rotations of RGB by ``theta`` about the grey axis (Rodrigues' formula)."""
    n, device = theta.shape[0], theta.device
    a = 1 / math.sqrt(3)
    axis = torch.full((3,), a, device=device)
    cross = torch.tensor([[0.0, -a, a], [a, 0.0, -a], [-a, a, 0.0]], device=device)
    cos, sin = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
    rot = cos * torch.eye(3, device=device) + sin * cross + (1 - cos) * torch.outer(axis, axis)
    m = torch.eye(4, device=device).repeat(n, 1, 1)
    m[:, :3, :3] = rot
    return m


# ---------------------------------------------------------------------------------------------------
# The p schedule
# ---------------------------------------------------------------------------------------------------

AdaMode = Literal["adaptive", "fixed", "linear"]


class AdaHeuristic:
    """Sets ``pipe.p`` once every ``interval`` minibatches (stylegan2-ada-pytorch ``training_loop.py``).

    - ``adaptive``: ``r_t`` = mean of sign(D(augmented reals)) over every D evaluation of reals since
      the last adjustment (summed over processes under DDP); then
      ``p = max(0, p + sign(r_t - target) * batch * interval / (speed_kimg * 1000))``. The official
      code has no upper clamp; ``p_max`` adds one.
    - ``linear``: ``p = target * (cur_nimg / 1000) / total_kimg`` (InsGen/FakeCLR ``--ada_linear``),
      evaluated at the same points, with ``cur_nimg`` counting the minibatch just finished.
    - ``fixed``: ``p`` never changes.

    ``r_t`` is measured in every mode (it is the overfitting diagnostic of the ADA paper). All state is
    in :meth:`state_dict`, so a resumed run adjusts at the same minibatches with the same values.
    """

    def __init__(
        self,
        pipe: AdaAugment,
        *,
        mode: AdaMode,
        target: float,
        interval: int,
        speed_kimg: float,
        batch: int,
        total_kimg: float,
        p_max: float | None = None,
    ) -> None:
        self.pipe = pipe
        self.mode = mode
        self.target = target
        self.interval = interval
        self.step_size = batch * interval / (speed_kimg * 1000)
        self.total_kimg = total_kimg
        self.p_max = p_max
        self.minibatches = 0
        self.last_rt: float | None = None
        # [sum of signs, count]: this minibatch (local to the process) and since the last adjustment.
        self._pending: torch.Tensor | None = None
        self._window: torch.Tensor | None = None

    def observe(self, real_logits: torch.Tensor) -> None:
        """Record D's outputs on (augmented) reals; call for every D evaluation of reals."""
        signs = real_logits.detach().sign()
        if self._pending is None:
            self._pending = torch.zeros(2, dtype=torch.float64, device=signs.device)
        self._pending[0] += signs.sum()
        self._pending[1] += signs.numel()

    def end_of_minibatch(self, cur_nimg: int) -> None:
        """Advance one global minibatch; every ``interval`` minibatches, measure r_t and set p."""
        self._fold_pending()
        self.minibatches += 1
        if self.minibatches % self.interval:
            return
        rt = None
        if self._window is not None:
            sign_sum, count = self._window.tolist()
            self._window = None
            if count > 0:
                rt = self.last_rt = sign_sum / count
        if self.mode == "adaptive" and rt is not None:
            direction = (rt > self.target) - (rt < self.target)
            self._set_p(max(self.pipe.p + direction * self.step_size, 0.0))
        elif self.mode == "linear":
            self._set_p(self.target * (cur_nimg / 1000) / self.total_kimg)

    def _fold_pending(self) -> None:
        """Add this minibatch's observations (summed over processes under DDP) to the window."""
        pending, self._pending = self._pending, None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank must join the collective, also one that observed nothing.
            if pending is None:
                pending = torch.zeros(2, dtype=torch.float64, device=_collective_device())
            torch.distributed.all_reduce(pending)
        if pending is not None:
            self._window = pending if self._window is None else self._window.to(pending.device) + pending

    def _set_p(self, p: float) -> None:
        self.pipe.p = min(p, self.p_max) if self.p_max is not None else p

    def state_dict(self) -> dict[str, Any]:
        # Checkpoints are taken between minibatches, where nothing is pending; a pending (unreduced)
        # count is kept rather than dropped.
        sign_sum = sign_count = 0.0
        for part in (self._window, self._pending):
            if part is not None:
                part_sum, part_count = part.tolist()
                sign_sum, sign_count = sign_sum + part_sum, sign_count + part_count
        return {
            "minibatches": self.minibatches,
            "sign_sum": sign_sum,
            "sign_count": sign_count,
            "last_rt": self.last_rt,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.minibatches = int(state["minibatches"])
        self.last_rt = None if state["last_rt"] is None else float(state["last_rt"])
        self._pending = None
        sign_sum, sign_count = float(state["sign_sum"]), float(state["sign_count"])
        self._window = torch.tensor([sign_sum, sign_count], dtype=torch.float64) if sign_count else None


def _collective_device() -> torch.device:
    """The device collectives of the default process group run on (NCCL needs CUDA tensors)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
