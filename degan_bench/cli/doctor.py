"""``degan-bench doctor``: is this machine ready? torch/CUDA/GPU, disk, data root, weights."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from degan_bench import __version__
from degan_bench.cli.app import app, console
from degan_bench.data.prepare import prepared_status
from degan_bench.metrics.weights import weights_status
from degan_bench.paths import cache_dir, data_root, runs_dir


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _free_gb(path: Path) -> str:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return f"{shutil.disk_usage(probe).free / 2**30:.1f} GiB free"


@app.command()
def doctor(
    ci: Annotated[
        bool,
        typer.Option(
            "--ci",
            help="Preflight of a CI/cluster job: GPU visible, free disk, store writable, datasets of the "
            "selected jobs prepared, weights verified; exit 1 naming what is missing.",
        ),
    ] = False,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="--ci: the tables whose jobs will run (default: none).", show_default=False),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="--ci: every table marked in_all.")] = False,
    preset: Annotated[str | None, typer.Option(help="--ci: the sweep's preset.", show_default=False)] = None,
    chain: Annotated[
        list[str] | None, typer.Option("--chain", help="--ci: only this chain.", show_default=False)
    ] = None,
    job: Annotated[
        list[str] | None, typer.Option("--job", help="--ci: only this job.", show_default=False)
    ] = None,
    runs: Annotated[
        Path | None, typer.Option("--runs", help="--ci: the run store.", show_default=False)
    ] = None,
    min_free_gb: Annotated[float, typer.Option(help="--ci: free disk needed in the store.", min=0.0)] = 20.0,
    allow_cpu: Annotated[
        bool, typer.Option("--allow-cpu", help="--ci: no GPU is fine (CPU runners).")
    ] = False,
) -> None:
    """Report torch/CUDA/GPUs, disk space, the data root and prepared datasets, and the metric weights.

    With --ci: check that this machine can run the selected jobs, and exit 1 naming what is missing.
    Example: degan-bench doctor --ci --all --preset paper --chain ID --runs /store/runs
    """
    import torch

    table = Table(title=f"degan-bench {__version__} doctor", show_header=False)
    table.add_column("check", style="bold")
    table.add_column("status")
    table.add_row("python", platform.python_version())
    table.add_row("torch", f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})")
    for package in ("torchvision", "torch-fidelity", "clean-fid", "tensorboard"):
        table.add_row(package, _version(package))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            table.add_row(
                f"cuda:{i}",
                f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}",
            )
    else:
        table.add_row(
            "GPU", "[yellow]none visible: training runs on the CPU (smoke presets only are practical)[/]"
        )
    table.add_row("data root", f"{data_root()} ({_free_gb(data_root())})")
    table.add_row("runs dir", f"{runs_dir().resolve()} ({_free_gb(runs_dir().resolve())})")
    table.add_row("cache", f"{cache_dir()} ({_free_gb(cache_dir())})")
    prepared = [
        f"{r.name}@{','.join(map(str, sorted(r.prepared)))}px" for r in prepared_status() if r.prepared
    ]
    table.add_row("prepared datasets", ", ".join(prepared) or "none yet (`degan-bench data prepare NAME`)")
    for line in weights_status():
        table.add_row("metric weights", line)
    console.print(table)
    if ci:
        _preflight(names, all_, preset, chain, job, runs, min_free_gb, allow_cpu)


def _preflight(names, all_, preset, chain, job, runs, min_free_gb, allow_cpu) -> None:
    """``--ci``: the checks of :mod:`degan_bench.dispatch.preflight` for the selected jobs."""
    from degan_bench.cli.sweep import expand_plan, make_selection
    from degan_bench.core.exitcodes import ExitCode
    from degan_bench.dispatch.plan import jobs_of, select
    from degan_bench.dispatch.preflight import preflight

    root = runs or runs_dir()
    jobs: list = []
    if names or all_:
        _tables, _jobs, _skipped, chains, states = expand_plan(names, all_, preset, None, root)
        jobs = jobs_of(select(chains, states, make_selection(job, chain, None, None, None, None)))
    checks = preflight(jobs, root, min_free_gb=min_free_gb, allow_cpu=allow_cpu)
    for check in checks:
        mark = "[green]ok[/]" if check.ok else "[red]missing[/]"
        console.print(f"{mark} {check.name}: {check.detail}", highlight=False, soft_wrap=True)
    missing = [check.name for check in checks if not check.ok]
    if missing:
        console.print(f"doctor --ci: missing {', '.join(missing)}", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.FAILED)
    console.print(f"doctor --ci: ready ({len(jobs)} job(s) selected)", highlight=False)
