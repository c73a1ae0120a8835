"""The cost model: every job of `sweep --all` gets an estimate with its kind and provenance; published
figures are reproduced where a job matches them; bench measurements become exact matches and anchors;
extrapolation scales by counted training FLOPs; totals per table and kind; the dry-run prints them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.bench.flops import compute_key, count_flops
from degan_bench.bench.report import SCHEMA, SCHEMA_VERSION, validate_report
from degan_bench.cli import app
from degan_bench.dispatch.costs import FlopsTable, kind_shares, load_bench_entries
from degan_bench.dispatch.jobs import (
    CostEntry,
    Estimate,
    Job,
    estimate_job,
    expand_jobs,
    load_costs,
    summarize_estimates,
)
from degan_bench.paths import results_dir
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.results.tables import load_tables

TINY = [
    "data.resolution=16",
    "model.z_dim=16",
    "model.w_dim=16",
    "model.mapping_layers=2",
    "model.channel_base=128",
    "model.channel_max=16",
    "training.batch=8",
]


@pytest.fixture(scope="module")
def all_jobs(tmp_path_factory: pytest.TempPathFactory) -> list[Job]:
    jobs, _skipped = expand_jobs(
        load_tables(None, all_tables=True), tmp_path_factory.mktemp("runs"), preset="paper"
    )
    return jobs


@pytest.fixture
def flops(tmp_path: Path) -> FlopsTable:
    return FlopsTable(cache_path=tmp_path / "flops-cache.json")


def _job(resolved, tables=("t",)) -> Job:
    return Job(resolved, 0, Path("/nonexistent") / resolved.short_hash, tables=list(tables))


def _bench_report(folder: Path, resolved, sec_per_kimg: float, *, device_type: str = "cuda") -> Path:
    """A bench report with one ok training case of ``resolved``, as `degan-bench bench` writes it."""
    spread = {
        "median": sec_per_kimg,
        "q1": sec_per_kimg * 0.98,
        "q3": sec_per_kimg * 1.02,
        "iqr": 0.04,
        "n": 3,
    }
    rates = {
        "median": 1000 / sec_per_kimg,
        "q1": 980 / sec_per_kimg,
        "q3": 1020 / sec_per_kimg,
        "iqr": 1.0,
        "n": 3,
    }
    case = {
        "id": "x/paper",
        "name": "x",
        "variant": "paper",
        "kind": "train",
        "role": "core",
        "title": "x",
        "status": "ok",
        "reason": None,
        "recipe": {},
        "recipe_hash": resolved.hash,
        "compute_key": compute_key(resolved),
        "resolved": resolved.data,
        "performance": resolved.data["performance"],
        "resolution": resolved.recipe.data.resolution,
        "batch": resolved.recipe.training.batch,
        "batch_gpu": resolved.recipe.training.batch,
        "objective": resolved.recipe.loss.kind,
        "cycle_minibatches": 1,
        "cycles_per_rep": 1,
        "reals_per_rep": 64,
        "warmup_minibatches": 2,
        "warmup_seconds": 1.0,
        "seconds_per_rep": [1.0, 1.0, 1.0],
        "img_per_s": rates,
        "sec_per_kimg": spread,
        "minibatches_per_s": rates,
        "peak_gpu_mem_gib": 3.0,
    }
    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "suite": "gpu",
        "created_utc": "2026-01-01T00:00:00Z",
        "code_version": "test",
        "device": {"type": device_type, "name": "NVIDIA H100 80GB HBM3"},
        "software": {"torch": "2", "cuda": "13"},
        "settings": {},
        "budget": {},
        "cases": [case],
        "compile_verdict": {},
    }
    assert validate_report(report) == []
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{device_type}-report.json"
    path.write_text(json.dumps(report))
    return path


@pytest.mark.slow
def test_every_job_of_sweep_all_has_an_estimate_with_its_kind(all_jobs: list[Job], tmp_path: Path) -> None:
    assert len(all_jobs) > 300
    costs = load_costs(bench_dir=tmp_path / "no-bench")
    table = FlopsTable(cache_path=tmp_path / "cache.json")
    estimates = {job.name: estimate_job(job, [], costs, flops=table) for job in all_jobs}
    kinds = {e.kind for e in estimates.values()}
    assert kinds <= {"published", "extrapolated"} and "unknown" not in kinds
    for job in all_jobs:
        estimate = estimates[job.name]
        assert estimate.device_sec_per_kimg and estimate.device_sec_per_kimg > 0, job.name
        assert estimate.source and estimate.on_gpu
        if estimate.kind == "extrapolated":
            assert estimate.anchor and "training FLOPs per image" in estimate.source
    totals = summarize_estimates(all_jobs, estimates)
    assert totals["unknown"] == [] and totals["jobs"] == len(all_jobs)
    assert sum(totals["by_kind"].values()) == pytest.approx(totals["gpu_hours"])
    assert sum(totals["by_device"].values()) == pytest.approx(totals["gpu_hours"])
    assert set(totals["by_table"]) == {t for job in all_jobs for t in job.tables}
    assert sum(kind_shares(totals["by_kind"]).values()) == pytest.approx(1.0)
    # counts missing from the committed table (recipes added since `degan-bench bench --update-flops`)
    # are made on demand and cached; the committed ones are well-formed
    committed = FlopsTable(cache_path=tmp_path / "none").counts
    assert committed and all(
        c["flops_per_img"] > 0 and c["basis"] and c["example"] for c in committed.values()
    )


def test_published_figures_are_reproduced_where_a_job_matches(flops: FlopsTable, tmp_path: Path) -> None:
    costs = load_costs(bench_dir=tmp_path / "no-bench")
    published = [e for e in costs if e.kind == "published"]
    assert published and all(e.sec_per_kimg and e.equivalent and e.source for e in published)
    for entry in published:
        job = _job(entry.equivalent_recipe())
        estimate = estimate_job(job, [], costs, flops=flops)
        assert estimate.kind == "published", entry.config
        assert estimate.device_sec_per_kimg == pytest.approx(entry.sec_per_kimg * entry.gpus)
        assert estimate.device == entry.gpu and entry.source in estimate.source
    # real table jobs: DiffAugment-biggan-cifar README "1 day on 2 GPUs" for C10 100 % (50,000 kimg)
    biggan = estimate_job(_job(resolve_recipe("biggan", "cifar10-100pct")), [], costs, flops=flops)
    assert biggan.kind == "published" and biggan.hours(50000) == pytest.approx(48.06, abs=0.01)
    ada = estimate_job(_job(resolve_recipe("ada", "ffhq-70k")), [], costs, flops=flops)
    assert ada.kind == "published" and ada.device_sec_per_kimg == pytest.approx(5.9 * 4)


def test_other_methods_extrapolate_from_the_figure_by_flops(flops: FlopsTable, tmp_path: Path) -> None:
    costs = load_costs(bench_dir=tmp_path / "no-bench")
    insgen = resolve_recipe("insgen", "ffhq-2k")
    ada = resolve_recipe("ada", "ffhq-2k")
    estimate = estimate_job(_job(insgen), [], costs, flops=flops)
    assert estimate.kind == "extrapolated" and "batch 64" in (estimate.anchor or "")
    assert flops.get(insgen)[0] / flops.get(ada)[0] > 1.3  # InsGen's extra D passes and heads are counted
    (anchor,) = [e for e in costs if e.label == estimate.anchor]
    ratio = flops.get(insgen)[0] / flops.get(anchor.equivalent_recipe())[0]
    assert estimate.device_sec_per_kimg == pytest.approx(5.9 * 4 * ratio, rel=1e-6)


def test_bench_measurements_are_exact_matches_then_anchors(flops: FlopsTable, tmp_path: Path) -> None:
    lowshot = resolve_recipe("stylegan2", "obama-100")
    bench = tmp_path / "bench"
    _bench_report(bench, lowshot, 30.0)
    _bench_report(bench, lowshot, 0.001, device_type="cpu")  # a CPU suite report is never an anchor
    costs = load_costs(bench_dir=bench)
    assert [e.kind for e in costs].count("measured") == 1
    exact = estimate_job(_job(lowshot), [], costs, flops=flops)
    assert (exact.kind, exact.device_sec_per_kimg, exact.device) == (
        "measured",
        30.0,
        "NVIDIA H100 80GB HBM3",
    )
    # same network, another method: extrapolated from the H100 measurement, not the V100 figure
    diggan = resolve_recipe("diggan", "obama-100")
    estimate = estimate_job(_job(diggan), [], costs, flops=flops)
    assert estimate.kind == "extrapolated" and estimate.device == "NVIDIA H100 80GB HBM3"
    ratio = flops.get(diggan)[0] / flops.get(lowshot)[0]
    assert ratio > 1.1 and estimate.device_sec_per_kimg == pytest.approx(30.0 * ratio, rel=1e-6)
    # another performance section never matches a paper-numerics measurement
    tf32 = resolve_recipe("stylegan2", "obama-100", overrides=["performance.tf32=true"])
    assert estimate_job(_job(tf32), [], costs, flops=flops).kind != "measured"


def test_runs_of_the_recipe_beat_everything_and_gpus_divide_wall_time(
    tmp_path: Path, flops: FlopsTable
) -> None:
    from results_support import make_run

    from degan_bench.results.store import scan_runs

    resolved = resolve_recipe("biggan", "cifar10-10pct")
    ticks = [{"tick": t, "kimg": t, "sec_per_kimg": s} for t, s in enumerate((50.0, 2.0, 2.2, 2.1))]
    make_run(
        tmp_path / "runs",
        "r",
        resolved,
        0,
        status="stopped",
        cur_nimg=3000,
        device="NVIDIA H100",
        stats=ticks,
    )
    costs = load_costs(bench_dir=tmp_path / "no-bench")
    estimate = estimate_job(_job(resolved), scan_runs([tmp_path / "runs"]), costs, flops=flops)
    assert (estimate.kind, estimate.device_sec_per_kimg) == ("measured", 2.1)
    four = resolve_recipe("biggan", "cifar10-10pct", overrides=["resources.gpus=4"])
    assert four.hash == resolved.hash  # resources are not hashed: the run's stats apply
    estimate = estimate_job(_job(four), scan_runs([tmp_path / "runs"]), costs, flops=flops)
    assert estimate.gpus == 4 and estimate.wall_hours(3600) == pytest.approx(estimate.hours(3600) / 4)


def test_summary_counts_a_shared_job_in_each_table_once_in_total() -> None:
    resolved = resolve_recipe("stylegan2", "shapes-100", "smoke", TINY)
    shared = _job(resolved, tables=["a", "b"])
    other = Job(resolved, 1, Path("/nonexistent/other"), tables=["a"])
    done = Job(resolved, 2, Path("/nonexistent/done"), tables=["b"], state="complete")
    estimates = {
        shared.name: Estimate(3600.0, "NVIDIA H100", "m", "measured"),
        other.name: Estimate(7200.0, "Tesla V100", "x", "extrapolated", anchor="y"),
        done.name: Estimate(1.0, "NVIDIA H100", "m", "measured"),
    }
    kimg = shared.total_kimg
    totals = summarize_estimates([shared, other, done], estimates)
    assert totals["jobs"] == 2 and totals["gpu_hours"] == pytest.approx(3 * kimg)
    assert totals["by_kind"]["measured"] == pytest.approx(kimg) and totals["by_kind"]["published"] == 0
    assert totals["by_table"]["a"]["gpu_hours"] == pytest.approx(3 * kimg)
    assert totals["by_table"]["b"]["jobs"] == 1 and totals["by_table"]["b"]["gpu_hours"] == pytest.approx(
        kimg
    )
    assert totals["by_device"] == {"NVIDIA H100": pytest.approx(kimg), "Tesla V100": pytest.approx(2 * kimg)}


def test_no_anchor_at_all_is_unknown(flops: FlopsTable) -> None:
    job = _job(resolve_recipe("stylegan2", "shapes-100", "smoke", TINY))
    estimate = estimate_job(job, [], [], flops=flops)
    assert estimate.kind == "unknown" and estimate.device_sec_per_kimg is None


@pytest.mark.slow
def test_flop_counts_follow_the_recipe_and_fall_back_to_the_backbone(tmp_path: Path) -> None:
    base = resolve_recipe("stylegan2", "shapes-100", "smoke", TINY)
    key = compute_key(base)
    assert key == compute_key(
        resolve_recipe("stylegan2", "shapes-100", "smoke", [*TINY, "training.kimg=7", "training.g_lr=0.1"])
    )
    cache: dict[str, float] = {}
    flops = count_flops(base, cache).flops_per_img
    assert flops > 0 and cache[key] == flops
    bigger = count_flops(resolve_recipe("stylegan2", "shapes-100", "smoke", [*TINY, "data.resolution=32"]))
    assert bigger.flops_per_img > 1.3 * flops  # one more resolution block
    lazy = count_flops(resolve_recipe("stylegan2", "shapes-100", "smoke", [*TINY, "loss.r1_interval=16"]))
    assert lazy.flops_per_img < flops  # R1's double backward every 16th minibatch instead of every one
    batch = count_flops(resolve_recipe("stylegan2", "shapes-100", "smoke", [*TINY, "training.batch=16"]))
    assert batch.flops_per_img == pytest.approx(flops, rel=0.05)  # per image, whatever the batch
    ticket = resolve_recipe("lottery", "cifar10-10pct", "smoke")
    count = count_flops(ticket)
    assert count.basis.startswith("backbone only") and "earlier run" in count.basis
    table = FlopsTable(path=tmp_path / "none.json", cache_path=tmp_path / "cache.json")
    assert table.get(base)[0] == pytest.approx(flops)
    assert json.loads((tmp_path / "cache.json").read_text())["counts"][key]["flops_per_img"] == flops


def test_costs_yaml_entries_are_complete_and_refused_when_malformed(tmp_path: Path) -> None:
    entries = yaml.safe_load((results_dir() / "costs.yaml").read_text())["entries"]
    assert all(e["sec_per_kimg"] > 0 and e["source"] and e["equivalent"] for e in entries)
    bad = copy.deepcopy(entries[:1])
    bad[0]["speed"] = 1
    path = tmp_path / "costs.yaml"
    path.write_text(yaml.safe_dump({"entries": bad}))
    from degan_bench.errors import DeganError

    with pytest.raises(DeganError, match="unknown keys speed"):
        load_costs(path, bench_dir=tmp_path / "none")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "broken.json").write_text("{")
    with pytest.raises(DeganError, match="not a readable bench report"):
        load_bench_entries(tmp_path / "bench")
    assert isinstance(load_costs(path=tmp_path / "absent.yaml", bench_dir=tmp_path / "none"), list)
    assert (
        CostEntry(
            arch="biggan", resolution=32, batch=50, gpu="g", gpus=2, sec_per_kimg=1.5, source="s"
        ).device_sec_per_kimg
        == 3.0
    )


@pytest.mark.slow
def test_dry_run_prints_gpu_hours_per_table_with_kind_shares(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "diffaugment-cifar-biggan",
            "--preset",
            "paper",
            "--runs",
            str(tmp_path / "runs"),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "GPU-hours per table" in result.output and "diffaugment-cifar-biggan" in result.output
    assert "% published" in result.output and "% extrapolated" in result.output
    assert "unknown cost" not in result.output
