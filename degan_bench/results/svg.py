"""Small deterministic SVG charts (hand-written, no matplotlib): the same bytes for the same data on every
machine, so pages that inline or link them can be golden-tested and diffed.

- :func:`curve_svg`: a metric over kimg, one line per training seed, the reported value as a dashed line.
- :func:`cells_svg`: one sub-table's reported (hollow) vs reproduced (filled, interval or std bar) values
  per column and row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
FONT = 'font-family="sans-serif"'


@dataclass
class Series:
    """One line of a curve: ``label`` and ``(x, y)`` points (sorted by x)."""

    label: str
    points: list[tuple[float, float]]


def _n(value: float) -> str:
    """A coordinate with one decimal (stable text, small files)."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}"


class _Frame:
    """Axes of one chart: data ranges mapped to the plot box, with ticks."""

    def __init__(self, width: int, height: int, x: tuple[float, float], y: tuple[float, float]) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = 48, 10, 24, 34
        pad = (y[1] - y[0]) * 0.08 or max(abs(y[0]) * 0.1, 1.0)
        self.x0, self.x1 = x if x[1] > x[0] else (x[0] - 1, x[0] + 1)
        self.y0, self.y1 = y[0] - pad, y[1] + pad

    def px(self, x: float) -> float:
        span = self.width - self.left - self.right
        return self.left + (x - self.x0) / (self.x1 - self.x0) * span

    def py(self, y: float) -> float:
        span = self.height - self.top - self.bottom
        return self.top + (self.y1 - y) / (self.y1 - self.y0) * span

    def axes(self, xlabel: str, ylabel: str, *, x_ticks: bool = True) -> list[str]:
        bottom, right = self.height - self.bottom, self.width - self.right
        parts = [
            f'<rect x="{self.left}" y="{self.top}" width="{right - self.left}" height="{bottom - self.top}" '
            'fill="white" stroke="#999" stroke-width="0.8"/>'
        ]
        for tick in _ticks(self.y0, self.y1):
            y = _n(self.py(tick))
            parts.append(f'<line x1="{self.left}" y1="{y}" x2="{right}" y2="{y}" stroke="#eee"/>')
            parts.append(
                f'<text x="{self.left - 4}" y="{y}" font-size="9" text-anchor="end" '
                f'dominant-baseline="middle" {FONT}>{_label(tick)}</text>'
            )
        if x_ticks:
            for tick in _ticks(self.x0, self.x1):
                x = _n(self.px(tick))
                parts.append(
                    f'<text x="{x}" y="{bottom + 11}" font-size="9" text-anchor="middle" {FONT}>'
                    f"{_label(tick)}</text>"
                )
        parts.append(
            f'<text x="{(self.left + right) / 2:.1f}" y="{self.height - 4}" font-size="10" '
            f'text-anchor="middle" {FONT}>{escape(xlabel)}</text>'
        )
        parts.append(
            f'<text x="11" y="{(self.top + bottom) / 2:.1f}" font-size="10" text-anchor="middle" '
            f'transform="rotate(-90 11 {(self.top + bottom) / 2:.1f})" {FONT}>{escape(ylabel)}</text>'
        )
        return parts


def _document(width: int, height: int, title: str, parts: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">',
            f"<title>{escape(title)}</title>",
            f'<text x="{width / 2:.1f}" y="14" font-size="11" text-anchor="middle" {FONT}>'
            f"{escape(title)}</text>",
            *parts,
            "</svg>",
            "",
        ]
    )


