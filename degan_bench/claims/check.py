"""Verdicts of claims from the run store and the reported numbers.

Each (cell, protocol) a claim reads is built as a one-cell leaderboard table (:func:`cell_table`) and
:func:`degan_bench.results.tables.build_table` computes it: the same recipe resolution, run matching
(only runs of the cell's recipe hash count), mean, sample std and 95 % t-interval over seeds (n >= 3),
reported-number lookup and within/outside verdict as the leaderboards. Nothing here recomputes those.

A comparison of two numbers a (the cell claimed better) and b uses the leaderboards' uncertainty too:

    d      = improvement of a over b in the metric's direction (b - a for FID/KID, a - b for IS)
    margin = band(metric, b) + halfwidth(a) + halfwidth(b)

where ``band`` is the metric's tolerance (:data:`~degan_bench.results.tables.DEFAULT_TOLERANCES`: FID
0.5 + 5 %, IS 0.1, KID 0.001 + 10 %, per claim overridable) and a half-width is that of the cell's
t-interval over training seeds (0 with fewer than ``min_seeds`` of the tolerance, and for a reported
number). With ``need`` = ``at_least`` x |b| (0 unless the check claims a relative improvement):

- ``holds``: d - margin > 0 (a is better beyond noise) and d + margin >= need (the claimed size is
  within reach);
- ``does not hold``: d + margin < need (a is worse, or improves by less than claimed, beyond noise);
- ``inconclusive``: otherwise (the difference is within noise).

``matches`` holds when d + margin >= 0 (a is not worse than b beyond noise), else does not hold. A verdict
made without intervals (a cell with n < 3) carries ``(n=1)``-style counts, as the leaderboards do.

The claim's verdict: ``holds`` when every check holds; ``does not hold`` when any check does not hold;
else the first of ``no recipe``, ``not enough runs``, ``not comparable``, ``no reported value``,
``inconclusive`` that a check has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from degan_bench.claims.definition import ClaimCell, ClaimDef
from degan_bench.methods import KNOWN_METHODS
from degan_bench.metrics.protocols import get_protocol
from degan_bench.recipes.loader import default_backbone
from degan_bench.results.store import StoredRun
from degan_bench.results.tables import (
    LOWER_IS_BETTER,
    BuildOptions,
    ColumnDef,
    RowDef,
    TableDef,
    Tolerance,
    build_table,
    resolve_cell,
)

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
NO_RECIPE, NOT_ENOUGH, NOT_COMPARABLE, NO_REPORTED = (
    "no recipe",
    "not enough runs",
    "not comparable",
    "no reported value",
)
#: which verdict a claim takes when no check decides it (the first one any check has)
PRECEDENCE = (NO_RECIPE, NOT_ENOUGH, NOT_COMPARABLE, NO_REPORTED, INCONCLUSIVE)


@dataclass
class CellValue:
    """One cell of a claim under one protocol: our aggregate, its reported number, and whether it can
    take part in a comparison (``status`` ``ok``) or why not."""

    key: str
    label: str
    protocol: str
    metric: str
    use: str  # ours | reported
    status: str  # ok | no recipe | not enough runs | not comparable | no reported value
    message: str = ""
    mean: float | None = None
    std: float | None = None
    n: int = 0
    halfwidth: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    reported: float | None = None
    reported_protocol: str | None = None
    reported_where: str = ""
    verification: str | None = None
    leaderboard_verdict: str = ""
    recipe_hash: str | None = None
    run_ids: list[str] = field(default_factory=list)
    counts: str = ""  # pending / incomplete / failed runs, for "not enough runs"

    @property
    def value(self) -> float | None:
        """The number this cell contributes to a check: our mean, or the reported number."""
        return self.reported if self.use == "reported" else self.mean

    @property
    def spread(self) -> float:
        return 0.0 if self.use == "reported" else (self.halfwidth or 0.0)

    @property
    def lower_is_better(self) -> bool:
        return LOWER_IS_BETTER[self.metric]


@dataclass
class CheckResult:
    description: str
    verdict: str
    detail: str
    paper_verdict: str
    paper_detail: str
    cells: list[str]
    protocol: str
    note: str | None = None


@dataclass
class ClaimResult:
    claim: ClaimDef
    cells: dict[tuple[str, str], CellValue]
    checks: list[CheckResult]
    verdict: str
    paper_verdict: str

    def missing(self) -> list[CellValue]:
        """Cells of ours without enough runs (what ``--run`` would train)."""
        return [c for c in self.cells.values() if c.use == "ours" and c.status == NOT_ENOUGH]


# -- cells -------------------------------------------------------------------------------------------
def cell_backbone(cell: ClaimCell) -> str:
    return cell.backbone or default_backbone(cell.method, cell.dataset)


def cell_table(claim: ClaimDef, key: str, protocols: list[str]) -> TableDef:
    """The one-row, one-column leaderboard table of a claim cell (what the leaderboards would build)."""
    cell = claim.cells[key]
    return TableDef(
        title=f"{claim.name}: {cell.display()}",
        description=claim.title,
        backbone=cell_backbone(cell),  # type: ignore[arg-type]
        protocols=protocols,
        source=claim.source_of(cell),
        columns=[ColumnDef(dataset=cell.dataset, label=cell.dataset)],
        rows=[
            RowDef(
                method=cell.method,
                label=cell.display(),
                set=list(cell.set),
                reported_method=cell.reported_method,
            )
        ],
        name=f"claim-{claim.name}-{key}",
        default_preset=claim.preset,
        seeds=claim.seeds,
        tolerance=claim.tolerance,
    )


def _where(row: pd.Series) -> str:
    if row["reported"] is None or pd.isna(row["reported"]):
        return ""
    version = f" arXiv {row['reported_version']}" if row["reported_version"] else ""
    return f"{row['reported_paper']} {row['reported_table']}{version}"


def _counts(row: pd.Series) -> str:
    parts = [
        f"{int(row[k])} {label}"
        for k, label in (
            ("n_pending", "pending"),
            ("n_incomplete", "incomplete"),
            ("n_failed", "failed"),
            ("n_standin", "stand-in weights"),
            ("n_unreadable", "unreadable"),
        )
        if row[k]
    ]
    return ", ".join(parts)


def evaluate_cell(
    claim: ClaimDef,
    key: str,
    protocol: str,
    runs: list[StoredRun],
    reported: pd.DataFrame,
    cache: dict[tuple[Any, ...], Any] | None = None,
    recipes_root: Path | None = None,
) -> CellValue:
    """``key`` under ``protocol``: built by the leaderboards' :func:`build_table`, then classified."""
    cell = claim.cells[key]
    metric = get_protocol(protocol).metric
    base = {"key": key, "label": cell.display(), "protocol": protocol, "metric": metric, "use": cell.use}
    table = cell_table(claim, key, [protocol])
    result = build_table(
        table,
        runs,
        reported,
        BuildOptions(preset=claim.preset, tolerance=claim.tolerance),
        recipes_root=recipes_root,
        recipe_cache=cache,
    )
    row = result.cells[~result.cells["variant"]].iloc[0]
    value = CellValue(
        **base,
        status="ok",
        mean=_num(row["mean"]),
        std=_num(row["std"]),
        n=int(row["n"]),
        halfwidth=_num(row["halfwidth"]),
        ci_low=_num(row["ci_low"]),
        ci_high=_num(row["ci_high"]),
        reported=_num(row["reported"]),
        reported_protocol=row["reported_protocol"] if _num(row["reported"]) is not None else None,
        reported_where=_where(row),
        verification=row["verification"] if _num(row["reported"]) is not None else None,
        leaderboard_verdict=str(row["verdict"]),
        recipe_hash=row["recipe_hash"] if isinstance(row["recipe_hash"], str) else None,
        run_ids=list(row["run_ids"]) if isinstance(row["run_ids"], list) else [],
        counts=_counts(row),
    )
    if cell.use == "reported":
        if value.reported is None:
            value.status, value.message = NO_REPORTED, f"no reported number in {claim.source_of(cell).paper}"
        elif value.reported_protocol != protocol:
            value.status = NOT_COMPARABLE
            value.message = f"reported under {value.reported_protocol}, the check reads {protocol}"
        return value
    if cell.pending and cell.method not in KNOWN_METHODS:
        value.status, value.message = NO_RECIPE, f"{cell.method!r} is not a degan-bench method yet"
        return value
    if row["recipe_status"] != "ok":
        value.status, value.message = (
            NO_RECIPE,
            f"{row['recipe_status']}: {row['recipe_message']}".strip(": "),
        )
        return value
    recipe = resolve_cell(
        table, cell.method, cell.dataset, claim.preset, recipes_root, list(cell.set)
    ).resolved
    evaluated = recipe.recipe.evaluation.protocols if recipe is not None else []
    if claim.preset == "paper" and protocol not in evaluated:
        value.status = NOT_COMPARABLE
        value.message = f"the recipe evaluates {', '.join(evaluated) or 'nothing'}, not {protocol}"
    elif bool(row["mixed_fingerprints"]):
        value.status, value.message = NOT_COMPARABLE, "runs evaluated under different protocol fingerprints"
    elif claim.preset != "paper":
        value.status, value.message = NOT_COMPARABLE, f"{claim.preset} preset: not the paper recipe"
    elif value.n < claim.min_seeds or value.mean is None:
        value.status = NOT_ENOUGH
        value.message = f"{value.n} of {claim.min_seeds} complete run(s)" + (
            f" ({value.counts})" if value.counts else ""
        )
    return value


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if pd.isna(number) else number


