"""Paper tables as data (``recipes/tables/<name>.yaml``) and the leaderboards built from them.

A table definition names the cells of one paper table: ``rows`` (methods) x ``columns`` (datasets) x
``protocols``. Each row takes its reported numbers from a source in ``results/reported.csv`` (the
table's ``source``, or the row's own); each cell's reproduced number comes from the run store.

How a cell is computed (:func:`build_table`):

- **Recipe**: ``recipes/<method>/<dataset>.yaml`` resolved with the preset (``paper`` by default), the
  table's ``set`` overrides and then the row's (a row axis such as a sparsity level or a Stage I run of
  the same recipe: several rows may share a method). A method outside degan-bench is a *reference*
  row; a missing file, an unimplemented method or a recipe for another backbone shows as such (the
  table stays complete).
- **Runs**: run directories with the cell's method, dataset and preset. Only runs of the recipe's hash
  are aggregated; runs of other hashes (``--set`` experiments, an older recipe) are listed separately as
  *variants* and never averaged in. Runs of another row's recipe in the same column are that row's, not
  variants of this one.
- **Our number**: per run the record of the cell's protocol at the ``last`` checkpoint (``--checkpoint
  best`` for the best one; see :mod:`degan_bench.results.store`). Only complete runs whose record is
  ``ok`` with the standard Inception weights count: mean and sample std (ddof=1) over training seeds,
  with ``n``. Non-standard weights are shown as stand-ins; pending, failed, unreadable and incomplete
  runs are counted and shown, never averaged.
- **Verdict**: ``within`` when ``|ours - reported| <= band + halfwidth``. ``band`` is the metric's
  tolerance, ``absolute + relative * |reported|`` (:data:`DEFAULT_TOLERANCES`, per table overridable);
  ``halfwidth`` is that of our two-sided t-interval of the mean over ``n >= 3`` training seeds (95 % by
  default), i.e. the verdict asks whether our interval reaches the reported value's band. With fewer
  seeds only the band applies and the verdict says ``(n=1)`` / ``(n=2)``. A reported number made under
  another (or an unknown) protocol is *not comparable*.
- **Ranking**: our own numbers are ranked per column (they share one protocol), see
  :mod:`degan_bench.results.ranking`; reported numbers are never ranked against each other here, each
  source's own ordering is kept apart (:attr:`TableResult.claims`).
- **Flags** (table-level notes, :data:`FLAG_TITLES`): protocol mismatch; the paper selected its
  checkpoint on the split it reports; our ``best`` checkpoint was selected on the reporting split;
  reported value only from an aggregator or unverified; other versions of the reported number; copies
  of it that disagree; recipe variants; stand-in weights.
- **Run states**: ``failed`` and ``diverged`` runs, and runs that died before their first tick (still
  ``running`` at kimg 0 with no update for :data:`STALE_START_HOURS`), are *failed*; ``running`` and
  ``stopped`` ones are *incomplete* (``degan-bench sweep`` resumes them).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from scipy import stats

from degan_bench.errors import DeganError, MethodError, RecipeError
from degan_bench.metrics.protocols import get_protocol
from degan_bench.paths import recipes_dir
from degan_bench.recipes.loader import (
    ResolvedRecipe,
    definition_names,
    expected_recipe_path,
    load_definition,
    load_definition_file,
    resolve_recipe,
)
from degan_bench.recipes.schema import PRESETS
from degan_bench.results import numbers
from degan_bench.results import reported as rep
from degan_bench.results.numbers import LOWER_IS_BETTER
from degan_bench.results.store import FAILED_STATUSES, StoredRun, pick_record
from degan_bench.schema import did_you_mean

Checkpoint = Literal["last", "best"]
__all__ = ["LOWER_IS_BETTER"]  # re-exported: the metric directions live in results.numbers
#: statuses of a run that can continue (``degan-bench sweep`` resumes it)
INCOMPLETE_STATUSES = ("running", "stopped")
#: a run still ``running`` at kimg 0 whose run.json was not updated for this long died before training
STALE_START_HOURS = 2.0


# -- definitions ---------------------------------------------------------------------------------
@dataclass
class SourceRef:
    """Which reported numbers a row shows: ``paper`` (a key of
    :data:`~degan_bench.results.reported.PAPERS`), optionally one ``table`` label and ``arxiv_version``
    of it (needed when several exist; ``""`` selects the unversioned rows)."""

    paper: str
    table: str | None = None
    arxiv_version: str | None = None


@dataclass
class ColumnDef:
    """A registered (or reported-only) ``dataset`` and its ``label`` as the paper prints it. ``set``:
    ``--set`` overrides of this column's cells, applied after the table's and before the row's (e.g. the
    ticket sparsity the paper uses at this data amount)."""

    dataset: str
    label: str
    set: list[str] = field(default_factory=list)


@dataclass
class RowDef:
    """A degan-bench ``method`` (or a reference-only baseline), its ``label`` as the paper prints it, the
    ``source`` of its reported numbers (default: the table's) and an optional ``note``. ``group``: rows
    are ranked only against rows of the same group (the paper's own comparison, e.g. ``pre-trained``
    transfer rows apart from from-scratch ones). ``not_compared``: why our runs are not compared with
    this row's numbers although the protocol matches (e.g. the source quotes another configuration).
    ``set``: ``--set`` overrides of this row's cells, applied after the table's (e.g. ``lottery.round=0``
    for a dense row of a sparsity axis). ``reported_method``: the method its reported numbers are filed
    under when that differs from ``method`` (a paper row we train as a variant of another method)."""

    method: str
    label: str
    source: SourceRef | None = None
    note: str | None = None
    group: str | None = None
    not_compared: str | None = None
    set: list[str] = field(default_factory=list)
    reported_method: str | None = None

    @property
    def reported_key(self) -> str:
        """The ``method`` of this row's numbers in ``results/reported.csv`` (default: the row's)."""
        return self.reported_method or self.method


@dataclass(frozen=True)
class MetricTolerance:
    """How far a reproduction may be from a reported value of one metric:
    ``absolute + relative * |reported|``, in the metric's units."""

    relative: float
    absolute: float

    def check(self) -> None:
        if not 0 <= self.relative <= 1 or self.absolute < 0:
            raise ValueError("a metric tolerance needs relative in [0, 1] and absolute >= 0")

    def band(self, reported: float) -> float:
        return self.absolute + self.relative * abs(reported)

    def describe(self) -> str:
        parts = [
            f"{self.absolute:g}" if self.absolute else "",
            f"{self.relative:.0%}" if self.relative else "",
        ]
        return " + ".join(p for p in parts if p) or "0"


