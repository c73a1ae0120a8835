"""`run --gpus N`: the launch plan, torchrun's command line, exit codes, and the recipes' GPU counts."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from degan_bench.cli import app
from degan_bench.cli.app import _register_commands
from degan_bench.core import launch
from degan_bench.core.exitcodes import ExitCode
from degan_bench.core.rundir import RunInfo, Session
from degan_bench.errors import DeganError, ResumeError
from degan_bench.recipes.loader import list_recipes, resolve_file, resolve_recipe
from degan_bench.recipes.schema import ResourcesConfig
from degan_bench.results.store import StoredRun
from degan_bench.training.loop import StopRequest
from degan_bench.training.streams import RandomStreams, stream_seed

EIGHT = ResourcesConfig(gpus=8, source="test")


@pytest.fixture(autouse=True)
def _outside_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_RANK", "RANK", launch.STATUS_DIR_ENV):
        monkeypatch.delenv(name, raising=False)


def plan(**kwargs: object) -> launch.LaunchPlan | None:
    options = {"gpus": None, "nnodes": None, "node_rank": None, "rdzv_endpoint": None, "rdzv_id": None,
               "device": "cpu", "resources": EIGHT, **kwargs}  # fmt: skip
    return launch.plan_launch(**options)  # type: ignore[arg-type]


# -- the plan ------------------------------------------------------------------------------------------
def test_one_process_unless_asked_whatever_the_recipe_says() -> None:
    assert plan() is None  # the recipe's 8 GPUs are informative only
    assert plan(gpus="1") is None
    assert plan(gpus="2") == launch.LaunchPlan(nproc_per_node=2, rdzv_id="degan-bench")
    recipe = plan(gpus="recipe")
    assert recipe is not None and recipe.world_size == 8 and recipe.nnodes == 1


def test_recipe_count_splits_over_the_nodes_and_several_nodes_need_a_rendezvous() -> None:
    two_nodes = ResourcesConfig(gpus=16, nodes=2, source="test")
    with pytest.raises(DeganError, match="--rdzv-endpoint"):
        plan(gpus="recipe", resources=two_nodes)
    spread = plan(gpus="recipe", resources=two_nodes, rdzv_endpoint="head:29500", rdzv_id="7")
    assert spread == launch.LaunchPlan(nproc_per_node=8, nnodes=2, rdzv_endpoint="head:29500", rdzv_id="7")
    with pytest.raises(DeganError, match="does not split"):
        plan(gpus="recipe", nnodes=3, rdzv_endpoint="head")
    with pytest.raises(DeganError, match="--node-rank 2"):
        plan(gpus="4", nnodes=2, node_rank=2, rdzv_endpoint="head")


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_bad_counts_are_refused_in_one_line(value: str) -> None:
    with pytest.raises(DeganError, match="'recipe'"):
        plan(gpus=value)


def test_devices_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeganError, match="--device cpu"):
        plan(gpus="2", device="auto")
    assert plan(gpus="2", device="auto", check_devices=False) is not None  # --dry-run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert plan(gpus="2", device="cuda") is not None
    with pytest.raises(DeganError, match="only 2 GPUs visible"):
        plan(gpus="4", device="cuda")
    with pytest.raises(DeganError, match="names one device"):
        plan(gpus="2", device="cuda:1")


def test_no_second_launch_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert plan(gpus="4") is None and plan() is None
    with pytest.raises(DeganError, match="already running under torchrun with 4"):
        plan(gpus="2")


def test_torchrun_command_lines() -> None:
    single = launch.torchrun_command(launch.LaunchPlan(2), ["run", "a", "b"])
    assert single[1:] == ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--max_restarts", "0",
                          "--standalone", "-m", "degan_bench", "run", "a", "b"]  # fmt: skip
    c10d = launch.torchrun_command(launch.LaunchPlan(4, 2, "head", "job7"), ["run"])
    assert " --nnodes 2 --rdzv_backend c10d --rdzv_endpoint head:29500 --rdzv_id job7 " in " ".join(c10d)
    static = launch.torchrun_command(launch.LaunchPlan(4, 2, "head:1234", "x", node_rank=1), ["run"])
    assert " --nnodes 2 --node_rank 1 --master_addr head --master_port 1234 " in " ".join(static)


# -- exit codes ----------------------------------------------------------------------------------------
def test_combined_exit_code() -> None:
    P, C, F = int(ExitCode.PROGRESS), int(ExitCode.COMPLETE), int(ExitCode.FAILED)
    assert launch.combined_exit_code({0: C, 1: C}, 2, 0) == C
    assert launch.combined_exit_code({0: P, 1: P}, 2, 0) == P  # a clean stop
    assert launch.combined_exit_code({0: 2, 1: P}, 2, 1) == 2  # one line of bad input wins
    assert launch.combined_exit_code({1: F}, 2, 1) == F  # rank 0 killed by the agent after rank 1 failed
    assert launch.combined_exit_code({0: P}, 2, 1) == 1  # a worker vanished: torchrun's code
    assert launch.combined_exit_code({}, 2, -9) == F


def test_workers_report_their_code_and_a_clean_stop_exits_0_for_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(launch.STATUS_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("LOCAL_RANK", "1")
    with launch.worker_exit_report():
        pass
    assert launch.worker_pids(tmp_path, 2) == [os.getpid()] and launch.worker_exit_codes(tmp_path) == {1: 0}
    with pytest.raises(typer.Exit) as stopped, launch.worker_exit_report():
        raise typer.Exit(int(ExitCode.PROGRESS))
    assert stopped.value.exit_code == 0 and launch.worker_exit_codes(tmp_path) == {1: 75}
    with pytest.raises(ResumeError), launch.worker_exit_report():
        raise ResumeError("no")
    assert launch.worker_exit_codes(tmp_path) == {1: 2}
    with pytest.raises(RuntimeError), launch.worker_exit_report():
        raise RuntimeError("crash")
    assert launch.worker_exit_codes(tmp_path) == {1: 1}


def test_without_the_launcher_nothing_is_reported(tmp_path: Path) -> None:
    with launch.worker_exit_report():
        pass
    assert not list(tmp_path.iterdir())


# -- the CLI -------------------------------------------------------------------------------------------
def test_dry_run_shows_the_layout_and_the_hash_does_not_move() -> None:
    _register_commands()
    runner = CliRunner()
    args = ["run", "insgen", "ffhq-2k", "--dry-run", "--device", "cpu"]
    plain = runner.invoke(app, args, env={"COLUMNS": "300"})
    spread = runner.invoke(app, [*args, "--gpus", "2"], env={"COLUMNS": "300"})
    assert plain.exit_code == spread.exit_code == 0, plain.output + spread.output
    hashes = [re.search(r"hash=(\w+)", out.output).group(1) for out in (plain, spread)]  # type: ignore[union-attr]
    assert hashes[0] == hashes[1] == resolve_recipe("insgen", "ffhq-2k").hash
    assert "processes: this one (the recipe's official set-up: 8 GPUs, from NVlabs" in plain.output
    assert "processes: 2 processes (2 per node)" in spread.output
    bad = runner.invoke(app, [*args, "--gpus", "x"])
    assert isinstance(bad.exception, DeganError) and "'recipe'" in str(bad.exception)  # main() exits 2


# -- the recipes' GPU counts ---------------------------------------------------------------------------
def test_every_paper_recipe_states_its_official_gpu_count_with_a_source() -> None:
    checked = 0
    for entry in list_recipes():
        resolved = resolve_file(Path(entry.path), "paper", [])
        recipe = resolved.recipe
        if recipe.purpose != "paper":
            continue
        resources = recipe.resources
        assert resources.gpus >= 1 and resources.gpus % resources.nodes == 0, entry.path
        assert resources.source and len(resources.source) > 20, f"{entry.path}: resources.source"
        checked += 1
    assert checked > 100
    assert resolve_recipe("insgen", "ffhq-2k").recipe.resources.gpus == 8
    assert resolve_recipe("fakeclr", "obama-100").recipe.resources.gpus == 2
    assert resolve_recipe("diffaugment", "obama-100").recipe.resources.gpus == 4
    assert resolve_recipe("diffaugment", "cifar10-10pct").recipe.resources.gpus == 2
    assert resolve_recipe("diggan", "cifar10-10pct").recipe.resources.gpus == 1
    assert resolve_recipe("fakeclr", "obama-100", "smoke").recipe.resources.gpus == 1


def test_the_gpu_count_is_not_part_of_the_recipe_hash() -> None:
    base = resolve_recipe("diffaugment", "ffhq-1k")
    for change in ("resources.gpus=1", "resources.gpus=3", "resources.nodes=2"):
        other = resolve_recipe("diffaugment", "ffhq-1k", "paper", [change, "resources.gpus=4"])
        assert other.hash == base.hash, change


# -- pieces of the same guarantee ----------------------------------------------------------------------
def test_a_chunk_draws_the_same_numbers_whichever_process_runs_it() -> None:
    one, two = RandomStreams(3, rank=0, world_size=1), RandomStreams(3, rank=1, world_size=2)
    one.begin_minibatch(5)
    two.begin_minibatch(5)
    one.round("D", 3, rounds=4)  # chunk 3 as round 3 of one process
    a = torch.randn(4)
    two.round("D", 1, rounds=2)  # chunk 3 as round 1 of process 1 of 2
    assert torch.equal(a, torch.randn(4))
    two.round("G", 1, rounds=2)
    assert not torch.equal(a, torch.randn(4))
    assert stream_seed(0, 1, "D", 2) == stream_seed(0, 1, "D", 2) != stream_seed(1, 1, "D", 2)


def test_a_duplicate_sigterm_is_not_a_second_request() -> None:
    stop = StopRequest(enabled=True)
    with stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # srun and torchrun's agent both forward SLURM's
        time.sleep(0.05)
        assert stop.reason == "SIGTERM" and stop.signals == ["SIGTERM"]
        os.kill(os.getpid(), signal.SIGINT)  # the second request (one stop, as a CI cancel)
        time.sleep(0.05)
        assert stop.signals == ["SIGTERM", "SIGINT"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the third aborts
            time.sleep(0.05)


def test_the_device_label_names_the_process_count(tmp_path: Path) -> None:
    info = RunInfo(run_id="r", method="m", dataset="d", preset="paper", seed=0, recipe_hash="h", total_nimg=1,
                   device="NVIDIA H100", device_count=1)  # fmt: skip
    run = StoredRun(tmp_path, "complete", info=info)
    assert run.device_label == "NVIDIA H100"
    info.sessions = [Session(started_utc="", start_nimg=0, device="NVIDIA H100", device_count=8)]
    assert run.device_label == "8x NVIDIA H100"
    info.sessions.append(Session(started_utc="", start_nimg=5, device="NVIDIA H100", device_count=1))
    assert run.device_label == "8/1x NVIDIA H100" and run.processes == [8, 1]
