"""``degan-bench plan``: the machine-readable plan of a sweep (jobs, chains, states, costs, CI waves)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from degan_bench.cli.app import app
from degan_bench.cli.options import (
    AllTables,
    GpusPerJob,
    MaxGpusPerJob,
    RunStore,
    SelectChain,
    SelectDataset,
    SelectJob,
    SelectMethod,
    SelectShard,
    TableNames,
    TablePreset,
    TableSeeds,
)
from degan_bench.cli.sweep import expand_plan, make_selection, write_plan

FORMATS = ("json", "summary", "matrix", "gitlab")


@app.command("plan")
def plan_command(
    names: TableNames = None,
    all_: AllTables = False,
    preset: TablePreset = None,
    seeds: TableSeeds = None,
    runs: RunStore = None,
    job: SelectJob = None,
    chain: SelectChain = None,
    shard: SelectShard = None,
    method: SelectMethod = None,
    dataset: SelectDataset = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only chains in these states: new, incomplete, leased, blocked, failed, conflict, complete "
            "(comma-separated or repeated).",
            show_default=False,
        ),
    ] = None,
    gpus_per_job: GpusPerJob = None,
    max_gpus_per_job: MaxGpusPerJob = None,
    runner_labels: Annotated[
        str | None,
        typer.Option(
            help="GPU count -> CI runner label, e.g. 1=gpu-1,2=gpu-2,4=gpu-4,8=gpu-8 (the default).",
            show_default=False,
        ),
    ] = None,
    wave_size: Annotated[
        int, typer.Option(help="Matrix entries per CI wave (GitHub's limit: 256).", min=1)
    ] = 256,
    wave: Annotated[int, typer.Option(help="matrix / gitlab: which wave.", min=0)] = 0,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="json (the whole plan) | summary (text) | matrix (GitHub matrix of one wave) | gitlab "
            "(a child pipeline of one wave).",
        ),
    ] = "json",
    output: Annotated[
        Path | None, typer.Option(help="Write here instead of stdout.", show_default=False)
    ] = None,
) -> None:
    """Every job and chain of the tables with id, command, dependencies, recipe hash, seed, GPUs, nodes,
    cost estimate and state (new / incomplete / leased / blocked / failed / conflict / complete); chains
    carry the CI runner label and wave. Runs nothing.

    A GitHub matrix from it with jq alone (wave 0):
    jq -c '{include: [.chains[] | select(.dispatch and .wave == 0) | {chain: .id, gpus, runner}]}' plan.json

    Example: degan-bench plan --all --preset paper --format summary
    """
    from degan_bench.dispatch.plan import jobs_of, parse_runner_labels, select
    from degan_bench.errors import DeganError
    from degan_bench.paths import runs_dir

    if fmt not in FORMATS:
        raise DeganError(f"--format {fmt!r} is unknown", fix=f"use one of {', '.join(FORMATS)}")
    root = runs or runs_dir()
    selection = make_selection(job, chain, shard, method, dataset, state)
    tables, _jobs, skipped, chains, states = expand_plan(
        names, all_, preset, seeds, root, gpus_per_job=gpus_per_job, max_gpus_per_job=max_gpus_per_job
    )
    chosen = select(chains, states, selection)
    write_plan(
        chosen, states, jobs_of(chosen), root, tables, preset, skipped, fmt=fmt, output=output,
        labels=parse_runner_labels(runner_labels), wave_size=wave_size, wave=wave,
    )  # fmt: skip
