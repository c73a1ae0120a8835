"""Faults a run must survive: divergence, torn JSONL lines, kill-and-resume duplicates, a full disk,
leftover temporary files, unreadable checkpoints; and a table that one bad run must not break."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from results_support import make_run, metric_record, write_recipes, write_reported
from test_training_loop import run_tiny
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli.app import app, main
from degan_bench.core import checkpoint as ckpt
from degan_bench.core import fileio
from degan_bench.core.exitcodes import ExitCode
from degan_bench.core.fileio import DiskFullError, append_jsonl, read_jsonl, repair_torn_tail
from degan_bench.core.rundir import RunDir
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.results.store import load_run, scan_runs

TINY_CLI = [
    "--set", "data.resolution=16", "--set", "model.z_dim=16", "--set", "model.w_dim=16",
    "--set", "model.mapping_layers=2", "--set", "model.channel_base=128", "--set", "model.channel_max=16",
    "--set", "training.batch=8", "--set", "training.batch_gpu=4", "--set", "training.kimg=0.048",
    "--set", "training.kimg_per_tick=0.016", "--set", "training.grid_size=[4,2]",
]  # fmt: skip


def finite(path: Path) -> bool:
    return not ckpt.nonfinite_weights(ckpt.load_checkpoint(path))


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """The real entry point in this process (so a test can patch it): (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["degan-bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


# -- divergence ------------------------------------------------------------------------------------
def test_huge_learning_rate_diverges_in_one_line_with_exit_code_failed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "stylegan2", "shapes-100", "--preset", "smoke", "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(
        app, [*args, "--no-eval", *TINY_CLI, "--set", "training.g_lr=1.0e+6", "--set", "training.d_lr=1.0e+6"]
    )
    assert result.exit_code == ExitCode.FAILED, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged" and info["diverged_kimg"] == pytest.approx(0.008)
    assert "non-finite" in info["status_detail"] and info["sessions"][-1]["end_reason"] == "diverged"
    assert "diverged" in result.output and "lower the learning rates" in result.output
    assert all(finite(path) for path in ckpt.list_checkpoints(out).values())  # none, or only finite ones


@pytest.mark.parametrize("check", ["tick", "minibatch"])
def test_divergence_keeps_the_last_finite_checkpoint(tmp_path: Path, check: str) -> None:
    out = tmp_path / "run"
    result = run_tiny(
        out, "training.g_lr=100", "training.d_lr=100", "training.keep_checkpoints=10",
        f"performance.finite_check={check}",
    )  # fmt: skip
    assert result is not None and result.status == "diverged" and result.cur_nimg < 160
    info = RunDir(out).read_info()
    assert info.status == "diverged" and info.diverged_kimg == result.cur_nimg / 1000
    saved = [p for name, p in ckpt.list_checkpoints(out).items() if name.startswith("ckpt-")]
    assert saved, "a finite checkpoint was written before the divergence"
    assert all(finite(path) for path in saved)
    assert all(ckpt.load_checkpoint(path)["cur_nimg"] < result.cur_nimg for path in saved)
    assert saved[-1].name in info.status_detail  # "the last finite checkpoint is ckpt-..."
    if check == "minibatch":
        assert result.cur_nimg % 8 == 0  # stopped at the minibatch itself, not at a tick boundary


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    payload = {"cur_nimg": 8, "G": {"w": torch.tensor([1.0, float("nan")])}, "D": {}, "G_ema": {}}
    with pytest.raises(ValueError, match=r"non-finite weights.*G\.w"):
        ckpt.save_checkpoint(run, payload, keep=3)
    assert not run.checkpoint_dir.exists() or not any(run.checkpoint_dir.iterdir())


# -- JSONL -----------------------------------------------------------------------------------------
def test_a_torn_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"n": 1})
    with open(path, "a") as f:
        f.write('{"n": 2, "value": 0.12')  # killed mid-append: no closing brace, no newline
    append_jsonl(path, {"n": 3})
    assert [r["n"] for r in read_jsonl(path)] == [1, 3]
    assert path.read_text().endswith('{"n": 3}\n')
    # a complete last record without its newline (written by another tool) is kept, not cut
    with open(path, "a") as f:
        f.write('{"n": 4}')
    assert repair_torn_tail(path) and [r["n"] for r in read_jsonl(path)] == [1, 3, 4]
    append_jsonl(path, {"n": 5})
    assert [r["n"] for r in read_jsonl(path)] == [1, 3, 4, 5]


