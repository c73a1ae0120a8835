"""Moving results between run stores: export (for CI artifacts) and import (merge several stores).

``export`` copies every run directory under a root to ``DEST/<same relative path>``; with
``checkpoints=False`` only the files at the top of each run directory (``run.json``, ``recipe.yaml``,
``metrics.jsonl``, ``stats.jsonl``, ``log.txt``, sample grids, TensorBoard events): what tables, pages
and cost estimates read, a few MB per run. Lease files are never copied. ``DEST/EXPORT.json`` records
where, when and what.

``import`` merges run directories from one or more sources (exports or stores) into a store. A run is
identified by its relative path; when the target already has it:

- a different recipe hash or seed, or either side unreadable -> ``conflict``, left alone and reported;
- the target is leased by a live writer -> ``leased``, left alone;
- the incoming run is *more complete* -> ``updated``: its files are copied over (files only the target
  has, such as checkpoints, stay);
- otherwise -> ``kept`` (never overwrite a more complete run, nor an equal one).

More complete = (complete before not, more kimg, more evaluated metric records, more metric records).
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from degan_bench.core.fileio import atomic_write_text
from degan_bench.core.lease import LEASE_FILE, live_lease
from degan_bench.core.rundir import utc_now
from degan_bench.errors import DeganError
from degan_bench.results.store import StoredRun, find_run_dirs, load_run

MANIFEST = "EXPORT.json"


def _skip(name: str) -> bool:
    return name.startswith(LEASE_FILE) or (name.startswith(".") and ".tmp-" in name)


def _copy_run(source: Path, target: Path, *, checkpoints: bool) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir()):
        if _skip(item.name):
            continue
        if item.is_dir():
            if checkpoints:
                shutil.copytree(
                    item, target / item.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*.tmp-*")
                )
        elif item.is_file():
            shutil.copy2(item, target / item.name)


def export_runs(root: Path, dest: Path, *, checkpoints: bool = False) -> list[str]:
    """Copy the run directories under ``root`` to ``dest`` (see the module docstring)."""
    root, dest = Path(root), Path(dest)
    runs = find_run_dirs(root)
    if not runs:
        raise DeganError(f"no run directories under {root}", fix="pass the run store with --runs")
    if dest.resolve() == root.resolve() or root.resolve() in dest.resolve().parents:
        raise DeganError(f"{dest} is inside the run store {root}", fix="export somewhere else")
    exported = []
    for path in runs:
        relative = path.relative_to(root) if path != root else Path(path.name)
        _copy_run(path, dest / relative, checkpoints=checkpoints)
        exported.append(str(relative))
    manifest = {
        "exported_utc": utc_now(),
        "host": platform.node(),
        "source": str(root.resolve()),
        "checkpoints": checkpoints,
        "runs": exported,
    }
    atomic_write_text(dest / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return exported


@dataclass
class ImportResult:
    run: str  # relative path
    action: str  # added | updated | kept | conflict | leased
    detail: str = ""


def completeness(run: StoredRun) -> tuple[int, int, int, int]:
    ok = sum(1 for m in run.metrics if m.get("status") == "ok")
    nimg = run.info.cur_nimg if run.info else -1
    return (int(run.status == "complete"), nimg, ok, len(run.metrics))


def _describe(run: StoredRun) -> str:
    evaluated = sum(1 for m in run.metrics if m.get("status") == "ok")
    return f"{run.status} at {run.kimg:g} kimg, {evaluated} metric(s)"


def import_runs(sources: list[Path], into: Path) -> list[ImportResult]:
    """Merge the run directories of ``sources`` into the store ``into`` (see the module docstring)."""
    results: list[ImportResult] = []
    into = Path(into)
    for source in sources:
        source = Path(source)
        found = find_run_dirs(source)
        if not found:
            raise DeganError(f"no run directories under {source}", fix="pass an export or a run store")
        for path in found:
            relative = path.relative_to(source) if path != source else Path(path.name)
            results.append(_import_one(path, into / relative, str(relative)))
    return results


def _import_one(path: Path, target: Path, name: str) -> ImportResult:
    incoming = load_run(path)
    if not (target / "run.json").exists():
        _copy_run(path, target, checkpoints=True)
        return ImportResult(name, "added", _describe(incoming))
    local = load_run(target)
    if incoming.info is None or local.info is None or "unreadable" in (incoming.status, local.status):
        why = incoming.problem if incoming.status == "unreadable" else local.problem
        return ImportResult(name, "conflict", f"unreadable: {why}")
    if (incoming.recipe_hash, incoming.seed) != (local.recipe_hash, local.seed):
        return ImportResult(
            name,
            "conflict",
            f"recipe {str(incoming.recipe_hash)[:12]} seed {incoming.seed} here vs "
            f"{str(local.recipe_hash)[:12]} seed {local.seed} in the store",
        )
    holder = live_lease(target)
    if holder is not None:
        return ImportResult(name, "leased", f"the store's copy is being written by {holder.describe()}")
    if completeness(incoming) > completeness(local):
        _copy_run(path, target, checkpoints=True)
        return ImportResult(name, "updated", f"{_describe(local)} -> {_describe(incoming)}")
    return ImportResult(name, "kept", f"the store's copy is as complete or more ({_describe(local)})")
