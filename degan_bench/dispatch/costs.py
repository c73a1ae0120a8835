"""The cost model: device-seconds per kimg for every job, with its provenance and kind.

For each job (a recipe x seed of a sweep), in this order:

1. **measured** on this recipe: the median sec/kimg over the ticks of runs with the same recipe hash
   (``stats.jsonl``; the first tick, which includes start-up, is left out), times the run's devices;
2. **measured** by the bench: a case of a bench report (``results/bench/*.json``, written by
   ``degan-bench bench`` / ``make bench-gpu`` and the nightly workflow) that trained the same step --
   the same :func:`~degan_bench.bench.flops.compute_key` (model, resolution, batch layout, loss, method
   and its options) and the same ``performance:`` switches;
3. **published**: an entry of ``results/costs.yaml`` (README and paper figures of the official code)
   whose configuration matches (arch, resolution, batch, channel_base, and its ``methods`` if listed);
4. **extrapolated** from the nearest anchor (a bench measurement or a published entry; measured ones
   first, then the same objective, architecture and resolution, then the closest FLOPs, batch and GPU
   count): the anchor's
   device-seconds per kimg times the ratio of training FLOPs per real image (the job's over the
   anchor's), counted on the meta device by running each recipe's real objective
   (:mod:`degan_bench.bench.flops`; ``results/costs-flops.json`` holds the counts, ``degan-bench bench
   --update-flops`` refreshes it). The estimate names its anchor and how the FLOPs were counted;
5. **unknown** only when there is no anchor at all.

A rate is in device-seconds per kimg (wall seconds x devices), so GPU-hours = kimg x rate / 3600
whatever the GPU count; a job's wall-clock time divides by the GPUs of its recipe (``resources.gpus``),
assuming linear scaling across them (a measured multi-GPU run replaces that assumption). An estimate
keeps the GPU type of the number it comes from: published figures are mostly Tesla V100 with the
official code's mixed precision, measured ones are whatever GPU ran the bench or the runs. Training
only; evaluations are not included.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from degan_bench.errors import DeganError
from degan_bench.paths import cache_dir, results_dir

if TYPE_CHECKING:
    from degan_bench.dispatch.jobs import Job
    from degan_bench.recipes.loader import ResolvedRecipe
    from degan_bench.results.store import StoredRun

KINDS = ("measured", "published", "extrapolated", "unknown")


# -- cost entries: published (costs.yaml) and measured by the bench (results/bench/*.json) -----------
@dataclass
class CostEntry:
    """One known training speed: a published figure or a bench measurement."""

    arch: str
    resolution: int
    batch: int
    gpu: str
    gpus: int
    sec_per_kimg: float | None  # wall seconds per kimg on ``gpus`` GPUs; None = unknown
    source: str
    config: str = ""
    channel_base: int | None = None
    kind: str = "published"  # published | measured
    methods: list[str] | None = None  # published: the recipe methods the figure applies to (None = any)
    equivalent: dict[str, Any] | None = None  # published: our recipe that trains the same step
    compute_key: str | None = None  # measured: the bench case's compute key
    performance: dict[str, Any] | None = None  # measured: the case's performance section
    recipe_data: dict[str, Any] | None = field(default=None, repr=False)  # measured: the resolved recipe
    _flops: tuple[float, str] | None = field(default=None, repr=False)
    _recipe: Any = field(default=None, repr=False)

    @property
    def device_sec_per_kimg(self) -> float | None:
        return None if self.sec_per_kimg is None else self.sec_per_kimg * self.gpus

    @property
    def label(self) -> str:
        return f"{self.config} on {self.gpus} x {self.gpu}" if self.kind == "published" else self.config

    def matches(self, recipe: ResolvedRecipe) -> bool:
        """Published figures: the same arch, resolution, batch (and channel_base, methods if given)."""
        model = recipe.data.get("model", {})
        return (
            model.get("arch") == self.arch
            and recipe.recipe.data.resolution == self.resolution
            and recipe.recipe.training.batch == self.batch
            and (self.channel_base is None or model.get("channel_base") == self.channel_base)
            and (self.methods is None or recipe.method in self.methods)
        )

    def equivalent_recipe(self) -> ResolvedRecipe | None:
        """The recipe whose training step this entry timed (for its FLOPs), if known."""
        from degan_bench.recipes.loader import resolve_dict, resolve_recipe

        if self._recipe is None:
            if self.recipe_data is not None:
                self._recipe = resolve_dict(self.recipe_data, source=self.source)
            elif self.equivalent:
                spec = self.equivalent
                self._recipe = resolve_recipe(
                    spec["method"],
                    spec["dataset"],
                    spec.get("preset", "paper"),
                    list(spec.get("set", [])),
                    backbone=spec.get("backbone"),
                )
        return self._recipe


def default_costs_path() -> Path:
    return results_dir() / "costs.yaml"


def default_bench_dir() -> Path:
    return results_dir() / "bench"


_PUBLISHED_KEYS = {
    "arch",
    "resolution",
    "batch",
    "gpu",
    "gpus",
    "sec_per_kimg",
    "source",
    "config",
    "channel_base",
    "methods",
    "equivalent",
}


def load_costs(path: Path | None = None, bench_dir: Path | None = None) -> list[CostEntry]:
    """Published entries of ``costs.yaml`` and the measured cases of the bench reports in ``bench_dir``
    (default ``results/bench/``; pass a missing folder for none)."""
    path = path or default_costs_path()
    entries: list[CostEntry] = []
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for i, item in enumerate(data.get("entries", [])):
            unknown = set(item) - _PUBLISHED_KEYS
            try:
                if unknown:
                    raise TypeError(f"unknown keys {', '.join(sorted(unknown))}")
                entries.append(CostEntry(**item, kind="published"))
            except TypeError as err:
                raise DeganError(
                    f"{path}: entries[{i}]: {err}", fix="use the keys documented at the top of the file"
                ) from None
    entries += load_bench_entries(default_bench_dir() if bench_dir is None else bench_dir)
    return entries


def load_bench_entries(folder: Path) -> list[CostEntry]:
    """The ``ok`` training cases of every GPU bench report (JSON) in ``folder``, newest report first."""
    from degan_bench.bench.report import SCHEMA

    reports = []
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            report = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DeganError(
                f"{file}: not a readable bench report ({err})", fix="remove or fix the file"
            ) from None
        # the CPU suite times tiny networks: never a cost anchor
        if (
            isinstance(report, dict)
            and report.get("schema") == SCHEMA
            and report.get("device", {}).get("type") == "cuda"
        ):
            reports.append((str(report.get("created_utc", "")), file, report))
    entries = []
    for _created, file, report in sorted(reports, key=lambda r: r[0], reverse=True):
        device = report.get("device", {})
        for case in report.get("cases", []):
            if case.get("kind") != "train" or case.get("status") != "ok":
                continue
            sec = case["sec_per_kimg"]["median"]
            entries.append(
                CostEntry(
                    arch=case["resolved"]["model"]["arch"],
                    resolution=case["resolution"],
                    batch=case["batch"],
                    gpu=device.get("name", "?"),
                    gpus=1,
                    sec_per_kimg=sec,
                    source=f"bench {file.name} ({report.get('created_utc', '?')})",
                    config=f"bench {case['id']} on {device.get('name', '?')}",
                    channel_base=case["resolved"]["model"].get("channel_base"),
                    kind="measured",
                    compute_key=case["compute_key"],
                    performance=case["performance"],
                    recipe_data=case["resolved"],
                )
            )
    return entries


# -- estimates ------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    device_sec_per_kimg: float | None  # device-seconds (wall x devices) per kimg
    device: str  # "cpu", a GPU name, or "" when unknown
    source: str
    kind: str = "unknown"  # measured | published | extrapolated | unknown
    anchor: str | None = None  # extrapolated: the entry it scales
    gpus: int = 1  # GPUs of the job's recipe (resources.gpus): wall time = hours / gpus

    def hours(self, kimg: float) -> float | None:
        """Device-hours (GPU-hours on a GPU) for ``kimg``."""
        return None if self.device_sec_per_kimg is None else kimg * self.device_sec_per_kimg / 3600

    def wall_hours(self, kimg: float) -> float | None:
        hours = self.hours(kimg)
        return None if hours is None else hours / max(self.gpus, 1)

    @property
    def on_gpu(self) -> bool:
        return self.device not in ("cpu", "")


def measured_rate(runs: list[StoredRun], recipe_hash: str) -> Estimate | None:
    """Median device-seconds per kimg over the ticks of runs with ``recipe_hash`` (GPU runs preferred)."""
    samples: dict[str, list[float]] = {}
    for run in runs:
        if run.info is None or run.recipe_hash != recipe_hash:
            continue
        for tick in run.stats():
            if tick.get("tick", 0) >= 1 and tick.get("sec_per_kimg"):
                samples.setdefault(run.device, []).append(float(tick["sec_per_kimg"]) * run.info.device_count)
    if not samples:
        return None
    gpu = [d for d in samples if d != "cpu"]
    device = max(gpu, key=lambda d: len(samples[d])) if gpu else "cpu"
    values = samples[device]
    return Estimate(
        statistics.median(values), device, f"measured: {len(values)} ticks on {device}", "measured"
    )


def _gpus(job: Job) -> int:
    """The job's GPUs: its own count (the sweep's --gpus-per-job may override the recipe), else the
    recipe's ``resources.gpus``."""
    count = getattr(job, "gpus", None)
    if count is None:
        count = getattr(getattr(job.resolved.recipe, "resources", None), "gpus", 1)
    return int(count or 1)


