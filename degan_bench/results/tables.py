"""Paper tables as data (``recipes/tables/<name>.yaml``) and the leaderboards built from them.

A table definition names the cells of one paper table: ``rows`` (methods) x ``columns`` (datasets) x
``protocols``. Each row takes its reported numbers from a source in ``results/reported.csv`` (the
table's ``source``, or the row's own); each cell's reproduced number comes from the run store.

How a cell is computed (:func:`build_table`):

- **Recipe**: ``recipes/<method>/<dataset>.yaml`` resolved with the preset (``paper`` by default) and the
  table's ``set`` overrides. A method outside degan-bench is a *reference* row; a missing file, an
  unimplemented method or a recipe for another backbone shows as such (the table stays complete).
- **Runs**: run directories with the cell's method, dataset and preset. Only runs of the recipe's hash
  are aggregated; runs of other hashes (``--set`` experiments, an older recipe) are listed separately as
  *variants* and never averaged in.
- **Our number**: per run the record of the cell's protocol at the ``last`` checkpoint (``--checkpoint
  best`` for the best one; see :mod:`degan_bench.results.store`). Only complete runs whose record is
  ``ok`` with the standard Inception weights count: mean and sample std (ddof=1) over training seeds,
  with ``n``. Non-standard weights are shown as stand-ins; pending, failed, unreadable and incomplete
  runs are counted and shown, never averaged.
- **Verdict**: ``within`` when ``|ours - reported| <= max(std_factor * std, relative * |reported|)``
  (defaults 2 std and 10 %, per table overridable; with ``n = 1`` only the relative band applies and the
  verdict says so). A reported number made under another (or an unknown) protocol is *not comparable*.
- **Flags** (footnotes): protocol mismatch; the paper selected its checkpoint on the split it reports;
  our ``best`` checkpoint was selected on the reporting split; reported value only from an aggregator or
  unverified; other versions of the reported number; recipe variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from degan_bench.errors import DeganError, MethodError, RecipeError
from degan_bench.metrics.protocols import get_protocol
from degan_bench.paths import recipes_dir
from degan_bench.recipes.loader import ResolvedRecipe, expected_recipe_path, read_yaml, resolve_recipe
from degan_bench.recipes.schema import PRESETS
from degan_bench.results import reported as rep
from degan_bench.results.store import StoredRun, pick_record
from degan_bench.schema import did_you_mean, from_dict

Checkpoint = Literal["last", "best"]
LOWER_IS_BETTER = {"fid": True, "kid": True, "is": False}


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
    """A registered (or reported-only) ``dataset`` and its ``label`` as the paper prints it."""

    dataset: str
    label: str


@dataclass
class RowDef:
    """A degan-bench ``method`` (or a reference-only baseline), its ``label`` as the paper prints it, the
    ``source`` of its reported numbers (default: the table's) and an optional ``note``."""

    method: str
    label: str
    source: SourceRef | None = None
    note: str | None = None


@dataclass
class Tolerance:
    """A reproduction is ``within`` when
    ``|ours - reported| <= max(std_factor * std, relative * |reported|)``; ``std`` is our sample std over
    training seeds (n >= 2)."""

    std_factor: float = 2.0
    relative: float = 0.10

    def check(self) -> None:
        if self.std_factor < 0 or not 0 <= self.relative <= 1:
            raise ValueError("tolerance needs std_factor >= 0 and relative in [0, 1]")

    def band(self, reported: float, std: float | None) -> float:
        spread = self.std_factor * std if std is not None and math.isfinite(std) else 0.0
        return max(spread, self.relative * abs(reported))

    def describe(self) -> str:
        return f"max({self.std_factor:g} × std, {self.relative:.0%} of the reported value)"


@dataclass
class TableDef:
    """One paper table (``recipes/tables/<name>.yaml``).

    ``title``, ``description``; ``backbone`` (model arch of its recipes: stylegan2 | biggan);
    ``protocols`` (one sub-table each, e.g. ``[is10k, fid10k_test]``); ``source`` (default source of the
    reported numbers); ``columns`` and ``rows`` in the paper's order; ``set`` (``--set`` overrides applied
    to every cell's recipe); ``default_preset``; ``seeds`` (training seeds ``degan-bench sweep`` runs per
    cell by default); ``in_all`` (part of ``--all``); ``tolerance``; ``notes``. ``name`` is the file name.
    """

    title: str
    description: str
    backbone: Literal["stylegan2", "biggan"]
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

    def check(self) -> None:
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
    data = read_yaml(path)
    name = data.get("name", path.stem)
    if name != path.stem:
        raise RecipeError(f"{path}: name {name!r} differs from the file name", fix=f"use name: {path.stem}")
    table = from_dict(TableDef, {**data, "name": path.stem}, source=str(path))
    return table


def table_names(root: Path | None = None) -> list[str]:
    root = root or tables_dir()
    return sorted(p.stem for p in root.glob("*.yaml"))


def load_table(name: str, root: Path | None = None) -> TableDef:
    """A table by name (``diffaugment-lowshot``) or by path to its YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return load_table_file(path)
    root = root or tables_dir()
    path = root / f"{name}.yaml"
    if not path.exists():
        names = table_names(root)
        hint = did_you_mean(name, names)
        raise RecipeError(
            f"no table named {name!r}",
            fix=f"did you mean {hint!r}?" if hint else f"tables: {', '.join(names) or 'none'}",
        )
    return load_table_file(path)


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
    table: TableDef, method: str, dataset: str, preset: str, root: Path | None = None
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
        resolved = resolve_recipe(method, dataset, preset, table.set, root=root, backbone=table.backbone)
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


@dataclass
class TableResult:
    table: TableDef
    preset: str
    checkpoint: str
    tolerance: Tolerance
    cells: pd.DataFrame  # one row per (row, column, protocol), plus one per recipe variant
    runs: pd.DataFrame  # one row per (cell, run) considered
    unreadable: list[StoredRun] = field(default_factory=list)


CELL_COLUMNS = [
    "table", "preset", "protocol", "row", "method", "column", "dataset", "variant", "reference_only",
    "recipe_status", "recipe_message", "recipe_hash", "our_protocol", "reported", "reported_protocol",
    "reported_paper", "reported_table", "reported_version", "verification", "reported_selection",
    "alternatives", "mean", "std", "n", "n_standin", "standin_values", "n_pending", "n_incomplete",
    "n_failed", "n_unreadable", "delta", "rel_delta", "verdict", "flags", "gpu_hours", "cpu_hours",
    "devices", "run_ids", "lower_is_better", "is_best_reported", "is_best_ours", "mixed_fingerprints",
]  # fmt: skip
RUN_COLUMNS = [
    "run_id", "path", "row", "method", "column", "dataset", "protocol", "seed", "recipe_hash", "variant",
    "status", "record_state", "value", "kimg", "total_kimg", "device", "gpu_hours", "cpu_hours",
    "selected_on_split", "fingerprint", "code_version",
]  # fmt: skip


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
    runs: list[StoredRun], protocol: str, checkpoint: str, base: dict[str, Any], expected_hash: str | None
) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        picked = pick_record(run, protocol, checkpoint) if run.status == "complete" else None
        rows.append(
            {
                **base,
                "run_id": run.run_id,
                "path": str(run.path),
                "protocol": protocol,
                "seed": run.seed,
                "recipe_hash": run.recipe_hash,
                "variant": expected_hash is None or run.recipe_hash != expected_hash,
                "status": run.status,
                "record_state": picked.state if picked else None,
                "value": picked.value if picked else None,
                "kimg": run.kimg,
                "total_kimg": run.total_kimg,
                "device": run.device,
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
        "n_incomplete": int(group["status"].isin(["running", "stopped"]).sum()),
        "n_failed": int((group["status"] == "failed").sum()),
        "n_unreadable": int((group["status"] == "unreadable").sum()),
        "gpu_hours": float(group["gpu_hours"].sum()),
        "cpu_hours": float(group["cpu_hours"].sum()),
        "devices": sorted({d for d in group["device"] if d and d != "?"}),
        "run_ids": list(group["run_id"]),
        "selected_splits": sorted({s for s in ok["selected_on_split"] if s}),
    }


def _verdict(cell: dict[str, Any], tolerance: Tolerance) -> tuple[str, float | None, float | None]:
    """(verdict, delta, relative delta) of a cell whose counts are filled in."""
    if cell["reference_only"]:
        return "reference only", None, None
    if cell["variant"]:
        return "other recipe: not compared", None, None
    if cell["n"] == 0:
        if cell["recipe_status"] != "ok" and not cell["run_ids"]:
            return cell["recipe_status"], None, None
        for key, label in (
            ("n_incomplete", "incomplete"),
            ("n_pending", "pending"),
            ("n_failed", "failed"),
            ("n_unreadable", "unreadable"),
            ("n_standin", "stand-in weights only"),
        ):
            if cell[key]:
                return label, None, None
        return "not run", None, None
    if cell["mixed_fingerprints"]:
        return "not comparable (mixed protocol fingerprints)", None, None
    if cell["reported"] is None:
        return "no reported value", None, None
    delta = cell["mean"] - cell["reported"]
    rel = delta / cell["reported"] if cell["reported"] else None
    if cell["reported_protocol"] != cell["our_protocol"]:
        return "not comparable (protocol)", delta, rel
    if cell["preset"] != "paper":
        return "not comparable (preset)", delta, rel
    within = abs(delta) <= tolerance.band(cell["reported"], cell["std"])
    verdict = "within" if within else "outside"
    return (verdict + (" (n=1)" if cell["n"] == 1 else "")), delta, rel


def _alternatives_text(others: list[dict[str, Any]]) -> str:
    parts = []
    for other in others:
        version = f", arXiv {other['arxiv_version']}" if other["arxiv_version"] else ""
        parts.append(f"{other['value']:g} ({other['table']}{version}; {other['protocol']})")
    return "; ".join(parts)


def build_table(
    table: TableDef,
    runs: list[StoredRun],
    reported: pd.DataFrame,
    options: BuildOptions | None = None,
    *,
    recipes_root: Path | None = None,
) -> TableResult:
    """Every cell of ``table`` from the runs and the reported numbers (see the module docstring)."""
    options = options or BuildOptions()
    preset = options.preset or table.default_preset
    tolerance = options.tolerance or table.tolerance
    readable = [r for r in runs if r.info is not None and r.status != "unreadable"]
    cell_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    recipes: dict[tuple[str, str], CellRecipe] = {}
    for protocol in table.protocols:
        metric = get_protocol(protocol).metric
        for row in table.rows:
            source = row.source or table.source
            for column in table.columns:
                key = (row.method, column.dataset)
                if key not in recipes:
                    recipes[key] = resolve_cell(table, row.method, column.dataset, preset, recipes_root)
                cell_recipe = recipes[key]
                primary, others = rep.lookup(
                    reported,
                    paper=source.paper,
                    method=row.method,
                    dataset=column.dataset,
                    metric=metric,
                    arch=table.backbone,
                    table=source.table,
                    arxiv_version=source.arxiv_version,
                )
                expected = cell_recipe.resolved.hash if cell_recipe.resolved else None
                our_protocol = _our_protocol(cell_recipe, protocol, preset)
                matching = [
                    r
                    for r in readable
                    if (r.method, r.dataset, r.preset) == (*key, preset) and r.arch == table.backbone
                ]
                unreadable = [r for r in runs if r.status == "unreadable" and _unreadable_of(r, key, preset)]
                base = {
                    "row": row.label,
                    "method": row.method,
                    "column": column.label,
                    "dataset": column.dataset,
                }
                cell_runs = _run_rows(matching + unreadable, our_protocol, options.checkpoint, base, expected)
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
                    "verification": primary["verification"] if primary else None,
                    "reported_selection": primary["selection"] if primary else None,
                    "alternatives": _alternatives_text(others),
                    "lower_is_better": LOWER_IS_BETTER[metric],
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
                    cell["verdict"], cell["delta"], cell["rel_delta"] = _verdict(cell, tolerance)
                    cell["flags"] = _flags(cell, options.checkpoint)
                    cell_rows.append(cell)
    cells = pd.DataFrame(cell_rows)
    _mark_best(cells)
    cells = cells.reindex(columns=[*CELL_COLUMNS, "selected_splits"])
    return TableResult(
        table=table,
        preset=preset,
        checkpoint=options.checkpoint,
        tolerance=tolerance,
        cells=cells,
        runs=pd.DataFrame(run_rows, columns=RUN_COLUMNS),
        unreadable=[r for r in runs if r.status == "unreadable"],
    )


def _flags(cell: dict[str, Any], checkpoint: str) -> list[str]:
    """Footnote texts of one cell (shared texts become one numbered footnote when rendered)."""
    flags = []
    if (
        cell["reported"] is not None
        and cell["reported_protocol"] != cell["our_protocol"]
        and not cell["variant"]
    ):
        if cell["reported_protocol"] == rep.UNKNOWN_PROTOCOL:
            flags.append(
                "the source does not say how its number was measured (protocol unknown): not compared"
            )
        else:
            flags.append(
                f"reported under {cell['reported_protocol']}, ours under {cell['our_protocol']}: not compared"
            )
    if cell["preset"] != "paper" and cell["n"] and cell["reported"] is not None and not cell["variant"]:
        flags.append(f"our runs use the {cell['preset']} preset, not the paper recipe: not compared")
    if cell["reported_selection"] == "best_on_test":
        flags.append(
            "the paper picked its checkpoint by the metric on the split it reports (test-set model selection)"
        )
    if checkpoint == "best" and cell["selected_splits"]:
        flags.append(
            f"our number is the `best` checkpoint, selected on the {'/'.join(cell['selected_splits'])} "
            "split it is reported on"
        )
    if cell["verification"] in ("aggregator", "unverified"):
        flags.append(
            "reported value from a benchmark aggregator or not checked against the official code/README"
        )
    if cell["alternatives"]:
        flags.append(f"other reported versions: {cell['alternatives']}")
    if cell["variant"]:
        flags.append(
            f"runs of another recipe (hash {str(cell['recipe_hash'])[:8]}, e.g. --set overrides or an "
            "older recipe): shown apart, never averaged with the recipe's runs"
        )
    if cell["mixed_fingerprints"]:
        flags.append(
            "the runs' metric records carry different protocol fingerprints (the protocol changed between "
            "code versions?): not averaged; re-evaluate them with `degan-bench eval`"
        )
    if cell["n_standin"]:
        values = ", ".join(f"{v:.4g}" for v in cell["standin_values"])
        flags.append(
            f"{cell['n_standin']} run(s) evaluated with non-standard Inception weights ({values}): "
            "not compared"
        )
    return flags


def _mark_best(cells: pd.DataFrame) -> None:
    """Best reported and best reproduced value per (protocol, column), by the metric's direction."""
    cells["is_best_reported"] = False
    cells["is_best_ours"] = False
    if cells.empty:
        return
    main = cells[~cells["variant"]]
    for _key, group in main.groupby(["protocol", "dataset"], sort=False):
        lower = bool(group["lower_is_better"].iloc[0])
        for value_col, flag_col in (("reported", "is_best_reported"), ("mean", "is_best_ours")):
            values = group[value_col].dropna().astype(float)
            if values.empty:
                continue
            best = values.min() if lower else values.max()
            cells.loc[values[values == best].index, flag_col] = True


def with_tolerance(table: TableDef, std_factor: float | None, relative: float | None) -> Tolerance:
    """The table's tolerance with CLI overrides applied."""
    tolerance = table.tolerance
    if std_factor is not None:
        tolerance = replace(tolerance, std_factor=std_factor)
    if relative is not None:
        tolerance = replace(tolerance, relative=relative)
    return tolerance