def test_resume_after_a_kill_has_no_duplicate_ticks(tmp_path: Path) -> None:
    """A kill after ticks were written but before their checkpoint: the resumed run trains those ticks
    again and must not list them twice."""
    out = tmp_path / "run"
    straight = run_tiny(out, "training.keep_checkpoints=10")
    assert straight is not None and straight.status == "complete"
    before = RunDir(out).read_stats()
    for name, path in ckpt.list_checkpoints(out).items():  # the kill came before the checkpoints past 48
        if name.startswith("ckpt-") and ckpt.load_checkpoint(path)["cur_nimg"] > 48:
            path.unlink()
    info = RunDir(out).read_info()
    info.status = "running"  # as a killed process leaves it
    RunDir(out).write_info(info)
    resumed = run_tiny(out, "training.keep_checkpoints=10", resume="auto")
    assert resumed is not None and resumed.status == "complete"
    after = RunDir(out).read_stats()
    assert [(s["tick"], s["cur_nimg"]) for s in after] == [(s["tick"], s["cur_nimg"]) for s in before]
    assert [s["losses"] for s in after] == [s["losses"] for s in before]  # exact resume


# -- disk full -------------------------------------------------------------------------------------
def test_disk_full_is_one_line_keeps_earlier_checkpoints_and_leaves_the_run_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    real_write = fileio._write_synced

    def full_after_first_checkpoints(f: Any, data: bytes) -> None:
        name = os.path.basename(f.name)
        if name.startswith(".ckpt-") and int(name.split("-")[1].split(".")[0]) >= 88:
            f.write(data[: len(data) // 2])  # part of it fits, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(f, data)

    monkeypatch.setattr(fileio, "_write_synced", full_after_first_checkpoints)
    sets = [a for s in ("training.kimg=0.16", "training.kimg_per_tick=0.04", "training.snapshot_ticks=1")
            for a in ("--set", s)]  # fmt: skip
    code, stderr = run_main(
        monkeypatch, capsys, "run", "stylegan2", "shapes-100", "--preset", "smoke", "--out", str(out),
        "--device", "cpu", "--no-eval", *TINY_CLI, *sets,
    )  # fmt: skip
    assert code == ExitCode.FAILED
    lines = [
        line for line in stderr.splitlines() if line.startswith("error")
    ]  # (after the data's progress bar)
    assert len(lines) == 1 and lines[0].startswith("error: disk full writing"), stderr
    assert "Traceback" not in stderr and stderr.rstrip().endswith("then run again")
    assert str(out / "checkpoints") in lines[0] and " free in " in lines[0]
    assert not [p for p in (out / "checkpoints").iterdir() if ".tmp-" in p.name]  # no partial file left
    info = RunDir(out).read_info()
    assert info.status == "stopped" and info.status_detail.startswith("disk full")
    kept = ckpt.list_checkpoints(out)
    assert [n for n in kept if n.startswith("ckpt-")] == ["ckpt-0000000008.pt", "ckpt-0000000048.pt"]
    assert all(finite(p) for p in kept.values())

    monkeypatch.setattr(fileio, "_write_synced", real_write)  # space freed: continue where it stopped
    code, _ = run_main(
        monkeypatch, capsys, "run", "stylegan2", "shapes-100", "--preset", "smoke", "--out", str(out),
        "--device", "cpu", "--no-eval", *TINY_CLI, *sets, "--resume", "auto",
    )  # fmt: skip
    assert code == 0 and RunDir(out).read_info().status == "complete"


def test_disk_full_in_an_append_is_a_disk_full_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(DiskFullError, match=r"disk full writing .*stats\.jsonl \(.* free in "):
        append_jsonl(tmp_path / "stats.jsonl", {"tick": 0})


def test_leftover_temporary_checkpoints_are_removed_at_start(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_tiny(out, stop_at_nimg=48)
    dead = out / "checkpoints" / ".ckpt-0000000088.pt.tmp-999999999"  # no such process
    dead.write_bytes(b"half a checkpoint")
    mine = out / ".run.json.tmp-1"  # pid 1 is alive (init): kept, it may be writing
    mine.write_text("{}")
    run_tiny(out, resume="auto")
    assert not dead.exists() and mine.exists()
    assert "partial write" in (out / "log.txt").read_text()


def test_an_unreadable_newest_checkpoint_is_announced(tmp_path: Path) -> None:
    from degan_bench.training.runner import plan_run

    out = tmp_path / "run"
    run_tiny(out, stop_at_nimg=48)
    newest = ckpt.list_checkpoints(out)["last"]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    plan = plan_run(
        resolve_recipe("stylegan2", "shapes-100", "smoke", _tiny_sets()), 3, out=out, resume="auto"
    )
    assert plan.notice and "skipping unreadable checkpoint" in plan.notice and newest.name in plan.notice
    assert "resuming from ckpt-0000000008.pt" in plan.notice


def _tiny_sets() -> list[str]:
    from test_training_loop import TINY

    return list(TINY)


# -- the run store ---------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(write_recipes(tmp_path / "recipes")))
    runs = tmp_path / "runs"
    obama = resolve_recipe("stylegan2", "obama-100")
    make_run(
        runs, "good", obama, 0, metrics=[metric_record(80.0, nimg=48)], stats=[{"tick": 0, "kimg": 0.008}]
    )
    diverged = make_run(runs, "diverged", obama, 1, status="diverged", cur_nimg=16)
    info = diverged.read_info()
    info.diverged_kimg, info.status_detail = 0.016, "non-finite loss Loss/G/loss at kimg 0.016"
    diverged.write_info(info)
    wrong_type = make_run(runs, "wrong-type", obama, 2, metrics=[metric_record(81.0, nimg=48)])
    data = json.loads(wrong_type.info_path.read_text())
    data["cur_nimg"] = "48"
    wrong_type.info_path.write_text(json.dumps(data))
    not_object = make_run(runs, "not-object", obama, 3, metrics=[metric_record(82.0, nimg=48)])
    with open(not_object.metrics_path, "a") as f:
        f.write("[1, 2, 3]\n")
    bad_stats = make_run(runs, "bad-stats", obama, 4, metrics=[metric_record(83.0, nimg=48)])
    bad_stats.append_stats({"tick": 0, "kimg": 0.008, "losses": {"Loss/G/loss": "high"}})
    bad_value = make_run(
        runs, "bad-value", obama, 5, metrics=[{**metric_record(84.0, nimg=48), "value": "84"}]
    )
    return {
        "runs": runs,
        "reported": write_reported(tmp_path / "reported.csv"),
        "tmp": tmp_path,
        "ids": bad_value,
    }


def test_bad_runs_are_reported_and_skipped_diverged_counts_as_failed(store: dict[str, Any]) -> None:
    from degan_bench.results.reported import load_reported
    from degan_bench.results.tables import BuildOptions, build_table, load_table

    runs = {r.path.name: r for r in scan_runs([store["runs"]])}
    assert runs["good"].status == "complete" and runs["good"].stats() == [{"tick": 0, "kimg": 0.008}]
    assert runs["diverged"].status == "diverged" and runs["diverged"].failed
    assert "non-finite" in runs["diverged"].status_detail
    problems = {name: run.problem for name, run in runs.items() if run.status == "unreadable"}
    assert set(problems) == {"wrong-type", "not-object", "bad-stats", "bad-value"}
    assert "'cur_nimg' is '48'" in problems["wrong-type"]
    assert "line 2 is not a JSON object" in problems["not-object"]
    assert "losses.Loss/G/loss is 'high'" in problems["bad-stats"]
    assert "value is '84'" in problems["bad-value"]

    result = build_table(
        load_table("fixture"), list(runs.values()), load_reported(store["reported"]), BuildOptions()
    )
    cells = result.cells
    obama = cells[(cells["row"] == "StyleGAN2") & (cells["dataset"] == "obama-100") & (~cells["variant"])]
    row = obama.iloc[0]
    # the run whose run.json cannot be read has no cell to go to: it is listed with the page's problems
    assert (row["n"], row["n_failed"], row["n_unreadable"]) == (1, 1, 3)
    assert row["mean"] == pytest.approx(80.0)
    assert {r.path.name for r in result.unreadable} == set(problems)


def test_table_command_survives_bad_runs(store: dict[str, Any]) -> None:
    args = ["table", "fixture", "--runs", str(store["runs"]), "--reported", str(store["reported"])]
    for fmt in ("md", "html"):
        result = CliRunner().invoke(app, [*args, "--out", str(store["tmp"] / fmt), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "unreadable" in result.output and "not a JSON object" in result.output


def test_run_json_of_the_wrong_shape_is_a_one_line_error(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.info_path.write_text('{"run_id": "x", "method": "m", "dataset": "d", "preset": "p", "seed": "0"}')
    with pytest.raises(ValueError, match="field 'seed' is '0', not of type int"):
        run.read_info()
    run.info_path.write_text("[]")
    assert "is not a JSON object" in load_run(run.path).problem