def estimate_job(
    job: Job, runs: list[StoredRun], costs: list[CostEntry], *, flops: FlopsTable | None = None
) -> Estimate:
    """The job's estimate (see the module docstring for the order)."""
    from degan_bench.bench.flops import compute_key

    gpus = _gpus(job)
    measured = measured_rate(runs, job.resolved.hash)
    if measured is not None:
        measured.gpus = gpus
        return measured
    key = compute_key(job.resolved)
    performance = job.resolved.data.get("performance")
    for entry in costs:
        if entry.kind == "measured" and entry.compute_key == key and entry.performance == performance:
            return Estimate(
                entry.device_sec_per_kimg,
                entry.gpu,
                f"measured: {entry.config} ({entry.source})",
                "measured",
                gpus=gpus,
            )
    for entry in costs:
        if (
            entry.kind == "published"
            and entry.device_sec_per_kimg is not None
            and entry.matches(job.resolved)
        ):
            return Estimate(
                entry.device_sec_per_kimg,
                entry.gpu,
                f"costs.yaml: {entry.config} ({entry.source})",
                "published",
                gpus=gpus,
            )
    return _extrapolate(job, costs, flops or flops_table(), gpus)


def _extrapolate(job: Job, costs: list[CostEntry], flops: FlopsTable, gpus: int) -> Estimate:
    resolved = job.resolved
    anchors = [
        e
        for e in costs
        if e.device_sec_per_kimg is not None
        and e.device_sec_per_kimg > 0
        and (e.kind == "published" or e.performance == resolved.data.get("performance"))
    ]
    anchors = [(e, f) for e in anchors if (f := _entry_flops(e, flops)) is not None]
    if not anchors:
        return Estimate(
            None, "", "unknown: no measured or published speed to extrapolate from", "unknown", gpus=gpus
        )
    job_flops, basis = flops.get(resolved)
    kind, arch = resolved.recipe.loss.kind, resolved.model.arch
    res, batch = resolved.recipe.data.resolution, resolved.recipe.training.batch

    def rank(item: tuple[CostEntry, tuple[float, str]]) -> tuple:
        entry, (anchor_flops, _basis) = item
        anchor = entry.equivalent_recipe()  # resolvable: it has FLOPs
        return (
            entry.kind != "measured",
            anchor.recipe.loss.kind != kind,
            entry.arch != arch,
            abs(math.log2(entry.resolution / res)),
            round(abs(math.log(anchor_flops / job_flops)), 3),
            abs(math.log2(entry.batch / batch)),
            entry.gpus != gpus,
        )

    entry, (anchor_flops, anchor_basis) = min(anchors, key=rank)
    rate = entry.device_sec_per_kimg * job_flops / anchor_flops
    notes = "; ".join(sorted({b for b in (basis, anchor_basis) if b != "recipe"}))
    source = (
        f"extrapolated from {entry.label} ({entry.kind}, {entry.device_sec_per_kimg:.3g} dev-s/kimg) by "
        f"training FLOPs per image, {job_flops / 1e9:.1f} vs {anchor_flops / 1e9:.1f} GFLOP"
        + (f" ({notes})" if notes else "")
    )
    return Estimate(rate, entry.gpu, source, "extrapolated", anchor=entry.label, gpus=gpus)