#: The default tolerance of each metric: the one place these numbers live (tables override them with
#: ``tolerance: {metrics: {fid: {relative: .., absolute: ..}}}``, the CLI with ``--tolerance``).
#:
#: - FID: 5 % + 0.5. FID's estimator bias and its spread over evaluation seeds grow with the value, and
#:   do not vanish at small FIDs (~0.5 at 10k-50k samples); training-seed spread is not in the band,
#:   it comes from the t-interval when n >= 3.
#: - IS: 0.1, no relative part. IS over 10 splits of 10k images has a split std of ~0.1, while the CIFAR
#:   methods being compared differ by 0.1-0.4 (BigGAN 9.06, CR-BigGAN 9.20, DigGAN 9.28, LeCam 9.45 on
#:   C10 100 %); a relative band (10 % of 9.16 = 0.92) would call all of them reproductions of each other.
#: - KID: 10 % + 0.001. KID is unbiased but noisy at 5k samples (subset std of the order of 1e-3 for
#:   KIDs around 0.01).
DEFAULT_TOLERANCES: dict[str, MetricTolerance] = {
    "fid": MetricTolerance(relative=0.05, absolute=0.5),
    "is": MetricTolerance(relative=0.0, absolute=0.1),
    "kid": MetricTolerance(relative=0.10, absolute=0.001),
}
DEFAULT_CONFIDENCE = 0.95
#: fewest training seeds for a t-interval (with two, t(0.975, 1) = 12.7 makes the interval meaningless)
MIN_SEEDS_FOR_INTERVAL = 3


@dataclass
class Tolerance:
    """Per-metric bands (``metrics``; the ones not given are :data:`DEFAULT_TOLERANCES`'), the
    ``confidence`` of our t-interval over training seeds and the fewest seeds (``min_seeds``) for one."""

    metrics: dict[str, MetricTolerance] = field(default_factory=dict)
    confidence: float = DEFAULT_CONFIDENCE
    min_seeds: int = MIN_SEEDS_FOR_INTERVAL

    def __post_init__(self) -> None:
        self.metrics = {**DEFAULT_TOLERANCES, **self.metrics}

    def check(self) -> None:
        unknown = set(self.metrics) - set(rep.METRICS)
        if unknown:
            raise ValueError(f"tolerance for unknown metric(s) {', '.join(sorted(unknown))}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence {self.confidence} must be in (0, 1)")
        if self.min_seeds < 2:
            raise ValueError(f"min_seeds {self.min_seeds} must be >= 2")
        for tolerance in self.metrics.values():
            tolerance.check()

    def band(self, metric: str, reported: float) -> float:
        return self.metrics[metric].band(reported)

    def halfwidth(self, std: float | None, n: int) -> float | None:
        """Half-width of the two-sided t-interval of our mean, or None with fewer than ``min_seeds``."""
        if n < self.min_seeds or std is None or not math.isfinite(std):
            return None
        return float(stats.t.ppf(0.5 + self.confidence / 2, n - 1)) * std / math.sqrt(n)

    def describe(self) -> str:
        bands = "; ".join(f"{m.upper()} {self.metrics[m].describe()}" for m in rep.METRICS)
        return (
            f"within when |ours − reported| ≤ band + half-width of our {self.confidence:.0%} "
            f"t-interval over seeds (n ≥ {self.min_seeds}; else the band alone); band: {bands} "
            "(absolute + relative to the reported value)"
        )


