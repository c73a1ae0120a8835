"""The run store: every run directory under one or more roots, read as it is (no database).

A run directory (see :mod:`degan_bench.core.rundir`) is the source of truth: ``run.json`` (identity,
status, device, GPU-hours), ``recipe.yaml`` (the resolved recipe; its canonical hash must equal
``run.json``'s ``recipe_hash``), ``metrics.jsonl`` and ``stats.jsonl``. Nothing is dropped, and one bad run
never breaks a page: a directory whose ``run.json`` is missing, unreadable or has fields of the wrong
type, whose recipe hash disagrees with ``run.json``, or whose ``metrics.jsonl``/``stats.jsonl`` holds a
line that is not a JSON object or a field of the wrong type (``"value": "abc"``) is kept with status
``unreadable`` and the reason, so tables can report it and leave it out of every number. A torn last
line (a kill mid-write) is not a problem: it is skipped.

Statuses are those of ``run.json`` (``complete``, ``running``, ``stopped``, ``failed``, ``diverged``) plus
``unreadable``; :data:`FAILED_STATUSES` (``failed``, ``diverged``) are runs that ended without a result,
and :attr:`StoredRun.failed` says so.

Which metric record stands for a run (:func:`pick_record`):

- ``last`` (the default of ``degan-bench table``): the record of the final checkpoint -- written by the
  loop with ``checkpoint: last``, or appended later by ``degan-bench eval`` for the checkpoint at the
  run's final ``cur_nimg`` (a filled-in pending record);
- ``best``: the record with ``checkpoint: best`` (the best headline checkpoint, re-evaluated with fresh
  evaluation seeds; it carries ``selection``). When the best checkpoint *was* the last one the loop writes
  no separate record, so the ``last`` record is used, and it is marked as selected too.

The newest ``ok`` record with the standard Inception weights wins (else the newest stand-in one); if
there is none, a ``pending`` record makes the run pending.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from degan_bench.core.fileio import read_jsonl
from degan_bench.core.rundir import FAILED_STATUSES, RunDir, RunInfo
from degan_bench.recipes.loader import canonical_hash

#: run statuses in run.json, plus ``unreadable`` for directories that cannot be trusted
STORE_STATUSES: tuple[str, ...] = ("complete", "running", "stopped", "failed", "diverged", "unreadable")

_NUMBER = (int, float)
#: the fields of metric and stats records that tables and plots read, with the JSON types they accept
#: (None is accepted for every one); a record with another type makes the run unreadable
METRIC_FIELDS: dict[str, tuple[type, ...]] = {
    "protocol": (str,), "metric": (str,), "status": (str,), "value": _NUMBER, "value_std": _NUMBER,
    "kimg": _NUMBER, "cur_nimg": (int,), "checkpoint": (str,), "checkpoint_file": (str,),
    "purpose": (str,), "standard_weights": (bool,), "selection": (dict,), "protocol_record": (dict,),
    "reference": (dict,), "warnings": (list,), "weights_sha256": (str,), "protocol_fingerprint": (str,),
    "n_gen": (int,), "n_ref": (int,), "timestamp": (str,),
}  # fmt: skip
STATS_FIELDS: dict[str, tuple[type, ...]] = {
    "tick": (int,), "kimg": _NUMBER, "cur_nimg": (int,), "total_seconds": _NUMBER, "sec_per_tick": _NUMBER,
    "sec_per_kimg": _NUMBER, "img_per_sec": _NUMBER, "gpu_mem_gb": _NUMBER, "cpu_mem_gb": _NUMBER,
    "losses": (dict,), "method": (dict,),
}  # fmt: skip
#: how deep below a root run directories are looked for (root/run, root/group/run, ...)
MAX_DEPTH = 3


@dataclass
class StoredRun:
    """One run directory as found on disk."""

    path: Path
    status: str
    info: RunInfo | None = None
    recipe: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None  # why the run is unreadable
    stats_records: list[dict[str, Any]] | None = None  # stats.jsonl, read and checked once

    @property
    def failed(self) -> bool:
        """The run ended without a result (an exception, or non-finite losses/weights)."""
        return self.status in FAILED_STATUSES

    @property
    def status_detail(self) -> str | None:
        """Why the run stopped, failed or diverged (``run.json``), or why it is unreadable."""
        return self.problem or (self.info.status_detail if self.info else None)

    @property
    def run_id(self) -> str:
        return self.info.run_id if self.info else self.path.name

    @property
    def method(self) -> str | None:
        return self.info.method if self.info else None

    @property
    def dataset(self) -> str | None:
        return self.info.dataset if self.info else None

    @property
    def preset(self) -> str | None:
        return self.info.preset if self.info else None

    @property
    def seed(self) -> int | None:
        return self.info.seed if self.info else None

    @property
    def recipe_hash(self) -> str | None:
        return self.info.recipe_hash if self.info else None

    @property
    def arch(self) -> str | None:
        return (self.recipe or {}).get("model", {}).get("arch")

    @property
    def kimg(self) -> float:
        return self.info.cur_nimg / 1000 if self.info else 0.0

    @property
    def total_kimg(self) -> float:
        return self.info.total_nimg / 1000 if self.info else 0.0

    @property
    def gpu_hours(self) -> float:
        """Training plus evaluation device-hours on GPUs."""
        return (self.info.gpu_hours + self.info.eval_gpu_hours) if self.info else 0.0

    @property
    def cpu_hours(self) -> float:
        return self.info.cpu_hours if self.info else 0.0

    @property
    def device(self) -> str:
        return self.info.device if self.info else "?"

    @property
    def processes(self) -> list[int]:
        """Processes (GPUs) of each distinct training layout, in session order: ``[8]``, ``[2, 1]``."""
        if self.info is None:
            return []
        counts = [s.device_count for s in self.info.sessions] or [self.info.device_count]
        return list(dict.fromkeys(counts))

    @property
    def device_label(self) -> str:
        """The device with the process count it trained with: ``NVIDIA H100``, ``8x NVIDIA H100``,
        ``2/1x cpu`` (a run continued with another count)."""
        counts = self.processes
        if not counts or counts == [1]:
            return self.device
        return f"{'/'.join(str(c) for c in counts)}x {self.device}"

    def stats(self) -> list[dict[str, Any]]:
        """``stats.jsonl`` (nothing for an unreadable run: what it holds cannot be trusted)."""
        if self.stats_records is None:
            self.stats_records = [] if self.status == "unreadable" else read_jsonl(self.path / "stats.jsonl")
        return self.stats_records


def _type_problems(
    records: list[dict[str, Any]], fields: dict[str, tuple[type, ...]], file_name: str
) -> list[str]:
    """The first wrong-typed field of ``records`` (bool is never a number)."""
    for number, record in enumerate(records, 1):
        for key, types in fields.items():
            value = record.get(key)
            if value is None:
                continue
            wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
            if wrong:
                allowed = "/".join(t.__name__ for t in types)
                return [f"{file_name} record {number}: {key} is {value!r}, not {allowed}"]
        if file_name == "stats.jsonl":
            losses = record.get("losses") or {}
            bad = [k for k, v in losses.items() if not isinstance(v, _NUMBER) or isinstance(v, bool)]
            if bad:
                return [f"stats.jsonl record {number}: losses.{bad[0]} is {losses[bad[0]]!r}, not a number"]
    return []


def load_run(path: Path) -> StoredRun:
    """Read one run directory; problems make it ``unreadable`` instead of raising."""
    run = RunDir(path)
    if not run.info_path.exists():
        return StoredRun(path, "unreadable", problem="no run.json (the run died before it was created?)")
    try:
        info = run.read_info()
    except (OSError, ValueError, TypeError) as err:
        return StoredRun(path, "unreadable", problem=f"run.json cannot be read ({type(err).__name__}: {err})")
    try:
        recipe = run.read_recipe_dict()
    except (OSError, ValueError, yaml.YAMLError) as err:
        return StoredRun(
            path, "unreadable", info=info, problem=f"recipe.yaml cannot be read ({type(err).__name__})"
        )
    problems: list[str] = []
    try:
        metrics = read_jsonl(run.metrics_path, problems)
        stats = read_jsonl(run.stats_path, problems)
    except OSError as err:
        return StoredRun(path, "unreadable", info=info, problem=f"cannot read ({type(err).__name__}: {err})")
    problems += _type_problems(metrics, METRIC_FIELDS, "metrics.jsonl")
    problems += _type_problems(stats, STATS_FIELDS, "stats.jsonl")
    if problems:
        return StoredRun(
            path,
            "unreadable",
            info=info,
            problem="; ".join(problems[:2]) + " (written by hand or another tool?)",
        )
    try:
        hashes_match = isinstance(recipe, dict) and canonical_hash(recipe) == info.recipe_hash
    except (TypeError, ValueError):  # YAML values JSON cannot hold (dates, ...)
        hashes_match = False
    if not hashes_match:
        return StoredRun(
            path,
            "unreadable",
            info=info,
            metrics=metrics,
            problem="recipe.yaml does not hash to run.json's recipe_hash (edited by hand?)",
            stats_records=stats,
        )
    status = info.status if info.status in STORE_STATUSES else "unreadable"
    problem = None if status != "unreadable" else f"unknown status {info.status!r} in run.json"
    return StoredRun(
        path, status, info=info, recipe=recipe, metrics=metrics, problem=problem, stats_records=stats
    )


def find_run_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Directories under ``root`` (itself included) that hold a run.json or a recipe.yaml."""
    found: list[Path] = []

    def visit(directory: Path, depth: int) -> None:
        if (directory / "run.json").exists() or (directory / "recipe.yaml").exists():
            found.append(directory)
            return  # a run directory's children (checkpoints/) are not runs
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            visit(child, depth + 1)

    if root.is_dir():
        visit(root, 0)
    return found


