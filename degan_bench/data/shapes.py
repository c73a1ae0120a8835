"""``shapes-100``: the embedded demo dataset, drawn procedurally so the demo needs no download.

100 RGB images of 64x64: a background (flat colour, linear gradient, stripes or checkerboard) with one
to three shapes (circles, rings, squares, diamonds, triangles) of random colour, size and position,
filled flat or striped. Everything is integer arithmetic on a 4x supersampled grid followed by an
exact 4x4 box average, and the only randomness is numpy's legacy ``RandomState`` with a fixed seed,
whose stream numpy keeps stable across versions; no fonts, no floating-point transcendental functions,
nothing from the environment. Two generations are byte-identical on any platform.
"""

from __future__ import annotations

import numpy as np

SHAPES_SEED = 20200613
SHAPES_COUNT = 100
SHAPES_RESOLUTION = 64
_SUPERSAMPLE = 4


def _colour(rng: np.random.RandomState) -> np.ndarray:
    return rng.randint(0, 256, size=3).astype(np.int32)


def _stripes(rng: np.random.RandomState, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean stripe pattern of random direction and period (in supersampled units)."""
    a, b = [(1, 0), (0, 1), (1, 1), (1, -1), (2, 1)][rng.randint(5)]
    period = int(rng.randint(3, 9)) * _SUPERSAMPLE
    return ((a * x + b * y + 4096) // period) % 2 == 0


def _background(rng: np.random.RandomState, x: np.ndarray, y: np.ndarray, side: int) -> np.ndarray:
    kind = rng.randint(4)
    c0, c1 = _colour(rng), _colour(rng)
    if kind == 0:  # flat
        return np.broadcast_to(c0, (side, side, 3)).copy()
    if kind == 1:  # linear gradient, horizontal, vertical or diagonal
        direction = rng.randint(3)
        t = [x + 0 * y, y + 0 * x, (x + y) // 2][direction]
        return c0 + (c1 - c0) * t[..., None] // (side - 1)
    if kind == 2:
        mask = _stripes(rng, x, y)
    else:  # checkerboard
        cell = int(rng.randint(4, 17)) * _SUPERSAMPLE
        mask = ((x // cell) + (y // cell)) % 2 == 0
    return np.where(mask[..., None], c0, c1)


def _triangle(
    rng: np.random.RandomState, x: np.ndarray, y: np.ndarray, cx: int, cy: int, r: int
) -> np.ndarray:
    # Three vertices around the centre; inside = all edge functions share the sign of the orientation.
    vx = cx + rng.randint(-r, r + 1, size=3)
    vy = cy + rng.randint(-r, r + 1, size=3)
    edges = [(vx[i], vy[i], vx[(i + 1) % 3], vy[(i + 1) % 3]) for i in range(3)]
    area = (vx[1] - vx[0]) * (vy[2] - vy[0]) - (vy[1] - vy[0]) * (vx[2] - vx[0])
    if area == 0:  # degenerate: draw nothing rather than a line
        return np.zeros(np.broadcast(x, y).shape, dtype=bool)
    sign = 1 if area > 0 else -1
    inside = np.ones(np.broadcast(x, y).shape, dtype=bool)
    for x0, y0, x1, y1 in edges:
        inside &= sign * ((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) >= 0
    return inside


def _shape_mask(rng: np.random.RandomState, x: np.ndarray, y: np.ndarray, side: int) -> np.ndarray:
    r = int(rng.randint(side // 10, side // 4))
    cx = int(rng.randint(r // 2, side - r // 2))
    cy = int(rng.randint(r // 2, side - r // 2))
    kind = rng.randint(5)
    dx, dy = x - cx, y - cy
    if kind == 0:
        return dx * dx + dy * dy <= r * r
    if kind == 1:  # ring
        inner = r * int(rng.randint(40, 80)) // 100
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= inner * inner)
    if kind == 2:
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if kind == 3:
        return np.abs(dx) + np.abs(dy) <= r
    return _triangle(rng, x, y, cx, cy, r)


def _draw(rng: np.random.RandomState, resolution: int) -> np.ndarray:
    side = resolution * _SUPERSAMPLE
    y, x = np.ogrid[0:side, 0:side]
    x = x.astype(np.int32)  # every intermediate stays far below 2**31
    y = y.astype(np.int32)
    canvas = _background(rng, x, y, side).astype(np.uint8)
    for _ in range(rng.randint(1, 4)):
        mask = _shape_mask(rng, x, y, side)
        fill = np.broadcast_to(_colour(rng).astype(np.uint8), (side, side, 3))
        if rng.randint(3) == 0:  # textured fill
            fill = np.where(_stripes(rng, x, y)[..., None], fill, _colour(rng).astype(np.uint8))
        canvas = np.where(mask[..., None], fill, canvas)
    blocks = canvas.reshape(resolution, _SUPERSAMPLE, resolution, _SUPERSAMPLE, 3).sum(
        axis=(1, 3), dtype=np.int32
    )
    area = _SUPERSAMPLE * _SUPERSAMPLE
    return ((blocks + area // 2) // area).astype(np.uint8)


def generate_shapes(
    count: int = SHAPES_COUNT, resolution: int = SHAPES_RESOLUTION, seed: int = SHAPES_SEED
) -> np.ndarray:
    """``count`` images, uint8 ``[count, resolution, resolution, 3]``, identical on every call."""
    rng = np.random.RandomState(seed)
    return np.stack([_draw(rng, resolution) for _ in range(count)])
