"""Who wins: our own numbers ranked per column, and when a difference counts.

Our numbers of one column share one protocol (the cell's ``our_protocol``), one preset, one checkpoint
rule and the standard Inception weights, so they can be ranked against each other; reported numbers
are not ranked against ours or against other sources (each source's own ordering is shown apart, see
:func:`degan_bench.results.tables.claimed_orderings`).

**Significance rule** (the one rule behind every bold number on the pages): method A is significantly
better than method B when both have at least ``min_seeds`` training seeds (3 by default, the same as
for a t-interval), A's mean is better by the metric's direction, and Welch's two-sided t-test of the
two means rejects equality at ``1 − confidence`` (5 % by default). The first-ranked method is bold
only when it is significantly better than *every* other ranked method of its column. A method with
n = 1 or 2 is therefore never significantly better (nor worse) than another: its rank is shown, never
bold. Entries under different protocols are never put in one ranking.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from degan_bench.results.numbers import LOWER_IS_BETTER, present
from degan_bench.results.tables import TableResult, Tolerance

RANK_COLUMNS = [
    "protocol",
    "dataset",
    "column",
    "our_protocol",
    "metric",
    "rank",
    "row",
    "method",
    "mean",
    "std",
    "n",
    "ci_low",
    "ci_high",
    "p_next",
    "better_than_next",
    "bold",
    "run_ids",
]
#: the columns of one entry before it is ranked (what :func:`rank_entries` adds left out)
ENTRY_COLUMNS = [c for c in RANK_COLUMNS if c not in ("rank", "p_next", "better_than_next", "bold")]


def welch_p(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Two-sided p-value of Welch's t-test of two means from (mean, std, n); None without enough seeds."""
    if not all(present(x[k]) for x in (a, b) for k in ("mean", "std")):
        return None
    if a["std"] == 0 and b["std"] == 0:
        return 0.0 if a["mean"] != b["mean"] else 1.0
    result = stats.ttest_ind_from_stats(
        a["mean"], a["std"], int(a["n"]), b["mean"], b["std"], int(b["n"]), equal_var=False
    )
    p = float(result.pvalue)
    return p if math.isfinite(p) else None


def significantly_better(
    a: dict[str, Any], b: dict[str, Any], metric: str, tolerance: Tolerance
) -> tuple[bool, float | None]:
    """(whether ``a`` beats ``b`` under the significance rule of this module, the p-value)."""
    if int(a["n"]) < tolerance.min_seeds or int(b["n"]) < tolerance.min_seeds:
        return False, None
    p = welch_p(a, b)
    better = a["mean"] < b["mean"] if LOWER_IS_BETTER[metric] else a["mean"] > b["mean"]
    return bool(better and p is not None and p < 1 - tolerance.confidence), p


def rank_entries(entries: pd.DataFrame, metric: str, tolerance: Tolerance) -> pd.DataFrame:
    """``entries`` (one protocol: columns mean, std, n, ...) best first, with ``rank``, the p-value
    against the next one (``p_next``), ``better_than_next`` and ``bold`` (the first, when significantly
    better than every other). Equal means keep the given order."""
    if entries.empty:
        return entries.assign(rank=[], p_next=[], better_than_next=[], bold=[])
    ascending = LOWER_IS_BETTER[metric]
    order = entries.assign(_pos=range(len(entries))).sort_values(
        ["mean", "_pos"], ascending=[ascending, True], kind="stable"
    )
    records = order.drop(columns="_pos").to_dict("records")
    for i, record in enumerate(records):
        record["rank"] = i + 1
        if i + 1 < len(records):
            better, p = significantly_better(record, records[i + 1], metric, tolerance)
            record["p_next"], record["better_than_next"] = p, better
        else:
            record["p_next"], record["better_than_next"] = None, False
        record["bold"] = False
    if len(records) >= 2:
        first = records[0]
        records[0]["bold"] = all(
            significantly_better(first, other, metric, tolerance)[0] for other in records[1:]
        )
    return pd.DataFrame(records)


def rank_ours(result: TableResult) -> pd.DataFrame:
    """Our numbers of every (protocol, column) ranked; one ranking per protocol our numbers were made
    under (a column never mixes them)."""
    cells = result.cells
    eligible = cells[
        ~cells["variant"].astype(bool)
        & ~cells["reference_only"].astype(bool)
        & (cells["n"] > 0)
        & cells["mean"].notna()
    ]
    frames = []
    for (_protocol, _dataset, our_protocol), group in eligible.groupby(
        ["protocol", "dataset", "our_protocol"], sort=False
    ):
        metric = str(group["metric"].iloc[0])
        entries = group[ENTRY_COLUMNS].astype(object)
        del our_protocol
        frames.append(rank_entries(entries.reset_index(drop=True), metric, result.tolerance))
    if not frames:
        return pd.DataFrame(columns=RANK_COLUMNS)
    return pd.concat(frames, ignore_index=True).reindex(columns=RANK_COLUMNS)
