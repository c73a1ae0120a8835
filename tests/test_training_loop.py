"""The training loop end to end on the CPU with a tiny StyleGAN2: run directory, exact resume, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tiny import TINY_MODEL, assert_same

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.errors import ResumeError
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.training.execute import execute_run

# A tiny StyleGAN2 at 16 px that exercises every phase: lazy R1 and path length (interval 2), style mixing,
# random mirroring, EMA with a start delay; 4 kimg per tick = 5 minibatches of 8 at 0.04 kimg per tick.
TINY = [
    *TINY_MODEL,
    "training.kimg=0.16",
    "training.kimg_per_tick=0.04",
    "training.snapshot_ticks=1",
    "training.image_snapshot_ticks=2",
    "training.ema_kimg=0.02",
    "training.ema_start_kimg=0.016",
    "training.grid_size=[4,2]",
    "loss.r1_interval=2",
    "loss.pl_weight=2",
    "loss.pl_interval=2",
    "loss.style_mixing_prob=0.9",
]


def tiny_recipe(*extra: str) -> Any:
    return resolve_recipe("stylegan2", "shapes-100", "smoke", [*TINY, *extra])


def run_tiny(out: Path, *extra: str, **kwargs: Any):
    return execute_run(
        tiny_recipe(*extra),
        seed=kwargs.pop("seed", 3),
        out=out,
        evaluate=False,
        handle_signals=False,
        tensorboard=False,
        **kwargs,
    )


def state(path: Path) -> dict[str, Any]:
    return ckpt.load_checkpoint(path)


def test_run_directory_contents(tmp_path: Path) -> None:
    result = run_tiny(tmp_path / "run")
    assert result is not None and result.status == "complete" and result.cur_nimg == 160
    run = RunDir(tmp_path / "run")
    info = json.loads(run.info_path.read_text())
    assert info["status"] == "complete" and info["cur_nimg"] == 160 and info["seed"] == 3
    assert info["recipe_hash"] == tiny_recipe().hash and info["gpu_hours"] == 0 and info["cpu_hours"] > 0
    assert info["sessions"][0]["end_reason"] == "complete"
    stats = run.read_stats()
    assert [s["tick"] for s in stats] == [0, 1, 2, 3, 4]
    for key in ("kimg", "sec_per_kimg", "img_per_sec", "gpu_mem_gb", "cpu_mem_gb", "losses"):
        assert key in stats[-1]
    for key in ("Loss/G/loss", "Loss/D/loss", "Loss/Dreg/r1_penalty", "Loss/Greg/pl_penalty"):
        assert key in stats[-1]["losses"], key
    for name in ("reals.png", "fakes_init.png", "recipe.yaml", "log.txt"):
        assert (run.path / name).exists(), name
    assert list(run.path.glob("fakes_0*.png"))
    kept = [p for p in run.checkpoint_dir.iterdir() if p.name.startswith("ckpt-")]
    assert len(kept) == 3  # keep_checkpoints default


def test_resume_is_bit_identical_to_a_straight_run(tmp_path: Path) -> None:
    straight = run_tiny(tmp_path / "straight")
    stopped = run_tiny(
        tmp_path / "resumed", stop_at_nimg=48
    )  # a tick boundary: ticks end at 8, 48, 88, ... images
    assert stopped is not None and stopped.status == "stopped" and stopped.cur_nimg == 48
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["status"] == "stopped"
    resumed = run_tiny(tmp_path / "resumed", resume="auto")
    assert resumed is not None and resumed.status == "complete"
    a = state(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = state(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "objective", "sampler", "method", "rng"):
        assert_same(a[key], b[key], key)
    assert a["progress"] == {**b["progress"], "train_seconds": a["progress"]["train_seconds"]}
    losses_a = [s["losses"] for s in RunDir(tmp_path / "straight").read_stats()]
    losses_b = [s["losses"] for s in RunDir(tmp_path / "resumed").read_stats()]
    assert losses_a == losses_b
    info = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert [s["end_reason"] for s in info["sessions"]] == ["stop_at_nimg", "complete"]
    assert straight.cur_nimg == resumed.cur_nimg


def test_a_stop_inside_a_tick_keeps_the_straight_runs_ticks(tmp_path: Path) -> None:
    run_tiny(tmp_path / "straight")
    stopped = run_tiny(tmp_path / "resumed", stop_at_nimg=64)  # inside the tick 48 -> 88
    assert stopped is not None and stopped.status == "stopped" and stopped.cur_nimg == 64
    saved = state(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    assert (saved["progress"]["cur_tick"], saved["progress"]["tick_start_nimg"]) == (2, 48)
    assert saved["tick_stats"][0]  # the unfinished tick's running sums
    assert [s["cur_nimg"] for s in RunDir(tmp_path / "resumed").read_stats()] == [8, 48]
    run_tiny(tmp_path / "resumed", resume="auto")
    straight = RunDir(tmp_path / "straight").read_stats()
    resumed = RunDir(tmp_path / "resumed").read_stats()
    assert [(s["tick"], s["cur_nimg"]) for s in resumed] == [(s["tick"], s["cur_nimg"]) for s in straight]
    assert [s["losses"] for s in resumed] == [s["losses"] for s in straight]
    grids = sorted(p.name for p in (tmp_path / "straight").glob("fakes_0*.png"))
    assert sorted(p.name for p in (tmp_path / "resumed").glob("fakes_0*.png")) == grids
    a = state(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = state(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "objective", "rng"):
        assert_same(a[key], b[key], key)


def test_resume_auto_with_a_changed_recipe_says_it_starts_a_new_run() -> None:
    import io

    from rich.console import Console

    first = run_tiny(None, resume="auto", stop_at_nimg=8)
    assert first is not None and first.status == "stopped"
    out = io.StringIO()
    run_tiny(
        None, "training.g_lr=0.001", resume="auto", stop_at_nimg=8, console=Console(file=out, width=1000)
    )
    lines = [line for line in out.getvalue().splitlines() if "--resume auto: no run of this recipe" in line]
    assert len(lines) == 1
    assert "training.g_lr: 0.002 -> 0.001" in lines[0] and "--resume " in lines[0] and "--force" in lines[0]
    quiet = io.StringIO()  # the same recipe again: it resumes, nothing to say
    run_tiny(None, "training.g_lr=0.001", resume="auto", stop_at_nimg=16, console=Console(file=quiet))
    assert "no run of this recipe" not in quiet.getvalue()


def test_existing_run_directory_needs_resume_and_same_recipe(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_tiny(out, stop_at_nimg=40)
    with pytest.raises(ResumeError, match=r"already exists.*--resume auto"):
        run_tiny(out)
    with pytest.raises(ResumeError, match=r"recipe differs: training\.g_lr: 0\.002 -> 0\.001.*--force"):
        run_tiny(out, "training.g_lr=0.001", resume="auto")
    with pytest.raises(ResumeError, match="seed differs: 3 -> 4"):
        run_tiny(out, resume="auto", seed=4)
    forced = run_tiny(out, "training.g_lr=0.001", resume="auto", force=True)
    assert forced is not None and forced.status == "complete"
    log = (out / "log.txt").read_text()
    assert "FORCED resume despite: recipe differs: training.g_lr" in log
    assert json.loads((out / "run.json").read_text())["sessions"][-1]["forced"] is True
    assert list(out.glob("recipe.before-*.yaml"))
    assert run_tiny(out, "training.g_lr=0.001", resume="auto") is None  # complete: nothing to do


def test_evaluation_keeps_best_and_reevaluates_it_with_fresh_seeds(tmp_path: Path) -> None:
    calls: list[int] = []
    values = iter([5.0, 3.0, 4.0, 6.0, 2.5])

    def evaluator(G, protocol, *, seed, on_missing_weights, **kwargs):
        calls.append(seed)
        return {
            "protocol": protocol,
            "metric": "fid",
            "status": "ok",
            "value": next(values),
            "protocol_record": {"reference_split": "train"},
        }

    recipe = tiny_recipe("evaluation.interval_kimg=0.04", "evaluation.protocols=[fid5k_train]")
    result = execute_run(
        recipe, seed=0, out=tmp_path / "run", evaluator=evaluator, handle_signals=False, tensorboard=False
    )
    assert result is not None and result.status == "complete"
    records = RunDir(tmp_path / "run").read_metrics()
    assert [r["purpose"] for r in records] == ["selection"] * 3 + ["last", "best"]
    assert records[-1]["checkpoint"] == "best" and records[-1]["selection"]["value"] == 3.0
    assert records[-1]["value"] == 2.5 and calls[-1] == 1  # fresh evaluation seeds for the reported best
    best = state(tmp_path / "run" / "checkpoints" / "best.pt")
    assert (
        best["cur_nimg"] == 88 and best["best"]["value"] == 3.0
    )  # evaluations at 48, 88, 128 and 160 images


def test_missing_weights_leave_the_metric_pending(tmp_path: Path) -> None:
    def evaluator(G, protocol, **kwargs):
        return {
            "protocol": protocol,
            "metric": "fid",
            "status": "pending",
            "value": None,
            "pending_reason": "weights not found",
        }

    result = execute_run(
        tiny_recipe("evaluation.protocols=[kid500_train]"),
        seed=0,
        out=tmp_path / "run",
        evaluator=evaluator,
        handle_signals=False,
        tensorboard=False,
    )
    assert result is not None and result.status == "complete"
    records = RunDir(tmp_path / "run").read_metrics()
    assert len(records) == 1 and records[0]["status"] == "pending" and records[0]["checkpoint"] == "last"
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [a for s in TINY if not s.startswith("training.kimg=") for a in ("--set", s)]
    cmd = [
        sys.executable,
        "-m",
        "degan_bench",
        "run",
        "stylegan2",
        "shapes-100",
        "--preset",
        "smoke",
        "--seed",
        "0",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-eval",
        *sets,
        "--set",
        "training.kimg=50",
    ]
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        cmd,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "stats.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, output  # ExitCode.PROGRESS: stopped with a checkpoint
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "stopped" and info["sessions"][-1]["end_reason"] == "SIGTERM"
    last = ckpt.list_checkpoints(out)["last"]
    assert state(last)["cur_nimg"] == info["cur_nimg"] > 0
    assert "--resume auto" in output