def _entry_flops(entry: CostEntry, flops: FlopsTable) -> tuple[float, str] | None:
    """The anchor's FLOPs per image; None when its recipe cannot be rebuilt here (another recipes root,
    a recipe removed since), so it anchors nothing."""
    if entry._flops is None:
        try:
            recipe = entry.equivalent_recipe()
        except DeganError:
            return None
        if recipe is None:
            return None
        entry._flops = flops.get(recipe)
    return entry._flops


def summarize_estimates(jobs: list[Job], estimates: dict[str, Estimate]) -> dict[str, Any]:
    """Totals over the jobs still to run: GPU-hours (in all, by kind, by table, by GPU type), CPU-hours,
    wall-clock hours, and the jobs of unknown cost. A job in several tables counts in each table's line
    and once in the totals."""
    todo = [j for j in jobs if j.state in ("new", "incomplete")]

    def hours(job: Job) -> float:
        return estimates[job.name].hours(job.remaining_kimg) or 0.0

    gpu_jobs = [j for j in todo if estimates[j.name].on_gpu]
    by_kind = {kind: 0.0 for kind in KINDS}
    by_device: dict[str, float] = {}
    by_table: dict[str, dict[str, Any]] = {}
    for job in todo:
        estimate = estimates[job.name]
        for table in job.tables or ["(no table)"]:
            line = by_table.setdefault(
                table, {"jobs": 0, "gpu_hours": 0.0, "by_kind": dict.fromkeys(KINDS, 0.0), "unknown": 0}
            )
            line["jobs"] += 1
            line["unknown"] += estimate.device_sec_per_kimg is None
            if estimate.on_gpu:
                line["gpu_hours"] += hours(job)
                line["by_kind"][estimate.kind] += hours(job)
    for job in gpu_jobs:
        estimate = estimates[job.name]
        by_kind[estimate.kind] += hours(job)
        by_device[estimate.device] = by_device.get(estimate.device, 0.0) + hours(job)
    return {
        "jobs": len(todo),
        "gpu_hours": sum(hours(j) for j in gpu_jobs),
        "cpu_hours": sum(hours(j) for j in todo if estimates[j.name].device == "cpu"),
        "wall_hours": sum(estimates[j.name].wall_hours(j.remaining_kimg) or 0.0 for j in gpu_jobs),
        "unknown": [j.name for j in todo if estimates[j.name].device_sec_per_kimg is None],
        "by_kind": by_kind,
        "by_device": by_device,
        "by_table": by_table,
    }


