"""Sweeps: job expansion and states, skip/resume with real (tiny) CPU training, the local queue's failure
isolation and signal forwarding, the SLURM script, and dry-run estimates."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from results_support import FIXTURE_TABLE, make_run, write_recipes
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli import app
from degan_bench.dispatch.jobs import (
    CostEntry,
    Job,
    estimate_job,
    expand_jobs,
    load_costs,
    measured_rate,
    refresh_state,
)
from degan_bench.dispatch.local import LocalQueue, parse_gpus
from degan_bench.dispatch.slurm import SlurmOptions, sbatch_script
from degan_bench.errors import DeganError
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.results.store import scan_runs
from degan_bench.results.tables import load_table

TINY_TABLE = {
    "title": "Tiny sweep table",
    "description": "shapes-100 with the tiny test recipe",
    "backbone": "stylegan2",
    "protocols": ["fid5k_train"],
    "source": {"paper": "diffaugment"},
    "columns": [{"dataset": "shapes-100", "label": "shapes"}],
    "rows": [{"method": "stylegan2", "label": "StyleGAN2"}, {"method": "lecam", "label": "LeCam"}],
    "set": ["loss.r1_gamma=5"],  # must reach the subprocess, or its recipe hash would not match
    "seeds": 1,
    "in_all": False,
}


@pytest.fixture
def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_recipes(tmp_path / "recipes", {"fixture": FIXTURE_TABLE, "tiny": TINY_TABLE})
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(root))
    return root


def test_jobs_are_deduplicated_and_cells_without_recipes_reported(recipes: Path, tmp_path: Path) -> None:
    fixture, tiny = load_table("fixture"), load_table("tiny")
    jobs, skipped = expand_jobs([fixture, fixture], tmp_path / "runs", seeds=2)
    assert len(jobs) == 5 * 2  # stylegan2 x 5 datasets x 2 seeds, once although the table is given twice
    assert {j.state for j in jobs} == {"new"} and all(j.tables == ["fixture"] for j in jobs)
    reasons = {(s.method, s.reason) for s in skipped}
    assert ("transfergan", "reference") in reasons and ("diffaugment", "no recipe yet") in reasons
    jobs, _ = expand_jobs([tiny], tmp_path / "runs")
    (job,) = jobs
    assert job.resolved.overrides == ["loss.r1_gamma=5"] and job.run_dir.name.startswith(
        "stylegan2-shapes-100-"
    )
    command = job.command(python="python", device="cpu", evaluate=False)
    assert command[command.index("--set") + 1] == "loss.r1_gamma=5" and "--resume" in command
    assert command[-1] == "--no-eval" and command[command.index("--out") + 1] == str(job.run_dir)


def test_a_directory_of_another_recipe_is_a_conflict(recipes: Path, tmp_path: Path) -> None:
    (job,) = expand_jobs([load_table("tiny")], tmp_path / "runs")[0]
    other = resolve_recipe("stylegan2", "shapes-100")
    make_run(job.run_dir.parent, job.run_dir.name, other, 0)
    assert refresh_state(job).state == "conflict" and "move it away" in job.note


@pytest.mark.slow
def test_sweep_skips_complete_and_resumes_incomplete_runs(recipes: Path, tmp_path: Path) -> None:
    from degan_bench.training.execute import execute_run

    runs = tmp_path / "runs"
    (job,) = expand_jobs([load_table("tiny")], runs)[0]
    assert job.state == "new"
    # an interrupted run: 2 of 6 minibatches, then stopped
    execute_run(
        job.resolved,
        seed=0,
        out=job.run_dir,
        stop_at_nimg=16,
        evaluate=False,
        handle_signals=False,
        tensorboard=False,
        device="cpu",
    )
    assert refresh_state(job).state == "incomplete" and job.done_kimg == pytest.approx(0.016)
    events: list[str] = []
    (result,) = LocalQueue([None], runs / "sweep-logs", evaluate=False, on_event=events.append).run([job])
    log = result.log.read_text()
    assert result.outcome == "complete", log
    assert "resumed from kimg 0.016" in log and job.state == "complete"
    assert job.done_kimg == pytest.approx(0.048)
    # the sweep command now finds it complete: nothing runs, the leaderboard is rebuilt from the store
    out = tmp_path / "leaderboards"
    cli = CliRunner().invoke(
        app, ["sweep", "tiny", "--runs", str(runs), "--gpus", "cpu", "--no-eval", "--out", str(out)]
    )
    assert cli.exit_code == 0, cli.output
    assert "1 complete" in cli.output and "nothing to run" in cli.output
    assert result.log.read_text().count("=== ") == 1  # not started again
    markdown = (out / "tiny.md").read_text()
    assert job.name in markdown and "pending" in markdown  # trained with --no-eval: the metric is pending


@dataclass
class StubJob:
    """Stands in for a Job: a name and a command line."""

    name: str
    script: str
    state: str = "new"

    def command(self, **_: Any) -> list[str]:
        return [sys.executable, "-c", self.script]


def test_a_failed_job_does_not_stop_the_others(tmp_path: Path) -> None:
    jobs = [StubJob("fails", "raise SystemExit(4)"), StubJob("works", "print('fine')")]
    queue = LocalQueue([None], tmp_path / "logs", refresh=lambda job: None)
    results = queue.run(jobs)  # type: ignore[arg-type]
    assert [(r.job.name, r.returncode) for r in results] == [("fails", 4), ("works", 0)]
    assert results[0].outcome == "failed"
    assert "fine" in (tmp_path / "logs" / "works.log").read_text()


def test_two_gpu_slots_get_their_own_cuda_visible_devices(tmp_path: Path) -> None:
    script = "import os; print('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'])"
    jobs = [StubJob(f"job{i}", script) for i in range(3)]
    LocalQueue(["0", "1"], tmp_path / "logs", refresh=lambda job: None).run(jobs)  # type: ignore[arg-type]
    seen = {(tmp_path / "logs" / f"job{i}.log").read_text().rsplit("CVD=", 1)[1].strip() for i in range(3)}
    assert seen == {"0", "1"}


def test_ctrl_c_forwards_sigterm_and_starts_nothing_new(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    child = (
        "import pathlib, signal, sys, time\n"
        f"d = pathlib.Path({str(marks)!r})\n"
        "def stop(*_):\n    (d / 'got-term').write_text('1'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "(d / 'ready').write_text('1')\n"
        "time.sleep(60)\n"
    )
    jobs = [StubJob("long", child), StubJob("queued", "print('should not run')")]

    def interrupt() -> None:
        deadline = time.time() + 60
        while not (marks / "ready").exists() and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    queue = LocalQueue([None], tmp_path / "logs", refresh=lambda job: None)
    results = queue.run(jobs)  # type: ignore[arg-type]
    assert (marks / "got-term").exists()
    assert [r.outcome for r in results] == ["stopped", "not started"] and queue.stop_requests == 1


def test_parse_gpus() -> None:
    assert parse_gpus("0,2", 0) == ["0", "2"]
    assert parse_gpus("cpu", 4) == [None]
    assert parse_gpus(None, 2) == ["0", "1"] and parse_gpus(None, 0) == [None]
    with pytest.raises(DeganError, match="distinct GPU indices"):
        parse_gpus("0,0", 2)


def test_slurm_script_is_an_array_that_resumes(recipes: Path, tmp_path: Path) -> None:
    jobs, _ = expand_jobs([load_table("fixture")], tmp_path / "runs", seeds=2)
    script = sbatch_script(
        jobs,
        tmp_path / "logs",
        SlurmOptions(time="02:00:00", partition="gpu", max_parallel=4),
        python="/opt/py/bin/python",
        workdir=tmp_path,
    )
    assert "#SBATCH --array=0-9%4" in script and "#SBATCH --requeue" in script
    assert "#SBATCH --signal=B:USR1@120" in script and "#SBATCH --partition=gpu" in script
    assert script.count("--resume auto --out") == 10 and "scontrol requeue" in script
    assert "--set" not in script and "--no-eval" not in script
    path = tmp_path / "sweep.sbatch"
    path.write_text(script)
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    with pytest.raises(DeganError, match="no jobs"):
        sbatch_script([], tmp_path, SlurmOptions(), python="python", workdir=tmp_path)


def test_sweep_slurm_backend_writes_the_script_without_submitting(recipes: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["sweep", "tiny", "--backend", "slurm", "--runs", str(runs), "--slurm-time", "04:00:00"]
    )
    assert result.exit_code == 0, result.output
    (script,) = (runs / "sweep-logs").glob("sweep-*.sbatch")
    text = script.read_text()
    assert (
        "#SBATCH --time=04:00:00" in text and "--set loss.r1_gamma=5" in text and "sbatch " in result.output
    )


def test_estimates_prefer_measured_speed_then_the_cost_table(recipes: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (job,) = expand_jobs([load_table("tiny")], runs)[0]
    unknown = estimate_job(job, [], [])
    assert unknown.device_sec_per_kimg is None and unknown.source.startswith("unknown")
    entry = CostEntry(
        arch="stylegan2",
        resolution=16,
        batch=8,
        gpu="Tesla V100",
        gpus=2,
        sec_per_kimg=3.0,
        source="test",
        channel_base=128,
    )
    assert estimate_job(job, [], [entry]).hours(1200) == pytest.approx(1200 * 6.0 / 3600)
    ticks = [
        {"tick": t, "kimg": 0.016 * t, "sec_per_kimg": s} for t, s in enumerate((100.0, 10.0, 12.0, 11.0))
    ]
    make_run(
        runs, "measured", job.resolved, 0, status="stopped", cur_nimg=48, device="NVIDIA H100", stats=ticks
    )
    measured = measured_rate(scan_runs([runs]), job.resolved.hash)
    assert measured is not None and measured.device_sec_per_kimg == 11.0  # median without the start-up tick
    assert measured.device == "NVIDIA H100" and estimate_job(job, scan_runs([runs]), [entry]) == measured
    assert all(e.source and (e.sec_per_kimg is None or e.sec_per_kimg > 0) for e in load_costs())


def test_dry_run_prints_jobs_and_estimate_without_running(recipes: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["sweep", "fixture", "--seeds", "1", "--runs", str(runs), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "5 job(s)" in result.output and "unknown cost" in result.output and "[fixture]" in result.output
    assert not runs.exists()
    tables = {"tables": yaml.safe_load((recipes / "tables" / "tiny.yaml").read_text())}
    assert tables["tables"]["seeds"] == 1
    bad = CliRunner().invoke(app, ["sweep", "--all", "fixture", "--dry-run"])
    assert bad.exit_code != 0


def test_job_type_is_what_the_queue_runs(recipes: Path, tmp_path: Path) -> None:
    (job,) = expand_jobs([load_table("tiny")], tmp_path / "runs")[0]
    assert isinstance(job, Job) and job.remaining_kimg == pytest.approx(0.048)
