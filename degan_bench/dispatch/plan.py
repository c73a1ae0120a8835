"""The campaign plan: every job and chain of a sweep, with its state, selection, shards and CI waves.

A *chain* is a set of jobs joined by dependencies (the IMP rounds of a lottery ticket and the ticket;
a job without dependencies is a chain of one). Chains are the unit that is never split: a shard, a CI
matrix entry or a SLURM driver always gets whole chains, so no link waits on a link that runs
somewhere else. A chain's id is the name of its first job (its root), which stays the same as the
plan grows.

Job states (beyond those of :mod:`degan_bench.dispatch.jobs`): ``blocked`` = a dependency failed, is a
conflict, or is itself blocked. A chain's state is the most pressing of its jobs': complete (all
complete) < new < incomplete < leased < blocked < failed.

Shards: ``--shard i/n`` (1 <= i <= n) keeps the chains whose id hashes (sha256) to ``i - 1`` mod n, so
every runner computing its own plan at a different moment still gets the same chains.

CI waves: the chains that can be dispatched (new or incomplete, on one node) in plan order, cut into
waves of ``wave_size`` (256, the GitHub Actions matrix limit). A campaign run dispatches wave 0 of the
current plan; complete chains drop out, so the next run's wave 0 is the next slice. Each chain gets
the runner label of the smallest GPU count that holds it (``gpu-1``, ``gpu-2``, ``gpu-4``, ``gpu-8``).
Multi-node chains get no label (``runner: null``): they belong on SLURM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from degan_bench.core.rundir import utc_now
from degan_bench.dispatch.jobs import RUNNABLE_STATES, Estimate, Job
from degan_bench.errors import DeganError

PLAN_SCHEMA = 1
MATRIX_LIMIT = 256
DEFAULT_RUNNER_LABELS: dict[int, str] = {1: "gpu-1", 2: "gpu-2", 4: "gpu-4", 8: "gpu-8"}
#: chain state from its jobs' states: the first that applies, in this order
_CHAIN_PRECEDENCE = ("failed", "conflict", "blocked", "leased", "incomplete", "new", "complete")
BLOCKING = ("failed", "conflict", "blocked")


@dataclass
class Chain:
    id: str
    jobs: list[Job]  # in dependency order

    @property
    def gpus(self) -> int:
        return max(job.gpus for job in self.jobs)

    @property
    def nodes(self) -> int:
        return max(job.nodes for job in self.jobs)


def build_chains(jobs: list[Job]) -> list[Chain]:
    """The weakly connected components of the dependency graph, in the order of their first job."""
    parent = {id(job): id(job) for job in jobs}

    def find(key: int) -> int:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for job in jobs:
        for dep in job.depends_on:
            if id(dep) in parent:
                parent[find(id(job))] = find(id(dep))
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        groups.setdefault(find(id(job)), []).append(job)
    return [Chain(members[0].name, members) for members in groups.values()]


def effective_states(jobs: list[Job]) -> dict[int, str]:
    """Each job's state with ``blocked`` for those behind a failed, conflicting or blocked dependency
    (``jobs`` in dependency order)."""
    states: dict[int, str] = {}
    for job in jobs:
        state = job.state
        if state != "complete" and any(states.get(id(d), d.state) in BLOCKING for d in job.depends_on):
            state = "blocked"
        states[id(job)] = state
    return states


def chain_state(chain: Chain, states: dict[int, str]) -> str:
    present = {states[id(job)] for job in chain.jobs}
    if present == {"complete"}:
        return "complete"
    if "complete" in present and present <= {"complete", "new"}:
        return "incomplete"
    return next(s for s in _CHAIN_PRECEDENCE if s in present)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise DeganError(f"--shard {text!r} is not i/n", fix="e.g. --shard 1/4 (1 <= i <= n)") from None
    if not 1 <= index <= count:
        raise DeganError(f"--shard {text}: i must be between 1 and n", fix="e.g. --shard 1/4")
    return index, count


def shard_of(chain_id: str, count: int) -> int:
    """The 1-based shard of a chain among ``count`` (stable: a hash of its id)."""
    return int(hashlib.sha256(chain_id.encode()).hexdigest(), 16) % count + 1


@dataclass
class Selection:
    """What ``--job``, ``--chain``, ``--shard``, ``--method``, ``--dataset``, ``--state`` select."""

    jobs: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    shard: tuple[int, int] | None = None
    methods: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)  # chain states

    @property
    def empty(self) -> bool:
        return not (self.jobs or self.chains or self.shard or self.methods or self.datasets or self.states)


def select(chains: list[Chain], states: dict[int, str], selection: Selection) -> list[Chain]:
    """The chains (whole) that ``selection`` keeps; ``--job`` keeps the named jobs alone (a chain of its
    own, in order). Unknown ids are one-line errors."""
    by_job = {job.name: chain for chain in chains for job in chain.jobs}
    by_chain = {chain.id: chain for chain in chains}
    for name in selection.jobs:
        if name not in by_job:
            raise DeganError(
                f"--job {name}: no such job in the plan", fix="see `degan-bench plan --format summary`"
            )
    for name in selection.chains:
        if name not in by_chain:
            raise DeganError(
                f"--chain {name}: no such chain in the plan", fix="see `degan-bench plan` (chains[].id)"
            )
    kept = []
    for chain in chains:
        if selection.shard and shard_of(chain.id, selection.shard[1]) != selection.shard[0]:
            continue
        if selection.methods and not any(job.resolved.method in selection.methods for job in chain.jobs):
            continue
        if selection.datasets and not any(job.resolved.dataset in selection.datasets for job in chain.jobs):
            continue
        if selection.states and chain_state(chain, states) not in selection.states:
            continue
        if selection.jobs or selection.chains:
            picked = [job for job in chain.jobs if job.name in selection.jobs]
            if chain.id not in selection.chains:
                if not picked:
                    continue
                chain = Chain(chain.id, picked)
        kept.append(chain)
    return kept


def runner_label(chain: Chain, labels: dict[int, str]) -> str | None:
    """The label of the smallest runner class with enough GPUs; None for multi-node or too large."""
    if chain.nodes > 1:
        return None
    fitting = [count for count in sorted(labels) if count >= chain.gpus]
    return labels[fitting[0]] if fitting else None


def parse_runner_labels(text: str | None) -> dict[int, str]:
    """``"1=gpu-1,2=gpu-2,4=gpu-4,8=gpu-8"`` -> {1: "gpu-1", ...}."""
    if not text:
        return dict(DEFAULT_RUNNER_LABELS)
    labels: dict[int, str] = {}
    for part in text.split(","):
        count, _, label = part.partition("=")
        if not count.strip().isdigit() or not label.strip():
            raise DeganError(
                f"--runner-labels {text!r}: {part!r} is not GPUS=LABEL", fix="e.g. 1=gpu-1,4=gpu-4"
            )
        labels[int(count)] = label.strip()
    return labels


def _hours(estimate: Estimate | None, kimg: float) -> float | None:
    if estimate is None:
        return None
    hours = estimate.hours(kimg)
    return None if hours is None else round(hours, 4)


def plan_document(
    chains: list[Chain],
    states: dict[int, str],
    estimates: dict[str, Estimate],
    *,
    runs_root: Path,
    tables: Iterable[str],
    preset: str | None,
    labels: dict[int, str] | None = None,
    wave_size: int = MATRIX_LIMIT,
    skipped: int = 0,
) -> dict[str, Any]:
    """The plan as JSON-ready data (see the module docstring and README's campaign section)."""
    labels = labels or dict(DEFAULT_RUNNER_LABELS)
    job_entries, chain_entries = [], []
    wave_index = 0
    for chain in chains:
        c_state = chain_state(chain, states)
        runner = runner_label(chain, labels)
        dispatch = c_state in RUNNABLE_STATES and runner is not None
        todo_hours: float | None = 0.0
        for job in chain.jobs:
            state = states[id(job)]
            estimate = estimates.get(job.name)
            remaining = _hours(estimate, job.remaining_kimg) if state in RUNNABLE_STATES else 0.0
            if todo_hours is not None:
                todo_hours = None if remaining is None else todo_hours + remaining
            job_entries.append(
                {
                    "id": job.name,
                    "chain": chain.id,
                    "method": job.resolved.method,
                    "dataset": job.resolved.dataset,
                    "backbone": job.resolved.model.arch,
                    "preset": job.resolved.preset,
                    "seed": job.seed,
                    "recipe_hash": job.resolved.hash,
                    "tables": list(job.tables),
                    "run_dir": str(job.run_dir),
                    "command": ["degan-bench", *job.run_args(device="cuda")],
                    "depends_on": [dep.name for dep in job.depends_on],
                    "gpus": job.gpus,
                    "nodes": job.nodes,
                    "state": state,
                    "note": job.note,
                    "leased_by": job.lease.to_json() if job.lease else None,
                    "failures": job.failures,
                    "kimg_done": job.done_kimg,
                    "kimg_total": job.total_kimg,
                    "estimate": {
                        "gpu_hours_total": _hours(estimate, job.total_kimg),
                        "gpu_hours_remaining": remaining,
                        "device_sec_per_kimg": estimate.device_sec_per_kimg if estimate else None,
                        "device": estimate.device if estimate else "",
                        "source": estimate.source if estimate else "",
                    },
                }
            )
        wave = None
        if dispatch:
            wave, wave_index = wave_index // wave_size, wave_index + 1
        chain_entries.append(
            {
                "id": chain.id,
                "jobs": [job.name for job in chain.jobs],
                "state": c_state,
                "gpus": chain.gpus,
                "nodes": chain.nodes,
                "runner": runner,
                "dispatch": dispatch,
                "wave": wave,
                "gpu_hours_remaining": todo_hours,
                "wall_hours_remaining": None if todo_hours is None else round(todo_hours / chain.gpus, 4),
                "methods": sorted({job.resolved.method for job in chain.jobs}),
                "datasets": sorted({job.resolved.dataset for job in chain.jobs}),
            }
        )
    return {
        "schema": PLAN_SCHEMA,
        "generated_utc": utc_now(),
        "runs_root": str(runs_root),
        "preset": preset,
        "tables": list(tables),
        "runner_labels": {str(k): v for k, v in sorted(labels.items())},
        "wave_size": wave_size,
        "summary": summarize(job_entries, chain_entries, wave_size, skipped),
        "chains": chain_entries,
        "jobs": job_entries,
    }


def summarize(jobs: list[dict[str, Any]], chains: list[dict[str, Any]], wave_size: int, skipped: int) -> dict:
    def count(entries: list[dict[str, Any]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in entries:
            out[entry["state"]] = out.get(entry["state"], 0) + 1
        return dict(sorted(out.items()))

    todo = [j for j in jobs if j["state"] in RUNNABLE_STATES]
    known = [
        j["estimate"]["gpu_hours_remaining"] for j in todo if j["estimate"]["gpu_hours_remaining"] is not None
    ]
    dispatch = [c for c in chains if c["dispatch"]]
    waves = [min(wave_size, len(dispatch) - start) for start in range(0, len(dispatch), wave_size)]
    by_runner: dict[str, int] = {}
    for chain in dispatch:
        by_runner[chain["runner"]] = by_runner.get(chain["runner"], 0) + 1
    return {
        "jobs": len(jobs),
        "chains": len(chains),
        "multi_job_chains": sum(1 for c in chains if len(c["jobs"]) > 1),
        "job_states": count(jobs),
        "chain_states": count(chains),
        "jobs_to_run": len(todo),
        "gpu_hours_remaining_known": round(sum(known), 2),
        "jobs_of_unknown_cost": len(todo) - len(known),
        "dispatch_chains": len(dispatch),
        "dispatch_by_runner": dict(sorted(by_runner.items())),
        "not_on_ci": [c["id"] for c in chains if c["state"] in RUNNABLE_STATES and c["runner"] is None],
        "waves": waves,
        "cells_without_job": skipped,
    }


def matrix(plan: dict[str, Any], wave: int = 0) -> dict[str, Any]:
    """The GitHub Actions matrix of one wave; the same as the jq line in README's campaign section."""
    include = [
        {"chain": c["id"], "gpus": c["gpus"], "runner": c["runner"]}
        for c in plan["chains"]
        if c["dispatch"] and c["wave"] == wave
    ]
    return {"include": include}


def jobs_of(chains: list[Chain]) -> list[Job]:
    """The jobs of ``chains`` in dependency order (each once)."""
    seen: dict[int, Job] = {}
    for chain in chains:
        for job in chain.jobs:
            seen.setdefault(id(job), job)
    return list(seen.values())
