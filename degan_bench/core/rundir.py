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
the line being written (the next append repairs the torn tail first). Readers (``degan-bench table``)
must tolerate a truncated last line. A resumed run drops the ``stats.jsonl`` ticks past its checkpoint
(they are trained again), so no tick appears twice.

Statuses: ``running``, ``stopped`` (a signal, a time limit, a full disk: ``status_detail`` says which;
resumable), ``complete``, ``failed`` (an exception) and ``diverged`` (non-finite losses or weights at
``diverged_kimg``; the checkpoints kept are the last finite ones).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import subprocess
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from degan_bench import __version__
from degan_bench.core.fileio import append_jsonl, atomic_write_text, read_jsonl, rewrite_jsonl
from degan_bench.errors import DeganError

RUN_STATUSES = ("running", "stopped", "complete", "failed", "diverged")
#: statuses of a run that ended without a usable result (tables count them as failed)
FAILED_STATUSES = ("failed", "diverged")


class RunFileError(DeganError, ValueError):
    """A run directory file (``run.json``) that cannot be trusted: one line, naming the file and field."""


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
    end_reason: str | None = None  # complete | SIGTERM/SIGINT | max_seconds | stop_at_nimg | diverged | error
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
    status_detail: str | None = None  # why the run is stopped/failed/diverged, in one line
    diverged_kimg: float | None = None  # where non-finite losses or weights were detected
    sessions: list[Session] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = "run.json") -> RunInfo:
        """Strict about the types of the fields it knows (a hand-edited or foreign file is refused with
        a :class:`RunFileError`), lenient about fields it does not know (newer versions may add some)."""
        if not isinstance(data, dict):
            raise RunFileError(
                f"{source} is not a JSON object", fix="restore it from a backup, or delete the run"
            )
        raw_sessions = data.get("sessions", [])
        if not isinstance(raw_sessions, list):
            raise RunFileError(f"{source}: sessions must be a list, got {type(raw_sessions).__name__}")
        sessions = [_build(Session, s, f"{source}: sessions[{i}]") for i, s in enumerate(raw_sessions)]
        return _build(cls, {k: v for k, v in data.items() if k != "sessions"}, source, sessions=sessions)


def _matches(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits a field annotation (the simple types run.json uses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is list or tp is list:
        return isinstance(value, list)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True  # a type this check does not know: accept


def _build(cls: type, data: Any, where: str, **extra: Any) -> Any:
    """Dataclass ``cls`` from the fields of ``data`` it knows, each checked against its annotation."""
    if not isinstance(data, dict):
        raise RunFileError(f"{where} is not a JSON object")
    hints = typing.get_type_hints(cls)
    known = dict(extra)
    for f in dataclasses.fields(cls):
        if f.name in known:
            continue
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RunFileError(f"{where}: required field {f.name!r} is missing")
            continue
        value = data[f.name]
        if not _matches(value, hints[f.name]):
            raise RunFileError(
                f"{where}: field {f.name!r} is {value!r}, not of type {_type_text(hints[f.name])}",
                fix="restore the file (it was edited or written by another tool), or delete the run",
            )
        known[f.name] = value
    return cls(**known)


def _type_text(tp: Any) -> str:
    return str(tp).replace("typing.", "") if typing.get_origin(tp) else getattr(tp, "__name__", str(tp))


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
        """``run.json``; a :class:`RunFileError` (one line) when it is not valid JSON or has wrong types."""
        try:
            data = json.loads(self.info_path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise RunFileError(
                f"{self.info_path} is not valid JSON ({err})",
                fix="restore it from a backup, or delete the run",
            ) from None
        return RunInfo.from_json(data, source=str(self.info_path))

    def write_info(self, info: RunInfo) -> None:
        info.updated_utc = utc_now()
        atomic_write_text(self.info_path, json.dumps(info.to_json(), indent=2, sort_keys=True) + "\n")

    # recipe
    def read_recipe_dict(self) -> dict[str, Any]:
        """``recipe.yaml``; a :class:`RunFileError` (one line) when it is missing or not a YAML mapping."""
        try:
            data = yaml.safe_load(self.recipe_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunFileError(
                f"{self.recipe_path} does not exist", fix="restore it, or delete the run"
            ) from None
        except yaml.YAMLError as err:
            raise RunFileError(
                f"{self.recipe_path} is not valid YAML ({type(err).__name__})",
                fix="restore it, or delete the run",
            ) from None
        if not isinstance(data, dict):
            raise RunFileError(f"{self.recipe_path} is not a mapping of recipe keys")
        return data

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

    def drop_stats_after(self, cur_nimg: int) -> int:
        """Remove the ticks past ``cur_nimg`` (a resume from a checkpoint trains them again); returns how
        many were removed."""
        records = self.read_stats()
        kept = [r for r in records if not _number(r.get("cur_nimg")) or r["cur_nimg"] <= cur_nimg]
        if len(kept) != len(records):
            rewrite_jsonl(self.stats_path, kept)
        return len(records) - len(kept)

    def append_metric(self, record: dict[str, Any]) -> None:
        """Append one evaluation: keys ``protocol``, ``metric``, ``value`` (None while pending),
        ``status`` (ok | pending), ``kimg``, ``checkpoint`` (last | best | ckpt file name),
        ``protocol_record`` (the full protocol), ``weights_sha256``, ``timestamp`` and more."""
        record = {"timestamp": utc_now(), **record}
        append_jsonl(self.metrics_path, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