# -- checks ------------------------------------------------------------------------------------------
def compare(
    a: float,
    b: float,
    spread_a: float,
    spread_b: float,
    *,
    metric: str,
    tolerance: Tolerance,
    at_least: float = 0.0,
    kind: str = "better",
) -> tuple[str, str]:
    """(verdict, detail) of "a better than b (by at least ``at_least`` of b)" (see the module docstring)."""
    lower = LOWER_IS_BETTER[metric]
    d = (b - a) if lower else (a - b)
    margin = tolerance.band(metric, b) + spread_a + spread_b
    need = at_least * abs(b)
    relative = f" ({d / abs(b):+.1%})" if b else ""
    detail = f"Δ {d:+.4g}{relative} in favour of the first, noise ±{margin:.3g}"
    if need:
        detail += f", claimed ≥ {need:.3g} ({at_least:.1%})"
    if kind == "matches":
        return (HOLDS if d + margin >= 0 else FAILS), detail
    if d + margin < need:
        return FAILS, detail
    if d - margin > 0:
        return HOLDS, detail
    return INCONCLUSIVE, detail


def _combine(verdicts: list[str]) -> str:
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if FAILS in verdicts:
        return FAILS
    return next(v for v in PRECEDENCE if v in verdicts)


def _describe(claim: ClaimDef, check: Any) -> str:
    labels = [claim.cells[c].display() for c in check.cells]
    metric = get_protocol(check.protocol).metric.upper()
    head = f"{metric} ({check.protocol}): "
    if check.kind == "order":
        return head + " better than ".join(labels)
    if check.kind == "better":
        return (
            head
            + f"{labels[0]} better than "
            + (labels[1] if len(labels) == 2 else "each of " + ", ".join(labels[1:]))
        )
    if check.kind == "improvement":
        return head + f"{labels[0]} improves on {labels[1]} by at least {check.at_least:.1%}"
    if check.kind == "matches":
        return head + f"{labels[0]} matches {labels[1]} (not worse beyond noise)"
    return head + ", ".join(labels) + " within tolerance of the reported number"