def kind_shares(by_kind: dict[str, float]) -> dict[str, float]:
    """Fractions of the GPU-hours per kind (0 when there are none)."""
    total = sum(by_kind.values())
    return {kind: (value / total if total else 0.0) for kind, value in by_kind.items()}


# -- FLOPs per image, for extrapolation ----------------------------------------------------------------
def default_flops_path() -> Path:
    return results_dir() / "costs-flops.json"


class FlopsTable:
    """Training FLOPs per real image by compute key: ``results/costs-flops.json`` (committed, made by
    ``degan-bench bench --update-flops``), then a user cache of counts made on demand (a recipe the
    committed table does not know is counted on the meta device, seconds each, and remembered)."""

    def __init__(self, path: Path | None = None, cache_path: Path | None = None) -> None:
        self.path = path or default_flops_path()
        self.cache_path = cache_path if cache_path is not None else cache_dir() / "costs-flops.json"
        self.counts: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, dict[str, Any]] = self._read(self.cache_path)
        self.counts = {**self._cache, **self._read(self.path)}
        self._raw: dict[str, float] = {}  # this process's counts, shared by backbone fall-backs

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, Any]]:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        from degan_bench.bench.flops import FLOPS_VERSION

        return data.get("counts", {}) if data.get("version") == FLOPS_VERSION else {}

    def get(self, resolved: ResolvedRecipe) -> tuple[float, str]:
        from degan_bench.bench.flops import compute_key, count_flops

        key = compute_key(resolved)
        if key not in self.counts:
            count = count_flops(resolved, self._raw)
            self.counts[key] = self._cache[key] = {
                "flops_per_img": count.flops_per_img,
                "basis": count.basis,
                "example": _describe(resolved),
            }
            self._save(self.cache_path, self._cache)
        item = self.counts[key]
        return float(item["flops_per_img"]), str(item["basis"])

    @staticmethod
    def _save(path: Path, counts: dict[str, dict[str, Any]]) -> None:
        from degan_bench.bench.flops import FLOPS_VERSION
        from degan_bench.core.fileio import atomic_write_text

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "version": FLOPS_VERSION,
                "what": "training FLOPs per real image shown to D, by compute key "
                "(degan_bench/bench/flops.py); made by `degan-bench bench --update-flops`",
                "counts": dict(sorted(counts.items())),
            }
            atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
        except OSError:  # a read-only cache only costs recounting next time
            pass