def scan_runs(roots: Sequence[Path | str]) -> list[StoredRun]:
    """Every run under ``roots`` (a directory reached from two roots counts once), sorted by path."""
    seen: dict[Path, StoredRun] = {}
    for root in roots:
        for path in find_run_dirs(Path(root)):
            key = path.resolve()
            if key not in seen:
                seen[key] = load_run(path)
    return sorted(seen.values(), key=lambda r: str(r.path))


# -- which record stands for a run ------------------------------------------------------------------
@dataclass
class PickedRecord:
    """The metric record chosen for one run, protocol and checkpoint, or why there is none."""

    state: str  # ok | standin | pending | missing
    record: dict[str, Any] | None = None
    selected_on_split: str | None = None  # reference split the checkpoint was selected on (best only)

    @property
    def value(self) -> float | None:
        return float(self.record["value"]) if self.state in ("ok", "standin") and self.record else None


def _record_nimg(record: dict[str, Any]) -> int | None:
    if record.get("cur_nimg") is not None:
        return int(record["cur_nimg"])
    if record.get("kimg") is not None:
        return round(float(record["kimg"]) * 1000)
    return None


def is_last_record(record: dict[str, Any], final_nimg: int) -> bool:
    if record.get("checkpoint") == "best" or record.get("purpose") == "best":
        return False
    if record.get("checkpoint") == "last" or record.get("purpose") == "last":
        return True
    return _record_nimg(record) == final_nimg


