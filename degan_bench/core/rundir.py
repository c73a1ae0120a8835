"""The run directory: the single source of truth about one training run (recipe x seed).

Layout (all paths relative to the run directory)::

    recipe.yaml          the resolved recipe (after extends, preset and --set), as trained
    run.json             identity, status and provenance (see RunInfo)
    log.txt              human-readable log: resumes, forced resumes, preemptions, errors
    stats.jsonl          one JSON object per tick (kimg, timing, memory, losses, method stats)
    metrics.jsonl        one JSON object per evaluation (see append_metric); append-only
    checkpoints/         ckpt-<cur_nimg:010d>.pt (last K kept) and best.pt
    reals.png, fakes_init.png, fakes_<kimg:06d>.png   sample grids with fixed seeds

``run.json`` is rewritten atomically; JSONL files are appended line by line, so a crash loses at most
the line being written. Readers (``degan-bench table``) must tolerate a truncated last line.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from degan_bench import __version__
from degan_bench.core.fileio import append_jsonl, atomic_write_text, read_jsonl

RUN_STATUSES = ("running", "stopped", "complete", "failed")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def code_version() -> str:
    """``git describe --always --dirty`` of the checkout, else the package version."""
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


@dataclass
class Session:
    """One process's stretch of training (a run has several when resumed)."""

    started_utc: str
    start_nimg: int
    ended_utc: str | None = None
    end_nimg: int | None = None
    end_reason: str | None = None  # complete | signal | error
    forced: bool = False  # resumed with --force despite a recipe-hash mismatch
    host: str = field(default_factory=platform.node)
    device: str = "cpu"
    device_count: int = 1
    wall_seconds: float = 0.0


@dataclass
class RunInfo:
    run_id: str
    method: str
    dataset: str
    preset: str
    seed: int
    recipe_hash: str
    total_nimg: int
    code_version: str = field(default_factory=code_version)
    created_utc: str = field(default_factory=utc_now)
    updated_utc: str = field(default_factory=utc_now)
    status: str = "running"
    cur_nimg: int = 0
    device: str = "cpu"  # GPU name (torch.cuda.get_device_name) or "cpu"
    device_count: int = 1
    gpu_hours: float = 0.0  # training device-hours summed over sessions (wall time x devices); 0 on CPU
    cpu_hours: float = 0.0  # training wall-hours of CPU-only sessions
    eval_gpu_hours: float = 0.0
    torch_version: str = ""
    sessions: list[Session] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        data = dict(data)
        sessions = [Session(**s) for s in data.pop("sessions", [])]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, sessions=sessions)


class RunDir:
    """Paths and I/O of one run directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # paths
    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    @property
    def stats_path(self) -> Path:
        return self.path / "stats.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def exists(self) -> bool:
        return self.info_path.exists()

    # run.json
    def read_info(self) -> RunInfo:
        return RunInfo.from_json(json.loads(self.info_path.read_text(encoding="utf-8")))

    def write_info(self, info: RunInfo) -> None:
        info.updated_utc = utc_now()
        atomic_write_text(self.info_path, json.dumps(info.to_json(), indent=2, sort_keys=True) + "\n")

    # recipe
    def read_recipe_dict(self) -> dict[str, Any]:
        return yaml.safe_load(self.recipe_path.read_text(encoding="utf-8"))

    def write_recipe_dict(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.recipe_path, yaml.safe_dump(data, sort_keys=False))

    # logs
    def log(self, message: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{utc_now()} {message}\n")

    def append_stats(self, record: dict[str, Any]) -> None:
        append_jsonl(self.stats_path, record)

    def read_stats(self) -> list[dict[str, Any]]:
        return read_jsonl(self.stats_path)

    def append_metric(self, record: dict[str, Any]) -> None:
        """Append one evaluation: keys ``protocol``, ``metric``, ``value`` (None while pending),
        ``status`` (ok | pending), ``kimg``, ``checkpoint`` (last | best | ckpt file name),
        ``protocol_record`` (the full protocol), ``weights_sha256``, ``timestamp`` and more."""
        record = {"timestamp": utc_now(), **record}
        append_jsonl(self.metrics_path, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)
