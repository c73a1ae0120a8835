"""``claims check --run``: the cells a claim still lacks, as sweep jobs, cheapest first.

Every cell of ours becomes the one-cell table the checks read (:func:`~degan_bench.claims.check.cell_table`)
and goes through the sweep machinery (:func:`degan_bench.dispatch.jobs.expand_jobs`): the same run
directories, the same skipping of complete runs and resuming of incomplete ones, the same chains (a
lottery ticket after its IMP rounds). Each cell's cost is the estimated device-hours of its whole chain
still to run (:func:`degan_bench.dispatch.jobs.estimate_job`: measured from earlier runs of the recipe,
else ``results/costs.yaml``); cells run cheapest first (unknown costs last), each chain in dependency
order, so the claim's cheap evidence comes in first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from degan_bench.claims.check import cell_table
from degan_bench.claims.definition import ClaimDef
from degan_bench.dispatch.jobs import (
    CostEntry,
    Estimate,
    Job,
    SkippedCell,
    chain,
    estimate_job,
    expand_jobs,
    load_costs,
    summarize_estimates,
)
from degan_bench.methods import KNOWN_METHODS
from degan_bench.results.store import StoredRun, scan_runs
from degan_bench.results.tables import resolve_cell

TODO_STATES = ("new", "incomplete")


@dataclass
class PlannedJob:
    job: Job
    cells: list[str]  # claim cell keys this job is (part of the chain of)
    hours: float | None  # estimated device-hours still to run; None = unknown


@dataclass
class ClaimPlan:
    claim: ClaimDef
    todo: list[PlannedJob]  # in the order they start
    skipped: list[SkippedCell]
    complete: list[Job]
    conflicts: list[Job]
    elsewhere: list[Job] = field(default_factory=list)  # satisfied by a complete run under another name
    estimates: dict[str, Estimate] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, Any]:
        return summarize_estimates([p.job for p in self.todo], self.estimates)


def plan_claim(
    claim: ClaimDef,
    runs_root: Path,
    *,
    seeds: int | None = None,
    runs: list[StoredRun] | None = None,
    costs: list[CostEntry] | None = None,
    recipes_root: Path | None = None,
) -> ClaimPlan:
    """The jobs that train the claim's missing cells, cheapest cell first (see the module docstring)."""
    keys = [
        k for k, c in claim.cells.items() if c.use == "ours" and (not c.pending or c.method in KNOWN_METHODS)
    ]
    tables = {k: cell_table(claim, k, claim.protocols_of(k)) for k in keys}
    jobs, skipped = expand_jobs(
        list(tables.values()), runs_root, seeds=seeds or claim.seeds, recipes_root=recipes_root
    )
    stored = scan_runs([runs_root]) if runs is None else runs
    costs = load_costs() if costs is None else costs
    estimates = {job.name: estimate_job(job, stored, costs) for job in jobs}

    def hours(job: Job) -> float | None:
        return estimates[job.name].hours(job.remaining_kimg) if job.state in TODO_STATES else 0.0

    # a cell seed with a complete run of its recipe anywhere under the root (another directory name, an
    # imported run) needs no new run
    done = {(run.recipe_hash, run.seed) for run in stored if run.status == "complete"}
    elsewhere: list[Job] = []
    cell_jobs: list[tuple[float, float, str, Job, str]] = []
    for key, table in tables.items():
        cell = claim.cells[key]
        resolved = resolve_cell(
            table, cell.method, cell.dataset, claim.preset, recipes_root, list(cell.set)
        ).resolved
        if resolved is None:
            continue
        for job in jobs:
            if job.resolved.hash != resolved.hash:
                continue
            if job.state != "complete" and (job.resolved.hash, job.seed) in done:
                elsewhere.append(job)
                continue
            todo_links = [link for link in chain(job) if link.state in TODO_STATES]
            costs_of_chain = [hours(link) for link in todo_links]
            total = math.inf if None in costs_of_chain else sum(c or 0.0 for c in costs_of_chain)
            # unknown costs sort last, by kimg still to train (the same kind of job costs alike per kimg)
            cell_jobs.append((total, sum(link.remaining_kimg for link in todo_links), job.name, job, key))
    owners: dict[int, list[str]] = {}
    for *_, job, key in cell_jobs:
        for link in chain(job):
            owners.setdefault(id(link), [])
            if key not in owners[id(link)]:
                owners[id(link)].append(key)
    todo: list[PlannedJob] = []
    seen: set[int] = set()
    for *_, job, _key in sorted(cell_jobs, key=lambda item: item[:3]):
        for link in chain(job):
            if id(link) in seen or link.state not in TODO_STATES:
                continue
            seen.add(id(link))
            todo.append(PlannedJob(link, owners.get(id(link), []), hours(link)))
    return ClaimPlan(
        claim=claim,
        todo=todo,
        skipped=skipped,
        complete=[j for j in jobs if j.state == "complete"],
        conflicts=[j for j in jobs if j.state == "conflict"],
        elsewhere=elsewhere,
        estimates=estimates,
    )


def plan_lines(plan: ClaimPlan) -> list[str]:
    """The plan as text: one line per job to run, then the totals (printed before anything starts)."""
    lines = [
        f"claim {plan.claim.name}: {len(plan.todo)} job(s) to run, "
        f"{len(plan.complete) + len(plan.elsewhere)} complete, "
        f"{len(plan.conflicts)} conflict(s), {len({(s.method, s.dataset) for s in plan.skipped})} cell(s) "
        "without a recipe",
    ]
    for skipped in plan.skipped:
        lines.append(f"  no job: {skipped.method} on {skipped.dataset}: {skipped.reason} ({skipped.message})")
    for job in plan.conflicts:
        lines.append(f"  conflict: {job.name}: {job.note}")
    if plan.todo:
        lines.append(f"  {'order':>5}  {'state':<10} {'kimg to go':>10} {'est. h':>8}  run [cells]")
    for i, planned in enumerate(plan.todo, 1):
        job = planned.job
        shown = "unknown" if planned.hours is None else f"{planned.hours:.2f}"
        after = f" after {', '.join(d.name for d in job.depends_on)}" if job.depends_on else ""
        lines.append(
            f"  {i:>5}  {job.state:<10} {job.remaining_kimg:>10g} {shown:>8}  {job.name} "
            f"[{', '.join(planned.cells)}]{after}"
        )
    totals = plan.totals
    sources = sorted({plan.estimates[p.job.name].source for p in plan.todo})
    if sources:
        lines.append("  rates: " + " | ".join(sources))
    lines.append(
        f"estimate: about {totals['gpu_hours']:.1f} GPU-hours"
        + (f" + {totals['cpu_hours']:.2f} CPU-hours" if totals["cpu_hours"] else "")
        + (f"; {len(totals['unknown'])} job(s) of unknown cost" if totals["unknown"] else "")
        + " (training only; evaluation not included)"
    )
    return lines