def _describe(resolved: ResolvedRecipe) -> str:
    """A command-line-like name of a recipe (for people reading the FLOPs table)."""
    from degan_bench.recipes.loader import default_backbone

    arch = resolved.model.arch
    backbone = "" if arch == default_backbone(resolved.method, resolved.dataset) else f" --backbone {arch}"
    sets = "".join(f" --set {o}" for o in resolved.overrides)
    where = f" [{resolved.source}]" if "_bases" in resolved.source else ""
    return f"{resolved.method} {resolved.dataset} --preset {resolved.preset}{backbone}{sets}{where}"


_TABLE: FlopsTable | None = None


def flops_table() -> FlopsTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = FlopsTable()
    return _TABLE


def update_flops_table(log: Callable[[str], None] = print, path: Path | None = None) -> tuple[Path, int]:
    """Count every job of every table (paper preset and each table's own), the published entries'
    equivalents and the bench cases, and write the committed table."""
    from degan_bench.bench.cases import GPU_SUITE, TrainCase
    from degan_bench.bench.flops import compute_key, count_flops
    from degan_bench.dispatch.jobs import expand_jobs
    from degan_bench.results.tables import load_tables

    recipes: dict[str, ResolvedRecipe] = {}

    def add(items: Iterable[ResolvedRecipe]) -> None:
        for resolved in items:
            recipes.setdefault(compute_key(resolved), resolved)

    tables = load_tables(None, all_tables=True)
    for preset in ("paper", None):
        jobs, _skipped = expand_jobs(tables, cache_dir() / "no-runs", preset=preset, seeds=1)
        add(job.resolved for job in jobs)
    add(r for e in load_costs(bench_dir=Path("/nonexistent")) if (r := e.equivalent_recipe()) is not None)
    add(c.spec.resolve(c.variant.overrides) for c in GPU_SUITE.cases if isinstance(c, TrainCase))
    raw: dict[str, float] = {}
    counts: dict[str, dict[str, Any]] = {}
    for i, (key, resolved) in enumerate(sorted(recipes.items()), 1):
        count = count_flops(resolved, raw)
        counts[key] = {
            "flops_per_img": count.flops_per_img,
            "basis": count.basis,
            "example": _describe(resolved),
        }
        log(
            f"[{i}/{len(recipes)}] {key} {count.flops_per_img / 1e9:9.1f} GFLOP/img  {counts[key]['example']}"
            + ("" if count.basis == "recipe" else f"  ({count.basis})")
        )
    target = path or default_flops_path()
    FlopsTable._save(target, counts)
    global _TABLE
    _TABLE = None
    return target, len(counts)