def curve_svg(
    series: list[Series],
    *,
    title: str,
    ylabel: str,
    reported: float | None = None,
    width: int = 360,
    height: int = 220,
) -> str:
    """``ylabel`` over kimg for each series; ``reported`` (when comparable) as a dashed line."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + ([reported] if reported is not None else [])
    if not xs:
        parts = [
            f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" font-size="11" text-anchor="middle" '
            f'fill="#666" {FONT}>no {escape(ylabel)} values yet</text>'
        ]
        return _document(width, height, title, parts)
    frame = _Frame(width, height, (min(0.0, min(xs)), max(xs)), (min(ys), max(ys)))
    parts = frame.axes("kimg", ylabel)
    if reported is not None:
        y = _n(frame.py(reported))
        parts.append(
            f'<line x1="{frame.left}" y1="{y}" x2="{width - frame.right}" y2="{y}" stroke="#444" '
            'stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{width - frame.right - 3}" y="{float(y) - 3:.1f}" font-size="9" text-anchor="end" '
            f'fill="#444" {FONT}>reported {_label(reported)}</text>'
        )
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = " ".join(f"{_n(frame.px(x))},{_n(frame.py(y))}" for x, y in line.points)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for x, y in line.points:
            parts.append(f'<circle cx="{_n(frame.px(x))}" cy="{_n(frame.py(y))}" r="2" fill="{color}"/>')
        last_x, last_y = line.points[-1]
        parts.append(
            f'<text x="{frame.left + 4}" y="{frame.top + 11 + 11 * index}" font-size="9" fill="{color}" '
            f"{FONT}>{escape(line.label)}: {_label(last_y)} at {_label(last_x)} kimg</text>"
        )
    return _document(width, height, title, parts)


@dataclass
class Point:
    """One cell in :func:`cells_svg`: its column index, row index and values."""

    column: int
    row: int
    reported: float | None  # only when comparable with ours
    mean: float | None
    low: float | None  # interval (or ± std) of ours
    high: float | None


def cells_svg(points: list[Point], *, columns: list[str], rows: list[str], title: str, ylabel: str) -> str:
    """Reported (hollow) vs ours (filled, with bar) per column, rows side by side in their colors."""
    width = max(360, 90 * len(columns) + 80)
    height = 240 + 12 * ((len(rows) + 2) // 3)
    ys = [
        v for p in points for v in (p.reported, p.mean, p.low, p.high) if v is not None and math.isfinite(v)
    ]
    if not ys:
        parts = [
            f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" font-size="11" text-anchor="middle" '
            f'fill="#666" {FONT}>nothing to draw: no comparable reported value and no run</text>'
        ]
        return _document(width, height, title, parts)
    legend_rows = (len(rows) + 2) // 3
    frame = _Frame(width, height - 12 * legend_rows, (-0.5, len(columns) - 0.5), (min(ys), max(ys)))
    parts = frame.axes("", ylabel, x_ticks=False)
    bottom = frame.height - frame.bottom
    for index, label in enumerate(columns):
        parts.append(
            f'<text x="{_n(frame.px(index))}" y="{bottom + 12}" font-size="9" text-anchor="middle" {FONT}>'
            f"{escape(label)}</text>"
        )
    slot = 0.8 / max(len(rows), 1)
    for p in points:
        color = PALETTE[p.row % len(PALETTE)]
        x = _n(frame.px(p.column + (p.row - (len(rows) - 1) / 2) * slot))
        if p.reported is not None:
            parts.append(
                f'<circle cx="{x}" cy="{_n(frame.py(p.reported))}" r="4" fill="none" stroke="{color}" '
                'stroke-width="1.5"/>'
            )
        if p.mean is not None:
            if p.low is not None and p.high is not None:
                parts.append(
                    f'<line x1="{x}" y1="{_n(frame.py(p.low))}" x2="{x}" y2="{_n(frame.py(p.high))}" '
                    f'stroke="{color}" stroke-width="1.2"/>'
                )
            parts.append(f'<circle cx="{x}" cy="{_n(frame.py(p.mean))}" r="3" fill="{color}"/>')
    for index, label in enumerate(rows):
        lx = 10 + (index % 3) * (width - 20) / 3
        ly = height - 12 * legend_rows + 12 * (index // 3) + 4
        parts.append(
            f'<circle cx="{lx + 4:.1f}" cy="{ly:.1f}" r="4" fill="{PALETTE[index % len(PALETTE)]}"/>'
        )
        parts.append(
            f'<text x="{lx + 11:.1f}" y="{ly:.1f}" font-size="9" dominant-baseline="middle" {FONT}>'
            f"{escape(label)}</text>"
        )
    return _document(width, height, title, parts)
