"""``degan-bench doctor --ci``: the preflight of a CI or cluster job, before it trains anything.

Each check names what is missing and how to fix it; any missing item makes the command exit 1, so a
job on a badly set-up runner fails in seconds instead of after hours:

- a GPU is visible (and as many as the selected jobs need), unless ``--allow-cpu``;
- the run store has ``min_free_gb`` free and is writable (a file is created and removed);
- the datasets of the selected jobs that still have to train are prepared at their resolution (a
  dataset with a download source counts as ready: ``run`` prepares it on first use);
- the metric weights resolve and verify (sha256) without a download.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _free_gb(path: Path) -> float:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free / 2**30


def gpu_check(need: int, allow_cpu: bool) -> Check:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count >= max(need, 1):
        return Check("GPU", True, f"{count} visible ({torch.cuda.get_device_name(0)})")
    if count == 0 and allow_cpu:
        return Check("GPU", True, "none visible; --allow-cpu")
    return Check(
        "GPU",
        False,
        f"{count} visible, the selected jobs need {max(need, 1)} "
        "(check the runner's driver, CUDA_VISIBLE_DEVICES and `docker run --gpus all`)",
    )


def store_checks(runs_root: Path, min_free_gb: float) -> list[Check]:
    checks = []
    free = _free_gb(runs_root)
    checks.append(
        Check(
            "disk",
            free >= min_free_gb,
            f"{free:.1f} GiB free under {runs_root}"
            + ("" if free >= min_free_gb else f" < {min_free_gb:g} GiB"),
        )
    )
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
        probe = runs_root / f".doctor-{uuid.uuid4().hex}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
        checks.append(Check("store", True, f"{runs_root.resolve()} is writable"))
    except OSError as err:
        checks.append(Check("store", False, f"{runs_root} is not writable ({type(err).__name__}: {err})"))
    return checks


def dataset_checks(jobs: list[Any]) -> list[Check]:
    from degan_bench.data.prepare import is_prepared
    from degan_bench.data.registry import get_dataset_spec

    needed = sorted(
        {(j.resolved.dataset, j.resolved.recipe.data.resolution) for j in jobs if j.state != "complete"}
    )
    checks = []
    for name, resolution in needed:
        if is_prepared(name, resolution):
            checks.append(Check(f"dataset {name}@{resolution}", True, "prepared"))
            continue
        spec = get_dataset_spec(get_dataset_spec(name).base)
        if spec.sources or spec.layout == "embedded":
            how = "generated" if spec.layout == "embedded" else "downloaded"
            checks.append(Check(f"dataset {name}@{resolution}", True, f"not prepared; {how} on first use"))
        else:
            checks.append(
                Check(
                    f"dataset {name}@{resolution}",
                    False,
                    f"not prepared: `degan-bench data prepare {name} --resolution {resolution} --from PATH` "
                    f"into {os.environ.get('DEGAN_BENCH_DATA', '$DEGAN_BENCH_DATA')}",
                )
            )
    return checks


def weights_checks() -> list[Check]:
    from degan_bench.errors import WeightsError
    from degan_bench.metrics.weights import WEIGHTS, resolve_weights

    checks = []
    for key in WEIGHTS:
        try:
            resolved = resolve_weights(key, allow_download=False)
            checks.append(
                Check(f"weights {key}", True, f"{resolved.path} (sha256 {resolved.sha256[:12]}...)")
            )
        except WeightsError as err:
            checks.append(Check(f"weights {key}", False, str(err)))
    return checks


def preflight(jobs: list[Any], runs_root: Path, *, min_free_gb: float, allow_cpu: bool) -> list[Check]:
    need = max((getattr(job, "gpus", 1) for job in jobs if job.state != "complete"), default=1)
    return [
        gpu_check(need, allow_cpu),
        *store_checks(runs_root, min_free_gb),
        *dataset_checks(jobs),
        *weights_checks(),
    ]
