"""The one number-format policy of the leaderboards (pages, LaTeX, charts and the index use it).

- **Scale**: FID and IS as they are; KID ×10³, as the papers print it (ADA, InsGen: ``KID×10³``), so a
  KID of 0.00123 reads ``1.23``. Charts of KID use the same scale. CSV and JSON keep raw values.
- **Decimals**: two for every metric value, its standard deviation, interval ends, Δ and tolerance band
  (the papers print FID and IS with two decimals); a relative Δ as a signed percentage with one decimal.
- **Δ** is ``ours − paper`` with its sign (``+0.90``); a minus sign is the typographic ``−``.
- **Missing** is an em dash ``—``.
- **Compute**: GPU-hours with two decimals, CPU-hours with three (smoke runs take minutes).
"""

from __future__ import annotations

import math
from typing import Any

#: display scale per metric (KID is printed ×10³)
SCALE: dict[str, float] = {"fid": 1.0, "is": 1.0, "kid": 1000.0}
DECIMALS = 2
MISSING = "—"
#: lower is better per metric (FID, KID), higher for IS
LOWER_IS_BETTER: dict[str, bool] = {"fid": True, "kid": True, "is": False}


def present(value: Any) -> bool:
    """A finite number (None, NaN and non-numbers are missing)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def scaled(metric: str, value: Any) -> float | None:
    """``value`` on the display scale of ``metric`` (None when missing)."""
    return float(value) * SCALE.get(metric, 1.0) if present(value) else None


def metric_name(metric: str) -> str:
    """``FID``, ``IS``, ``KID×10³``."""
    return "KID×10³" if metric == "kid" else metric.upper()


def arrow(metric: str) -> str:
    return "↓" if LOWER_IS_BETTER.get(metric, True) else "↑"


def metric_header(metric: str) -> str:
    """``FID ↓`` / ``IS ↑`` / ``KID×10³ ↓``: the metric as a column header, with its direction."""
    return f"{metric_name(metric)} {arrow(metric)}"


def _text(number: float) -> str:
    text = f"{number:.{DECIMALS}f}"
    return "0." + "0" * DECIMALS if text == "-0." + "0" * DECIMALS else text.replace("-", "−")


def value(metric: str, number: Any) -> str:
    """A metric value on its display scale: ``46.87``; KID 0.00123 -> ``1.23``."""
    shown = scaled(metric, number)
    return MISSING if shown is None else _text(shown)


def delta(metric: str, number: Any) -> str:
    """A signed difference on the metric's display scale: ``+0.90``, ``−1.20``."""
    shown = scaled(metric, number)
    if shown is None:
        return MISSING
    text = _text(shown)
    return text if text.startswith("−") else "+" + text


def percent(number: Any) -> str:
    """A signed relative difference: ``+1.9%``."""
    if not present(number):
        return MISSING
    return f"{float(number):+.1%}".replace("-", "−")


def mean_sd(metric: str, mean: Any, sd: Any, n: int) -> str:
    """``47.77 ± 1.90 (n=3)``; without ``± sd`` when there is one seed."""
    if not present(mean):
        return MISSING
    spread = f" ± {value(metric, sd)}" if present(sd) else ""
    return f"{value(metric, mean)}{spread} (n={n})"


def interval(metric: str, low: Any, high: Any) -> str:
    """``[45.10, 48.70]``, or ``—`` without an interval."""
    if not (present(low) and present(high)):
        return MISSING
    return f"[{value(metric, low)}, {value(metric, high)}]"


def hours(gpu_hours: Any, cpu_hours: Any) -> str:
    if present(gpu_hours) and float(gpu_hours) > 0:
        return f"{float(gpu_hours):.2f} GPU-h"
    if present(cpu_hours) and float(cpu_hours) > 0:
        return f"{float(cpu_hours):.3f} CPU-h"
    return MISSING
