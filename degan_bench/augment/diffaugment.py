"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentation applied to every D input.

Behaviour follows the official ``DiffAugment_pytorch.py`` of mit-han-lab/data-efficient-gans
(commit 0b63395): images are NCHW in [-1, 1]; each op draws one set of parameters per sample; ops run
in policy order; every op is differentiable w.r.t. the images, so gradients reach G.

- ``color``: brightness ``x + U(-0.5, 0.5)``, then saturation ``(x - mean_C) * U(0, 2) + mean_C``
  (channel mean per pixel), then contrast ``(x - mean_CHW) * U(0.5, 1.5) + mean_CHW``.
- ``translation``: integer shift per axis, uniform in ``[-s, s]`` with ``s = int(S * 0.125 + 0.5)``;
  pixels shifted in are zero.
- ``cutout``: one square of side ``int(S * 0.5 + 0.5)`` per image, zeroed; its centre is uniform (the
  official offset range) and it is clipped at the border.

Random numbers come from the global torch RNG of the images' device (or ``generator``), drawn in the
same order and shapes as the official code, so the training loop's RNG capture makes resume exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from degan_bench.schema import did_you_mean

Generator = torch.Generator | None


def _uniform(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """One U(0, 1) draw per sample, shaped to broadcast over C, H, W."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device, generator=generator)


def _randint(low: int, high: int, n: int, device: torch.device, generator: Generator) -> torch.Tensor:
    """``n`` integers uniform in ``[low, high)``."""
    return torch.randint(low, high, (n, 1, 1), device=device, generator=generator).view(n)


def brightness(x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """Add one U(-0.5, 0.5) offset per sample to all its pixels."""
    return x + (_uniform(x, generator) - 0.5)


def saturation(x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by U(0, 2) (one factor per sample)."""
    pixel_mean = x.mean(dim=1, keepdim=True)
    return (x - pixel_mean) * (_uniform(x, generator) * 2) + pixel_mean


def contrast(x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """Scale the deviation from the per-image mean by U(0.5, 1.5)."""
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * (_uniform(x, generator) + 0.5) + image_mean


def color(x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """The official ``color`` op: brightness, saturation, contrast, in that order."""
    return contrast(saturation(brightness(x, generator), generator), generator)


def translation(x: torch.Tensor, generator: Generator = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by whole pixels, ``out[i, j] = x[i + dy, j + dx]``, zero outside the image."""
    n, c, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _randint(-max_dy, max_dy + 1, n, x.device, generator)
    dx = _randint(-max_dx, max_dx + 1, n, x.device, generator)
    # Index into a copy padded by one zero row/column on each side; out-of-range sources land on it.
    padded = F.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(h, device=x.device) + 1 + dy[:, None]).clamp_(0, h + 1)  # (n, h)
    cols = (torch.arange(w, device=x.device) + 1 + dx[:, None]).clamp_(0, w + 1)  # (n, w)
    picked_rows = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2))
    return picked_rows.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def cutout(x: torch.Tensor, generator: Generator = None, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ``int(S * ratio + 0.5)`` per image, clipped at the border."""
    n, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Official centre range: [0, S] for even sides, [0, S - 1] for odd ones.
    centre_y = _randint(0, h + (1 - size_h % 2), n, x.device, generator)
    centre_x = _randint(0, w + (1 - size_w % 2), n, x.device, generator)
    top = (centre_y - size_h // 2)[:, None]
    left = (centre_x - size_w // 2)[:, None]
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_rows = (ys >= top) & (ys < top + size_h)  # (n, h)
    in_cols = (xs >= left) & (xs < left + size_w)  # (n, w)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


OPS: dict[str, Callable[[torch.Tensor, Generator], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> op names; raises ``ValueError`` naming any unknown op.

    An empty string is the empty policy (no augmentation), as in the official code.
    """
    if not policy.strip():
        return ()
    names = tuple(part.strip() for part in policy.split(","))
    for name in names:
        if name not in OPS:
            shown = repr(name) if name else "an empty name (stray comma)"
            hint = did_you_mean(name, OPS) if name else None
            suggestion = f"did you mean {hint!r}? " if hint else ""
            raise ValueError(
                f"DiffAugment policy {policy!r} has unknown op {shown}; {suggestion}ops are "
                f"{', '.join(OPS)}, comma-separated (e.g. 'color,translation,cutout')"
            )
    return names


def diff_augment(x: torch.Tensor, policy: str | Sequence[str], generator: Generator = None) -> torch.Tensor:
    """Apply the ops of ``policy`` (a policy string or parsed op names) to NCHW images ``x``."""
    names = parse_policy(policy) if isinstance(policy, str) else tuple(policy)
    for name in names:
        x = OPS[name](x, generator)
    return x
