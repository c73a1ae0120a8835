"""Sweep jobs: tables expanded into (recipe x seed) runs, their state on disk, and cost estimates.

A job is one ``degan-bench run METHOD DATASET --preset P --seed S [--set ...] --resume auto --out RUN``.
Its run directory is ``<runs root>/<default_run_name>`` (method, dataset, preset, seed and recipe hash),
so the same job always lands in the same directory:

- ``new``: no ``run.json`` there yet;
- ``complete``: ``run.json`` says complete *and* its recipe hash and seed are the job's -> skipped;
- ``incomplete``: running / stopped / failed -> resumed with ``--resume auto`` (from the newest
  checkpoint; a failed run restarts from its last good one);
- ``conflict``: the directory holds another recipe hash or seed, or cannot be read -> left alone and
  reported (never overwritten).

Chains: a run that reads another run's artifacts (a lottery ticket reads the mask of its IMP round,
IMP round k prunes round k - 1's final G; ``Method.prerequisites``) expands into one job per link, each
with ``depends_on``; the jobs come out in an order where every job follows its dependencies, and the
queues start a job only once its dependencies are complete.

Estimates are kimg x device-seconds per kimg from the cost model (:mod:`degan_bench.dispatch.costs`:
measured runs, bench reports, published figures, FLOPs extrapolation), re-exported here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from degan_bench.errors import DeganError
from degan_bench.recipes.loader import ResolvedRecipe, default_backbone, parse_override, resolve_recipe
from degan_bench.results.store import load_run
from degan_bench.results.tables import TableDef, resolve_cell
from degan_bench.training.runner import default_run_name


@dataclass
class Job:
    """One recipe x seed run of a sweep."""

    resolved: ResolvedRecipe
    seed: int
    run_dir: Path
    tables: list[str] = field(default_factory=list)
    state: str = "new"
    done_kimg: float = 0.0
    note: str = ""
    depends_on: list[Job] = field(default_factory=list)  # must be complete before this job starts

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def total_kimg(self) -> float:
        return float(self.resolved.recipe.training.kimg)

    @property
    def remaining_kimg(self) -> float:
        return max(self.total_kimg - self.done_kimg, 0.0)

    def command(self, *, python: str | None = None, device: str = "auto", evaluate: bool = True) -> list[str]:
        """The ``degan-bench run`` command line that trains (or continues) this job."""
        r = self.resolved
        cmd = [python or sys.executable, "-m", "degan_bench", "run", r.method, r.dataset]
        if r.model.arch != default_backbone(r.method, r.dataset):  # else the child resolves another recipe
            cmd += ["--backbone", r.model.arch]
        cmd += ["--preset", r.preset, "--seed", str(self.seed), "--resume", "auto"]
        cmd += ["--out", str(self.run_dir), "--device", device]
        for override in r.overrides:
            cmd += ["--set", override]
        if not evaluate:
            cmd.append("--no-eval")
        return cmd


@dataclass
class SkippedCell:
    """A table cell that yields no job, and why (reference only, no recipe yet, ...)."""

    table: str
    method: str
    dataset: str
    reason: str
    message: str


def expand_jobs(
    tables: list[TableDef],
    runs_root: Path,
    *,
    preset: str | None = None,
    seeds: int | None = None,
    recipes_root: Path | None = None,
) -> tuple[list[Job], list[SkippedCell]]:
    """Every (recipe x seed) job of ``tables`` (deduplicated across tables), with its state on disk."""
    jobs: dict[tuple[str, int], Job] = {}
    skipped: list[SkippedCell] = []
    for table in tables:
        table_preset = preset or table.default_preset
        for row in table.rows:
            for column in table.columns:
                cell = resolve_cell(table, row.method, column.dataset, table_preset, recipes_root, row.set)
                if cell.resolved is None:
                    skipped.append(
                        SkippedCell(table.name, row.method, column.dataset, cell.status, cell.message)
                    )
                    continue
                for seed in range(seeds or table.seeds):
                    job = _add_job(cell.resolved, seed, runs_root, jobs, recipes_root, table.backbone)
                    for linked in chain(job):
                        if table.name not in linked.tables:
                            linked.tables.append(table.name)
    for job in jobs.values():
        refresh_state(job)
    return list(jobs.values()), skipped


def merge_overrides(base: list[str], extra: list[str]) -> list[str]:
    """``base`` then ``extra``, without the ``base`` overrides whose key ``extra`` sets again."""
    keys = {tuple(parse_override(text)[0]) for text in extra}
    return [text for text in base if tuple(parse_override(text)[0]) not in keys] + list(extra)


def _add_job(resolved: ResolvedRecipe, seed: int, runs_root: Path, jobs: dict[tuple[str, int], Job],
             recipes_root: Path | None, backbone: str, depth: int = 0) -> Job:  # fmt: skip
    """The job of ``resolved`` x ``seed``, added to ``jobs`` after the jobs it depends on (recursively)."""
    from degan_bench.methods import get_method

    key = (resolved.hash, seed)
    if key in jobs:
        return jobs[key]
    if depth > 1000:
        raise DeganError(f"{resolved.method} x {resolved.dataset}: the chain of prerequisite runs does "
                         "not end", fix="Method.prerequisites must lead to a run without any")  # fmt: skip
    deps = []
    for extra in get_method(resolved.method).prerequisites(resolved.method_config):
        overrides = merge_overrides(resolved.overrides, extra)
        dep = resolve_recipe(resolved.method, resolved.dataset, resolved.preset, overrides,
                             root=recipes_root, backbone=backbone)  # fmt: skip
        deps.append(_add_job(dep, seed, runs_root, jobs, recipes_root, backbone, depth + 1))
    job = Job(resolved, seed, runs_root / default_run_name(resolved, seed), depends_on=deps)
    jobs[key] = job
    return job


def chain(job: Job) -> list[Job]:
    """``job`` and every job it depends on, directly or not (dependencies first, each once)."""
    seen: dict[int, Job] = {}

    def visit(j: Job) -> None:
        for dep in j.depends_on:
            visit(dep)
        seen.setdefault(id(j), j)

    visit(job)
    return list(seen.values())


def refresh_state(job: Job) -> Job:
    """Set ``job.state`` (and ``done_kimg``, ``note``) from its run directory (see the module docstring)."""
    job.done_kimg, job.note = 0.0, ""
    if not (job.run_dir / "run.json").exists():
        job.state = "new"
        return job
    run = load_run(job.run_dir)
    if run.info is None:
        job.state, job.note = "conflict", run.problem or "unreadable run directory"
        return job
    if run.recipe_hash != job.resolved.hash or run.seed != job.seed:
        job.state = "conflict"
        job.note = (f"{job.run_dir} holds recipe {str(run.recipe_hash)[:12]} seed {run.seed}, not "
                    f"{job.resolved.short_hash} seed {job.seed}; move it away")  # fmt: skip
        return job
    if run.status == "unreadable":
        job.state, job.note = "conflict", run.problem or "unreadable run directory"
        return job
    job.done_kimg = run.kimg
    if run.status == "complete":
        job.state = "complete"
    else:
        job.state = "incomplete"
        job.note = f"{run.status} at {run.kimg:g}/{run.total_kimg:g} kimg"
    return job


# -- cost estimates: the cost model lives in degan_bench/dispatch/costs.py (re-exported here) ----------
from degan_bench.dispatch.costs import (  # noqa: E402
    CostEntry,
    Estimate,
    default_costs_path,
    estimate_job,
    load_costs,
    measured_rate,
    summarize_estimates,
)

__all__ = [
    "CostEntry",
    "Estimate",
    "Job",
    "SkippedCell",
    "chain",
    "default_costs_path",
    "estimate_job",
    "expand_jobs",
    "load_costs",
    "measured_rate",
    "merge_overrides",
    "refresh_state",
    "summarize_estimates",
]