@dataclass
class TableDef:
    """One paper table (``recipes/tables/<name>.yaml``).

    ``title``, ``description``; ``backbone`` (model arch of its recipes: stylegan2 | biggan);
    ``protocols`` (one sub-table each, e.g. ``[is10k, fid10k_test]``); ``source`` (default source of the
    reported numbers); ``columns`` and ``rows`` in the paper's order; ``set`` (``--set`` overrides applied
    to every cell's recipe); ``default_preset``; ``seeds`` (training seeds ``degan-bench sweep`` runs per
    cell by default); ``in_all`` (part of ``--all``); ``tolerance``; ``notes``. ``claimed_by``: the paper
    whose own comparison the table's reported numbers are (its rows quote several sources, e.g. FakeCLR's
    table with its baselines): each column's reported numbers are then shown as that paper's claimed
    ordering. ``name`` is the file name.
    """

    title: str
    description: str
    backbone: Literal["stylegan2", "biggan", "sngan"]
    protocols: list[str]
    source: SourceRef
    columns: list[ColumnDef]
    rows: list[RowDef]
    name: str = ""
    set: list[str] = field(default_factory=list)
    default_preset: str = "paper"
    seeds: int = 1
    in_all: bool = True
    tolerance: Tolerance = field(default_factory=Tolerance)
    notes: list[str] = field(default_factory=list)
    claimed_by: str | None = None

    def check(self) -> None:
        if self.claimed_by is not None and self.claimed_by not in rep.PAPERS:
            raise ValueError(f"claimed_by {self.claimed_by!r} is not one of {', '.join(rep.PAPERS)}")
        if self.default_preset not in PRESETS:
            raise ValueError(f"default_preset {self.default_preset!r} is not one of {', '.join(PRESETS)}")
        if not self.protocols or not self.columns or not self.rows:
            raise ValueError("a table needs protocols, columns and rows")
        if self.seeds < 1:
            raise ValueError(f"seeds {self.seeds} must be >= 1")
        for protocol in self.protocols:
            try:
                get_protocol(protocol)
            except DeganError as err:
                raise ValueError(f"protocols: {err}") from None
        for ref in [self.source, *(r.source for r in self.rows if r.source is not None)]:
            if ref.paper not in rep.PAPERS:
                raise ValueError(f"source paper {ref.paper!r} is not one of {', '.join(rep.PAPERS)}")
        from degan_bench.data.registry import dataset_names
        from degan_bench.methods import KNOWN_METHODS

        datasets = set(dataset_names()) | set(rep.REFERENCE_DATASETS)
        for column in self.columns:
            if column.dataset not in datasets:
                hint = did_you_mean(column.dataset, datasets)
                raise ValueError(
                    f"column dataset {column.dataset!r} is unknown"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                )
        methods = set(KNOWN_METHODS) | set(rep.REFERENCE_METHODS)
        for row in self.rows:
            if row.reported_method is not None and row.reported_method not in methods:
                raise ValueError(f"row {row.label!r}: reported_method {row.reported_method!r} is neither a "
                                 "degan-bench method nor a reference baseline")  # fmt: skip
            if row.set and row.method not in KNOWN_METHODS:
                raise ValueError(f"row {row.label!r}: set needs a degan-bench method, not reference-only "
                                 f"{row.method!r}")  # fmt: skip
            if row.method not in methods:
                hint = did_you_mean(row.method, methods)
                raise ValueError(
                    f"row method {row.method!r} is neither a degan-bench method nor a reference "
                    "baseline" + (f" (did you mean {hint!r}?)" if hint else "")
                )
        keys = [(r.method, r.label) for r in self.rows]
        if len(set(keys)) != len(keys):
            raise ValueError("rows repeat a (method, label) pair")


def tables_dir() -> Path:
    return recipes_dir() / "tables"


def load_table_file(path: Path) -> TableDef:
    return load_definition_file(TableDef, path)


def table_names(root: Path | None = None) -> list[str]:
    return definition_names(root or tables_dir())


def load_table(name: str, root: Path | None = None) -> TableDef:
    """A table by name (``diffaugment-lowshot``) or by path to its YAML file."""
    return load_definition(TableDef, name, root or tables_dir(), "table")


def load_tables(
    names: list[str] | None = None, *, all_tables: bool = False, root: Path | None = None
) -> list[TableDef]:
    """Named tables, or every table with ``in_all`` (``all_tables``)."""
    if all_tables:
        return [t for t in (load_table(n, root) for n in table_names(root)) if t.in_all]
    if not names:
        raise RecipeError("name a table or pass --all", fix=f"tables: {', '.join(table_names(root))}")
    return [load_table(n, root) for n in names]


# -- cells -------------------------------------------------------------------------------------
@dataclass
class CellRecipe:
    """The recipe behind one (method, dataset) of a table, or why there is none."""

    status: str  # ok | reference | no recipe yet | not implemented | invalid recipe
    message: str = ""
    resolved: ResolvedRecipe | None = None


