"""``degan-bench doctor``: is this machine ready? torch/CUDA/GPU, disk, data root, weights."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from pathlib import Path

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
def doctor() -> None:
    """Report torch/CUDA/GPUs, disk space, the data root and prepared datasets, and the metric weights."""
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