def is_best_record(record: dict[str, Any]) -> bool:
    return record.get("checkpoint") == "best" or record.get("purpose") == "best"


def _choose(records: Iterable[dict[str, Any]]) -> PickedRecord:
    records = list(records)
    ok = [r for r in records if r.get("status") == "ok" and r.get("value") is not None]
    standard = [r for r in ok if r.get("standard_weights")]
    if standard:
        return PickedRecord("ok", standard[-1])
    if ok:
        return PickedRecord("standin", ok[-1])
    if any(r.get("status") == "pending" for r in records):
        return PickedRecord("pending", next(r for r in reversed(records) if r.get("status") == "pending"))
    return PickedRecord("missing")


def pick_record(run: StoredRun, protocol: str, checkpoint: str = "last") -> PickedRecord:
    """The record of ``protocol`` standing for ``run`` (see the module docstring)."""
    if run.info is None:
        return PickedRecord("missing")
    records = [r for r in run.metrics if r.get("protocol") == protocol]
    final_nimg = run.info.cur_nimg
    last = _choose(r for r in records if is_last_record(r, final_nimg))
    if checkpoint == "last":
        return last
    if checkpoint != "best":
        raise ValueError(f"checkpoint must be 'last' or 'best', not {checkpoint!r}")
    best_records = [r for r in records if is_best_record(r)]
    if best_records:
        picked = _choose(best_records)
        selection = (picked.record or {}).get("selection") or {}
        picked.selected_on_split = selection.get("split")
        return picked
    selects = bool((run.recipe or {}).get("evaluation", {}).get("select_best"))
    if selects and last.record is not None:
        # The best checkpoint was the final one: the loop evaluated it as `last` (same selection data).
        reference = (last.record.get("protocol_record") or {}).get("reference")
        last.selected_on_split = reference
    return last


def describe_runs(runs: Sequence[StoredRun]) -> str:
    """One line: how many runs per status (for CLI summaries)."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    parts = [f"{counts[s]} {s}" for s in STORE_STATUSES if counts.get(s)]
    return f"{len(runs)} runs" + (f" ({', '.join(parts)})" if parts else "")