def resolve_cell(
    table: TableDef,
    method: str,
    dataset: str,
    preset: str,
    root: Path | None = None,
    row_set: list[str] | tuple[str, ...] = (),
) -> CellRecipe:
    from degan_bench.data.registry import dataset_names
    from degan_bench.methods import KNOWN_METHODS

    if method not in KNOWN_METHODS or dataset not in dataset_names():
        return CellRecipe("reference", "reported only: not a degan-bench method/dataset")
    root = root or recipes_dir()
    path = expected_recipe_path(method, dataset, root, table.backbone)
    where = f"recipes/{path.relative_to(root)}"
    if not path.exists():
        return CellRecipe("no recipe yet", f"{where} does not exist yet")
    try:
        overrides = [*table.set, *row_set]
        resolved = resolve_recipe(method, dataset, preset, overrides, root=root, backbone=table.backbone)
    except MethodError as err:
        return CellRecipe("not implemented", str(err))
    except RecipeError as err:
        if f"has no '{preset}' preset" in str(err):
            return CellRecipe("no recipe yet", f"{where} has no {preset} preset")
        return CellRecipe("invalid recipe", str(err))
    return CellRecipe("ok", resolved=resolved)


@dataclass
class BuildOptions:
    preset: str | None = None  # None: the table's default_preset
    checkpoint: Checkpoint = "last"
    tolerance: Tolerance | None = None  # None: the table's
    now: _dt.datetime | None = None  # "now" for stale-start detection (None: the clock)


@dataclass
class TableResult:
    table: TableDef
    preset: str
    checkpoint: str
    tolerance: Tolerance
    cells: pd.DataFrame  # one row per (row, column, protocol), plus one per recipe variant
    runs: pd.DataFrame  # one row per (cell, run) considered
    unreadable: list[StoredRun] = field(default_factory=list)
    #: runs of this table's cells under other presets: preset -> count (the page names them)
    other_presets: dict[str, int] = field(default_factory=dict)
    #: each source's own numbers per column (see :func:`claimed_orderings`)
    claims: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CLAIM_COLUMNS))


CELL_COLUMNS = [
    "table", "preset", "protocol", "row", "method", "column", "dataset", "variant", "reference_only",
    "recipe_status", "recipe_message", "recipe_hash", "our_protocol", "reported", "reported_protocol",
    "reported_paper", "reported_table", "reported_version", "reported_source", "reported_label",
    "reported_quotes", "verification", "reported_selection", "alternatives", "mean", "std", "n",
    "n_standin", "standin_values", "n_pending", "n_incomplete", "n_failed", "n_unreadable", "delta",
    "rel_delta", "band", "halfwidth", "ci_low", "ci_high", "verdict", "flags", "flag_keys", "gpu_hours",
    "cpu_hours", "devices", "run_ids", "lower_is_better", "row_group", "mixed_fingerprints",
]  # fmt: skip
RUN_COLUMNS = [
    "run_id", "path", "row", "method", "column", "dataset", "protocol", "seed", "recipe_hash", "variant",
    "status", "status_detail", "record_state", "value", "kimg", "total_kimg", "device", "gpu_hours",
    "cpu_hours", "selected_on_split", "fingerprint", "code_version",
]  # fmt: skip
CLAIM_COLUMNS = [
    "protocol", "dataset", "metric", "claim", "claim_protocol", "label", "method", "value", "on_page",
]  # fmt: skip


def run_state(run: StoredRun, now: _dt.datetime | None = None) -> tuple[str, str]:
    """(status as the leaderboards show it, why) of a run: ``diverged`` runs and runs that died before
    their first tick are ``failed`` (never resumable-looking ``running``)."""
    if run.status == "diverged":
        return "failed", "diverged (non-finite losses)"
    if run.status == "running" and run.info is not None and run.info.cur_nimg == 0:
        try:
            updated = _dt.datetime.strptime(run.info.updated_utc, "%Y-%m-%dT%H:%M:%SZ")
        except (TypeError, ValueError):
            return run.status, ""
        now = now or _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
        if now.replace(tzinfo=None) - updated > _dt.timedelta(hours=STALE_START_HOURS):
            return "failed", f"died before training (running at kimg 0, last update {run.info.updated_utc})"
    return run.status, ""


def _our_protocol(cell: CellRecipe, protocol: str, preset: str) -> str:
    """The protocol our number is read under: the cell's, except for a non-paper preset whose recipe does
    not evaluate it (smoke runs use derived protocols such as kid500_train): then the recipe's headline."""
    if cell.resolved is None or preset == "paper":
        return protocol
    protocols = cell.resolved.recipe.evaluation.protocols
    return protocol if protocol in protocols or not protocols else protocols[0]


def _unreadable_of(run: StoredRun, key: tuple[str, str], preset: str) -> bool:
    """Whether an unreadable run belongs to a cell: by run.json when it could be read, else by the
    directory name ``default_run_name`` gives it."""
    if run.info is not None:
        return (run.method, run.dataset, run.preset) == (*key, preset)
    return run.path.name.startswith(f"{key[0]}-{key[1]}-{preset}-s")