def _pairs(check: Any) -> list[tuple[str, str]]:
    if check.kind == "order":
        return list(zip(check.cells, check.cells[1:], strict=False))
    return [(check.cells[0], other) for other in check.cells[1:]]


def _ours_verdict(claim: ClaimDef, check: Any, values: dict[str, CellValue]) -> tuple[str, str]:
    cells = [values[c] for c in check.cells]
    blocked = [c for c in cells if c.status != "ok"]
    if blocked:
        verdict = next(v for v in PRECEDENCE if any(c.status == v for c in blocked))
        return verdict, "; ".join(
            f"{c.label}: {c.status}" + (f" ({c.message})" if c.message else "") for c in blocked
        )
    if check.kind == "within_reported":
        verdicts, details = [], []
        for c in cells:
            lb = c.leaderboard_verdict
            v = (
                HOLDS
                if lb.startswith("within")
                else FAILS
                if lb.startswith("outside")
                else (NO_REPORTED if lb == "no reported value" else NOT_COMPARABLE)
            )
            verdicts.append(v)
            details.append(f"{c.label}: {lb}")
        return _combine(verdicts), "; ".join(details)
    verdict, detail = _compare_pairs(claim, check, values, lambda c: (c.value, c.spread, c.label))
    without = [c for c in cells if c.use == "ours" and c.halfwidth is None]
    if without and verdict in (HOLDS, FAILS, INCONCLUSIVE):
        verdict += f" (n={min(c.n for c in without)})"
    return verdict, detail


