"""Command-line options that several commands share (``plan``, ``sweep``, ``claims``, ``runs``), each
defined once so their names, types and help cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from degan_bench.recipes.schema import PRESETS

# -- the tables of a sweep ---------------------------------------------------------------------------
TableNames = Annotated[
    list[str] | None, typer.Argument(help="Table name(s) from recipes/tables/.", show_default=False)
]
AllTables = Annotated[bool, typer.Option("--all", help="Every table marked in_all.")]
TablePreset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help=f"{' | '.join(PRESETS)} (default: each table's, paper for paper tables).",
        show_default=False,
    ),
]
TableSeeds = Annotated[
    int | None,
    typer.Option(
        "--seeds", help="Training seeds per cell (0..N-1) (default: each table's).", min=1, show_default=False
    ),
]

# -- the run store -----------------------------------------------------------------------------------
RunStore = Annotated[
    Path | None, typer.Option("--runs", help="Run store (default: the runs dir).", show_default=False)
]

# -- which chains of a plan (dispatch.plan.Selection) and on how many GPUs ------------------------------
SelectJob = Annotated[
    list[str] | None,
    typer.Option(
        "--job", help="Only this job (a run name, `plan` jobs[].id; repeatable).", show_default=False
    ),
]
SelectChain = Annotated[
    list[str] | None,
    typer.Option(
        "--chain", help="Only this chain, whole (`plan` chains[].id; repeatable).", show_default=False
    ),
]
SelectShard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Only shard i of n (1 <= i <= n): chains by a stable hash of their id, never split.",
        show_default=False,
    ),
]
SelectMethod = Annotated[
    list[str] | None,
    typer.Option("--method", help="Only chains with this method (repeatable).", show_default=False),
]
SelectDataset = Annotated[
    list[str] | None,
    typer.Option("--dataset", help="Only chains with this dataset (repeatable).", show_default=False),
]
GpusPerJob = Annotated[
    int | None,
    typer.Option(
        "--gpus-per-job",
        help="Run every job on N GPUs instead of its recipe's resources.gpus (same recipe hash).",
        min=1,
        show_default=False,
    ),
]
MaxGpusPerJob = Annotated[
    int | None,
    typer.Option(
        "--max-gpus-per-job",
        help="Run jobs on at most N GPUs (same recipe hash; e.g. the GPUs this machine has).",
        min=1,
        show_default=False,
    ),
]