def _run_rows(
    runs: list[StoredRun],
    protocol: str,
    checkpoint: str,
    base: dict[str, Any],
    expected_hash: str | None,
    now: _dt.datetime | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        status, detail = run_state(run, now)
        picked = pick_record(run, protocol, checkpoint) if status == "complete" else None
        rows.append(
            {
                **base,
                "run_id": run.run_id,
                "path": str(run.path),
                "protocol": protocol,
                "seed": run.seed,
                "recipe_hash": run.recipe_hash,
                "variant": expected_hash is None or run.recipe_hash != expected_hash,
                "status": status,
                "status_detail": detail,
                "record_state": picked.state if picked else None,
                "value": picked.value if picked else None,
                "kimg": run.kimg,
                "total_kimg": run.total_kimg,
                "device": run.device_label,  # with the process count, e.g. "8x NVIDIA H100"
                "gpu_hours": run.gpu_hours,
                "cpu_hours": run.cpu_hours,
                "selected_on_split": picked.selected_on_split if picked else None,
                "fingerprint": (picked.record or {}).get("protocol_fingerprint") if picked else None,
                "code_version": run.info.code_version if run.info else None,
            }
        )
    return rows


def _aggregate(group: pd.DataFrame) -> dict[str, Any]:
    """Counts, mean, std and compute of one cell's runs (one recipe hash)."""
    complete = group[group["status"] == "complete"]
    ok = complete[complete["record_state"] == "ok"]
    standin = complete[complete["record_state"] == "standin"]
    values = ok["value"].astype(float)
    n = len(values)
    # Records made under differing protocol fingerprints (e.g. a protocol whose definition changed between
    # code versions) are never averaged.
    mixed = len({f for f in ok["fingerprint"] if isinstance(f, str)}) > 1
    return {
        "mean": float(values.mean()) if n and not mixed else None,
        "std": float(values.std(ddof=1)) if n >= 2 and not mixed else None,
        "n": n,
        "mixed_fingerprints": mixed,
        "n_standin": len(standin),
        "standin_values": [float(v) for v in standin["value"]],
        "n_pending": int(complete["record_state"].isin(["pending", "missing"]).sum()),
        "n_incomplete": int(group["status"].isin(INCOMPLETE_STATUSES).sum()),
        "n_failed": int(group["status"].isin(FAILED_STATUSES).sum()),  # failed or diverged
        "n_unreadable": int((group["status"] == "unreadable").sum()),
        "gpu_hours": float(group["gpu_hours"].sum()),
        "cpu_hours": float(group["cpu_hours"].sum()),
        "devices": sorted({d for d in group["device"] if d and d != "?"}),
        "run_ids": list(group["run_id"]),
        "selected_splits": sorted({s for s in ok["selected_on_split"] if s}),
    }


def _verdict(cell: dict[str, Any], tolerance: Tolerance) -> dict[str, Any]:
    """verdict, delta, relative delta, band, interval of a cell whose counts are filled in."""
    out: dict[str, Any] = dict.fromkeys(("delta", "rel_delta", "band", "halfwidth", "ci_low", "ci_high"))
    if cell["n"] and cell["mean"] is not None:
        half = tolerance.halfwidth(cell["std"], cell["n"])
        if half is not None:
            out.update(halfwidth=half, ci_low=cell["mean"] - half, ci_high=cell["mean"] + half)
    if cell["reference_only"]:
        return {**out, "verdict": "reported only"}
    if cell["variant"]:
        return {**out, "verdict": "other recipe: not compared"}
    if cell["n"] == 0:
        if cell["recipe_status"] != "ok" and not cell["run_ids"]:
            return {**out, "verdict": cell["recipe_status"]}
        for key, label in (
            ("n_incomplete", "incomplete"),
            ("n_pending", "pending"),
            ("n_failed", "failed"),
            ("n_unreadable", "unreadable"),
            ("n_standin", "stand-in weights only"),
        ):
            if cell[key]:
                return {**out, "verdict": label}
        return {**out, "verdict": "not run"}
    if cell["mixed_fingerprints"]:
        return {**out, "verdict": "not comparable (mixed protocol fingerprints)"}
    if cell["reported"] is None:
        return {**out, "verdict": "no reported value"}
    delta = cell["mean"] - cell["reported"]
    out.update(delta=delta, rel_delta=delta / cell["reported"] if cell["reported"] else None)
    if cell["reported_protocol"] != cell["our_protocol"]:
        return {**out, "verdict": "not comparable (protocol)"}
    if cell["preset"] != "paper":
        return {**out, "verdict": "not comparable (preset)"}
    if cell["not_compared"]:
        return {**out, "verdict": "not comparable (configuration)"}
    band = tolerance.band(cell["metric"], cell["reported"])
    within = abs(delta) <= band + (out["halfwidth"] or 0.0)
    verdict = ("within" if within else "outside") + (
        "" if out["halfwidth"] is not None else f" (n={cell['n']})"
    )
    return {**out, "band": band, "verdict": verdict}


def _alternatives_text(others: list[dict[str, Any]]) -> str:
    parts = []
    for other in others:
        version = f", arXiv {other['arxiv_version']}" if other["arxiv_version"] else ""
        shown = numbers.value(str(other["metric"]), other["value"])
        parts.append(f"{shown} ({other['table']}{version}; {other['protocol']})")
    return "; ".join(parts)


def build_table(
    table: TableDef,
    runs: list[StoredRun],
    reported: pd.DataFrame,
    options: BuildOptions | None = None,
    *,
    recipes_root: Path | None = None,
    recipe_cache: dict[tuple[Any, ...], CellRecipe] | None = None,
) -> TableResult:
    """Every cell of ``table`` from the runs and the reported numbers (see the module docstring).
    ``recipe_cache`` may be shared by the tables of one invocation (recipes resolve once)."""
    options = options or BuildOptions()
    preset = options.preset or table.default_preset
    tolerance = options.tolerance or table.tolerance
    readable = [r for r in runs if r.info is not None and r.status != "unreadable"]
    conflicts = rep.conflicts(reported)
    # the candidate rows of each (paper, method, dataset, metric), split once instead of per cell
    by_cell = reported.groupby(["paper", "method", "dataset", "metric"]).indices
    empty: list[int] = []
    cell_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    cache = {} if recipe_cache is None else recipe_cache

    def cell_of(row: RowDef, column: ColumnDef) -> CellRecipe:
        row_set = [*column.set, *row.set]
        ident = (str(recipes_root or recipes_dir()), row.method, column.dataset, preset, tuple(table.set),
                 tuple(row_set), table.backbone)  # fmt: skip
        if ident not in cache:
            cache[ident] = resolve_cell(table, row.method, column.dataset, preset, recipes_root, row_set)
        return cache[ident]

    for protocol in table.protocols:
        metric = get_protocol(protocol).metric
        for row in table.rows:
            source = row.source or table.source
            for column in table.columns:
                key = (row.method, column.dataset)
                cell_recipe = cell_of(row, column)
                primary, others = rep.lookup(
                    reported.iloc[
                        by_cell.get((source.paper, row.reported_key, column.dataset, metric), empty)
                    ],
                    paper=source.paper,
                    method=row.reported_key,
                    dataset=column.dataset,
                    metric=metric,
                    arch=table.backbone,
                    table=source.table,
                    arxiv_version=source.arxiv_version,
                )
                expected = cell_recipe.resolved.hash if cell_recipe.resolved else None
                our_protocol = _our_protocol(cell_recipe, protocol, preset)
                siblings = {  # runs of another row's recipe belong to that row
                    other.resolved.hash
                    for other in (cell_of(r, column) for r in table.rows
                                  if r is not row and r.method == row.method)
                    if other.resolved is not None
                } - {expected}  # fmt: skip
                matching = [
                    r
                    for r in readable
                    if (r.method, r.dataset, r.preset) == (*key, preset)
                    and r.arch == table.backbone
                    and r.recipe_hash not in siblings
                ]
                unreadable = [r for r in runs if r.status == "unreadable" and _unreadable_of(r, key, preset)]
                base = {
                    "row": row.label,
                    "method": row.method,
                    "column": column.label,
                    "dataset": column.dataset,
                }
                cell_runs = _run_rows(
                    matching + unreadable, our_protocol, options.checkpoint, base, expected, options.now
                )
                for r in cell_runs:  # an unreadable run of this cell's name is shown with the cell
                    if r["status"] == "unreadable":
                        r["variant"] = False
                run_rows.extend(cell_runs)
                common = {
                    "table": table.name,
                    "preset": preset,
                    "protocol": protocol,
                    **base,
                    "reference_only": cell_recipe.status == "reference",
                    "recipe_status": cell_recipe.status,
                    "recipe_message": cell_recipe.message,
                    "our_protocol": our_protocol,
                    "reported": primary["value"] if primary else None,
                    "reported_protocol": primary["protocol"] if primary else None,
                    "reported_paper": source.paper,
                    "reported_table": primary["table"] if primary else None,
                    "reported_version": primary["arxiv_version"] if primary else None,
                    "reported_source": primary["source"] if primary else None,
                    "reported_label": primary["row"] if primary else None,
                    "reported_quotes": primary["quotes"] if primary else None,
                    "verification": primary["verification"] if primary else None,
                    "reported_selection": primary["selection"] if primary else None,
                    "alternatives": _alternatives_text(others),
                    "conflicts": rep.conflict_notes(conflicts, primary) if primary else [],
                    "metric": metric,
                    "lower_is_better": LOWER_IS_BETTER[metric],
                    "row_group": row.group,
                    "not_compared": row.not_compared,
                }
                groups = [(False, expected, [r for r in cell_runs if not r["variant"]])]
                for other in sorted(
                    {r["recipe_hash"] for r in cell_runs if r["variant"] and r["recipe_hash"]}
                ):
                    groups.append(
                        (True, other, [r for r in cell_runs if r["variant"] and r["recipe_hash"] == other])
                    )
                for is_variant, recipe_hash, group in groups:
                    aggregate = _aggregate(pd.DataFrame(group, columns=RUN_COLUMNS))
                    cell = {**common, "variant": is_variant, "recipe_hash": recipe_hash, **aggregate}
                    cell.update(_verdict(cell, tolerance))
                    flags = _flags(cell, options.checkpoint)
                    cell["flag_keys"] = [key for key, _ in flags]
                    cell["flags"] = [text for _, text in flags]
                    cell_rows.append(cell)
    cells = pd.DataFrame(cell_rows)
    cells = cells.reindex(columns=[*CELL_COLUMNS, "selected_splits", "metric"])
    cells_of_table = {(r.method, c.dataset) for r in table.rows for c in table.columns}
    other_presets: dict[str, int] = {}
    for run in readable:
        ours = (run.method, run.dataset) in cells_of_table and run.arch == table.backbone
        if ours and run.preset != preset:
            other_presets[str(run.preset)] = other_presets.get(str(run.preset), 0) + 1
    return TableResult(
        table=table,
        preset=preset,
        checkpoint=options.checkpoint,
        tolerance=tolerance,
        cells=cells,
        runs=pd.DataFrame(run_rows, columns=RUN_COLUMNS),
        unreadable=[r for r in runs if r.status == "unreadable"],
        other_presets=dict(sorted(other_presets.items())),
        claims=claimed_orderings(table, cells, reported),
    )


def claimed_orderings(table: TableDef, cells: pd.DataFrame, reported: pd.DataFrame) -> pd.DataFrame:
    """Each source's own numbers per (protocol, column): the ordering that source claims.

    A *claim* is one printed table (paper, table, arXiv version) that gives the reported number of at
    least one row of this table; its entries are that printed table's numbers for the column and
    metric, of methods that are rows here (its other rows are outside this page). One source's numbers
    share whatever protocol it used, so they may be ordered among themselves even when that protocol is
    unknown to us. With ``claimed_by`` the table's own reported column is one more claim: that paper's
    comparison as the table transcribes it. Claims of fewer than two numbers are left out."""
    rows: list[dict[str, Any]] = []
    main = cells[~cells["variant"] & cells["reported"].notna()]
    page_methods = {r.reported_key for r in table.rows}
    label_of = {r.reported_key: r.label for r in table.rows}
    groups = {r.reported_key: r.group or "" for r in table.rows}

    def group_of(method: str) -> str:
        return groups.get(method, "")

    for (protocol, dataset), group in main.groupby(["protocol", "dataset"], sort=False):
        metric = get_protocol(str(protocol)).metric
        sources = group.drop_duplicates(["reported_paper", "reported_table", "reported_version"])
        for _, src in sources.iterrows():
            printed = reported[
                (reported["paper"] == src["reported_paper"])
                & (reported["table"] == src["reported_table"])
                & (reported["arxiv_version"] == src["reported_version"])
                & (reported["dataset"] == dataset)
                & (reported["metric"] == metric)
                & reported["method"].isin(page_methods)
            ]
            if len(printed) < 2:
                continue
            claim = claim_label(src["reported_paper"], src["reported_table"], src["reported_version"])
            claim_protocol = _one_protocol(printed["protocol"])
            # a paper that compares its rows in groups (pre-trained apart from from-scratch) claims an
            # ordering per group
            for group_name, members in printed.groupby(printed["method"].map(group_of), sort=False):
                if len(members) < 2:
                    continue
                for _, entry in members.iterrows():
                    rows.append({
                        "protocol": protocol, "dataset": dataset, "metric": metric,
                        "claim": claim + (f" · {group_name}" if group_name else ""),
                        "claim_protocol": claim_protocol, "method": entry["method"],
                        "label": label_of.get(entry["method"], entry["row"]),
                        "value": float(entry["value"]), "on_page": True,
                    })  # fmt: skip
        if table.claimed_by is not None and len(group) >= 2:
            claim = f"{paper_name(table.claimed_by)}'s comparison (this table)"
            claim_protocol = _one_protocol(group["reported_protocol"])
            for _, entry in group.iterrows():
                rows.append({
                    "protocol": protocol, "dataset": dataset, "metric": metric, "claim": claim,
                    "claim_protocol": claim_protocol, "label": entry["row"], "method": entry["method"],
                    "value": float(entry["reported"]), "on_page": True,
                })  # fmt: skip
    frame = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    # one entry per (claim, method): a printed table lists each method once per column
    return frame.drop_duplicates(["protocol", "dataset", "claim", "method", "label"]).reset_index(drop=True)


def _one_protocol(protocols: pd.Series) -> str:
    distinct = set(protocols.astype(str))
    return distinct.pop() if len(distinct) == 1 else "mixed"


#: how the pages name each paper (keys of :data:`~degan_bench.results.reported.PAPERS`)
PAPER_NAMES: dict[str, str] = {
    "diffaugment": "DiffAugment", "ada": "ADA", "insgen": "InsGen", "fakeclr": "FakeCLR",
    "diggan": "DigGAN", "lottery": "Lottery-ticket GAN", "lecam": "LeCam", "genco": "GenCo",
}  # fmt: skip


def paper_name(paper: str) -> str:
    return PAPER_NAMES.get(paper, paper)


def claim_label(paper: str, table: Any, version: Any) -> str:
    """``DiffAugment Table 4 (arXiv v2+)``."""
    version_text = f" (arXiv {version})" if isinstance(version, str) and version else ""
    return f"{paper_name(paper)} {table}{version_text}"


_COMMIT = re.compile(r"@\s*([0-9a-f]{7,40})\b")


def source_commit(source: Any) -> str | None:
    """The commit a source text pins (``... README.md @12444c7 ...``), if any."""
    match = _COMMIT.search(str(source or ""))
    return match.group(1) if match else None


#: what each flag means, once per page (a table-level note lists the cells it concerns)
FLAG_TITLES: dict[str, str] = {
    "protocol_unknown": "The source does not say how its number was measured (protocol unknown): not "
    "compared with ours",
    "protocol_other": "Reported under another protocol than ours: not compared",
    "preset": "Our runs use a non-paper preset (fewer kimg, a tiny model or a derived protocol): not "
    "compared",
    "selection_test": "The paper picked its checkpoint by the metric on the split it reports (test-set model "
    "selection); ours is the `last` checkpoint unless `--checkpoint best`",
    "selection_ours": "Our number is the `best` checkpoint, selected on the split it is reported on",
    "aggregator": "Reported value from a benchmark aggregator or not checked against the official "
    "code/README",
    "versions": "Other versions of the reported number (not shown in the Paper column)",
    "conflict": "Copies of the reported number disagree",
    "not_compared": "Not compared with our runs although the protocol matches",
    "variant": "Runs of another recipe (`--set` overrides or an older recipe): shown apart, never averaged "
    "with the recipe's runs",
    "mixed": "The runs' metric records carry different protocol fingerprints (the protocol changed between "
    "code versions?): not averaged; re-evaluate them with `degan-bench eval`",
    "standin": "Runs evaluated with non-standard (stand-in) Inception weights: shown, never compared",
}


def _flags(cell: dict[str, Any], checkpoint: str) -> list[tuple[str, str]]:
    """(key of :data:`FLAG_TITLES`, this cell's text) of every flag of one cell."""
    flags: list[tuple[str, str]] = []
    main = not cell["variant"]
    if cell["reported"] is not None and cell["reported_protocol"] != cell["our_protocol"] and main:
        if cell["reported_protocol"] == rep.UNKNOWN_PROTOCOL:
            flags.append(("protocol_unknown", "protocol unknown"))
        else:
            flags.append(("protocol_other", f"reported under {cell['reported_protocol']}, ours under "
                                            f"{cell['our_protocol']}"))  # fmt: skip
    if cell["preset"] != "paper" and cell["n"] and cell["reported"] is not None and main:
        flags.append(("preset", f"our runs use the {cell['preset']} preset"))
    if cell["reported_selection"] == "best_on_test":
        flags.append(("selection_test", "paper: best checkpoint on the reporting split"))
    if checkpoint == "best" and cell["selected_splits"]:
        flags.append(("selection_ours", f"ours: best checkpoint on {'/'.join(cell['selected_splits'])}"))
    if cell["verification"] in ("aggregator", "unverified"):
        flags.append(("aggregator", f"reported value {cell['verification']}"))
    if cell["alternatives"]:
        flags.append(("versions", cell["alternatives"]))
    flags.extend(("conflict", text) for text in cell["conflicts"])
    if cell["not_compared"] and cell["reported"] is not None and main:
        flags.append(("not_compared", str(cell["not_compared"])))
    if cell["variant"]:
        flags.append(("variant", f"recipe {str(cell['recipe_hash'])[:8]}"))
    if cell["mixed_fingerprints"]:
        flags.append(("mixed", "mixed protocol fingerprints"))
    if cell["n_standin"]:
        values = ", ".join(numbers.value(cell["metric"], v) for v in cell["standin_values"])
        flags.append(("standin", f"{cell['n_standin']} run(s) with stand-in weights ({values})"))
    return flags


def parse_tolerance(specs: list[str], confidence: float | None, base: Tolerance) -> Tolerance:
    """``base`` with CLI overrides: ``METRIC:rel=R,abs=A`` (either part may be left out) and the
    interval's confidence."""
    metrics = dict(base.metrics)
    for spec in specs:
        metric, _, rest = spec.partition(":")
        if metric not in rep.METRICS or not rest:
            raise DeganError(
                f"--tolerance {spec!r} is not METRIC:rel=R,abs=A",
                fix=f"METRIC is one of {', '.join(rep.METRICS)}",
            )
        values = {"rel": metrics[metric].relative, "abs": metrics[metric].absolute}
        for part in rest.split(","):
            key, _, number = part.partition("=")
            try:
                if key not in values:
                    raise ValueError
                values[key] = float(number)
            except ValueError:
                raise DeganError(
                    f"--tolerance {spec!r}: cannot read {part!r}", fix="use e.g. fid:rel=0.05,abs=0.5"
                ) from None
        metrics[metric] = MetricTolerance(relative=values["rel"], absolute=values["abs"])
    tolerance = Tolerance(
        metrics=metrics,
        confidence=base.confidence if confidence is None else confidence,
        min_seeds=base.min_seeds,
    )
    try:
        tolerance.check()
    except ValueError as err:
        raise DeganError(
            f"--tolerance/--confidence: {err}", fix="use relative in [0, 1], absolute >= 0"
        ) from None
    return tolerance