def _paper_verdict(claim: ClaimDef, check: Any, values: dict[str, CellValue]) -> tuple[str, str]:
    """The check on the paper's own numbers (each cell's reported value, no intervals)."""
    if check.kind == "within_reported":
        return "—", "compares our runs with the reported numbers"
    cells = [values[c] for c in check.cells]
    missing = [c.label for c in cells if c.reported is None]
    if missing:
        return NO_REPORTED, "no reported number for " + ", ".join(missing)
    stated = {c.reported_protocol for c in cells}
    if len(stated) > 1:
        return NOT_COMPARABLE, "the reported numbers were made under " + ", ".join(sorted(map(str, stated)))
    return _compare_pairs(claim, check, values, lambda c: (c.reported, 0.0, f"{c.reported:g}"))


def _compare_pairs(
    claim: ClaimDef,
    check: Any,
    values: dict[str, CellValue],
    side: Callable[[CellValue], tuple[float | None, float, str]],
) -> tuple[str, str]:
    """:func:`compare` over the check's pairs of cells, each cell read as ``side`` gives (value, spread,
    label); the combined verdict and the details joined."""
    verdicts, details = [], []
    for first, second in _pairs(check):
        (a, spread_a, label_a), (b, spread_b, label_b) = side(values[first]), side(values[second])
        assert a is not None and b is not None
        verdict, detail = compare(
            a,
            b,
            spread_a,
            spread_b,
            metric=values[first].metric,
            tolerance=claim.tolerance,
            at_least=check.at_least,
            kind=check.kind,
        )
        verdicts.append(verdict)
        details.append(f"{label_a} vs {label_b}: {detail}")
    return _combine(verdicts), "; ".join(details)


def evaluate_claim(
    claim: ClaimDef,
    runs: list[StoredRun],
    reported: pd.DataFrame,
    *,
    cache: dict[tuple[Any, ...], Any] | None = None,
    recipes_root: Path | None = None,
) -> ClaimResult:
    """Every cell and check of ``claim`` (see the module docstring)."""
    cache = {} if cache is None else cache
    values: dict[tuple[str, str], CellValue] = {}
    for key in claim.cells:
        for protocol in claim.protocols_of(key):
            values[(key, protocol)] = evaluate_cell(claim, key, protocol, runs, reported, cache, recipes_root)
    checks = []
    for check in claim.checks:
        by_key = {c: values[(c, check.protocol)] for c in check.cells}
        verdict, detail = _ours_verdict(claim, check, by_key)
        paper_verdict, paper_detail = _paper_verdict(claim, check, by_key)
        checks.append(
            CheckResult(
                _describe(claim, check),
                verdict,
                detail,
                paper_verdict,
                paper_detail,
                list(check.cells),
                check.protocol,
                check.note,
            )
        )
    verdict = _combine([_base(c.verdict) for c in checks])
    counts = [int(c.verdict.rsplit("(n=", 1)[1].rstrip(")")) for c in checks if "(n=" in c.verdict]
    if counts and verdict in (HOLDS, FAILS, INCONCLUSIVE):
        verdict += f" (n={min(counts)})"
    return ClaimResult(
        claim=claim,
        cells=values,
        checks=checks,
        verdict=verdict,
        paper_verdict=_combine_paper([c.paper_verdict for c in checks]),
    )


def _base(verdict: str) -> str:
    """A verdict without its ``(n=1)`` suffix."""
    return verdict.split(" (n=")[0]


def _combine_paper(verdicts: list[str]) -> str:
    decided = [v for v in verdicts if v != "—"]
    return _combine(decided) if decided else "—"
