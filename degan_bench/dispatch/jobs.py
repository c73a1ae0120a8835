"""Sweep jobs: tables expanded into (recipe x seed) runs, their state on disk, and cost estimates.

A job is one ``degan-bench run METHOD DATASET --preset P --seed S [--set ...] --resume auto --out RUN``.
Its run directory is ``<runs root>/<default_run_name>`` (method, dataset, preset, seed and recipe hash),
so the same job always lands in the same directory:

- ``new``: no ``run.json`` there yet;
- ``complete``: ``run.json`` says complete *and* its recipe hash and seed are the job's -> skipped;
- ``incomplete``: running / stopped -> resumed with ``--resume auto`` (from the newest checkpoint);
  also a failed run that has failed fewer than ``MAX_FAILURES`` times (it restarts from its last good
  checkpoint);
- ``failed``: failed ``MAX_FAILURES`` times (sessions ending in an error): left for a person;
- ``leased``: another live process holds the run's lease (:mod:`degan_bench.core.lease`) -> not started
  here (``Job.lease`` names the holder);
- ``conflict``: the directory holds another recipe hash or seed, or cannot be read -> left alone and
  reported (never overwritten).

GPUs: a job asks for ``resources.gpus`` GPUs over ``resources.nodes`` nodes of its recipe (the official
set-up); :func:`override_gpus` fits them to the hardware at hand without touching the recipe hash.
``Job.command`` passes ``--gpus N`` to ``degan-bench run`` when the count is not 1.

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

from degan_bench.core.lease import LeaseRecord, live_lease
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
    gpus: int = 0  # 0: the recipe's resources.gpus (set in __post_init__)
    nodes: int = 0
    failures: int = 0  # sessions that ended in an error
    lease: LeaseRecord | None = None  # the live lease of another writer, when state == "leased"
    estimate_seconds: float | None = None  # expected wall seconds to finish (the queues' backfill)

    def __post_init__(self) -> None:
        resources = self.resolved.recipe.resources
        self.gpus = self.gpus or resources.gpus
        self.nodes = self.nodes or resources.nodes

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def gpus_per_node(self) -> int:
        return max(self.gpus // max(self.nodes, 1), 1)

    @property
    def total_kimg(self) -> float:
        return float(self.resolved.recipe.training.kimg)

    @property
    def remaining_kimg(self) -> float:
        return max(self.total_kimg - self.done_kimg, 0.0)

    def command(
        self,
        *,
        python: str | None = None,
        device: str = "auto",
        evaluate: bool = True,
        max_minutes: float | None = None,
        launcher: bool = True,
    ) -> list[str]:
        """The ``degan-bench run`` command line that trains (or continues) this job. ``launcher=False``
        leaves out ``--gpus`` (the processes are started by an outer torchrun, e.g. on SLURM)."""
        args = self.run_args(device=device, evaluate=evaluate, max_minutes=max_minutes, launcher=launcher)
        return [python or sys.executable, "-m", "degan_bench", *args]

    def run_args(
        self, *, device: str = "auto", evaluate: bool = True, max_minutes: float | None = None,
        launcher: bool = True,
    ) -> list[str]:  # fmt: skip
        """``run METHOD DATASET ...``: the arguments after ``degan-bench``."""
        r = self.resolved
        cmd = ["run", r.method, r.dataset]
        if r.model.arch != default_backbone(r.method, r.dataset):  # else the child resolves another recipe
            cmd += ["--backbone", r.model.arch]
        cmd += ["--preset", r.preset, "--seed", str(self.seed), "--resume", "auto"]
        cmd += ["--out", str(self.run_dir), "--device", device]
        for override in r.overrides:
            cmd += ["--set", override]
        if launcher and (self.gpus > 1 or self.gpus != r.recipe.resources.gpus):
            cmd += ["--gpus", str(self.gpus_per_node)]
        if max_minutes is not None:
            cmd += ["--max-minutes", f"{max(max_minutes, 0.0):.3f}"]
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
                cell = resolve_cell(table, row.method, column.dataset, table_preset, recipes_root,
                                    [*column.set, *row.set])  # fmt: skip
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


def override_gpus(jobs: list[Job], *, gpus: int | None = None, max_gpus: int | None = None) -> None:
    """Fit the GPU counts to the hardware at hand: ``gpus`` for every job, or at most ``max_gpus``
    (either puts the job on one node). The recipe hash does not change: ``resources`` is not hashed and
    the global batch and kimg accounting do not depend on the count."""
    for job in jobs:
        if gpus is not None:
            job.gpus, job.nodes = gpus, 1
        elif max_gpus is not None and job.gpus > max_gpus:
            job.gpus, job.nodes = max_gpus, 1


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


#: a run that failed this many times is left for a person (state ``failed``) instead of being retried
MAX_FAILURES = 3


def refresh_state(job: Job) -> Job:
    """Set ``job.state`` (and ``done_kimg``, ``note``, ``failures``, ``lease``) from its run directory (see
    the module docstring)."""
    job.done_kimg, job.note, job.failures, job.lease = 0.0, "", 0, None
    if not (job.run_dir / "run.json").exists():
        job.lease = live_lease(job.run_dir)
        job.state = "leased" if job.lease else "new"
        if job.lease:
            job.note = f"leased by {job.lease.describe()}"
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
    job.failures = sum(1 for s in run.info.sessions if str(s.end_reason or "").startswith("error"))
    if run.status == "complete":
        job.state = "complete"
        return job
    job.note = f"{run.status} at {run.kimg:g}/{run.total_kimg:g} kimg"
    job.lease = live_lease(job.run_dir)
    if job.lease is not None:
        job.state, job.note = "leased", f"{job.note}, leased by {job.lease.describe()}"
    elif run.status == "failed" and job.failures >= MAX_FAILURES:
        job.state, job.note = "failed", f"{job.note}; failed {job.failures} times, see {job.run_dir}/log.txt"
    else:
        job.state = "incomplete"
    return job


#: states a sweep starts (or continues)
RUNNABLE_STATES = ("new", "incomplete")


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
