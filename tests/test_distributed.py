"""Several processes (`run --gpus 2 --device cpu`: torchrun, gloo): the same numbers as one process with
the same chunks, bit-exact stop + resume, resume with another process count exact or refused, and a
SIGTERM to the launcher that checkpoints like a single process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import assert_same
from typer.testing import CliRunner

from degan_bench.cli import app
from degan_bench.cli.app import _register_commands
from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.errors import ResumeError
from degan_bench.models import build_models, parse_model_config
from degan_bench.recipes.loader import resolve_file, resolve_recipe
from degan_bench.training.execute import execute_run
from degan_bench.training.state import forward_state_modules

REPO = Path(__file__).resolve().parent.parent
SHAPES = REPO / "recipes" / "stylegan2" / "shapes-100.yaml"
# batch 8 in chunks of 2: one process runs 4 rounds, two processes 2 rounds each; lazy R1 and path length.
TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
    "model.channel_base=128", "model.channel_max=16", "training.batch=8", "training.batch_gpu=2",
    "training.kimg=0.096", "training.kimg_per_tick=0.032", "training.snapshot_ticks=1",
    "loss.r1_interval=2", "loss.pl_weight=2", "loss.pl_interval=2",
]  # fmt: skip
# the tracked mean w (truncation only) follows each process's own chunks: rank 0's is saved
PER_PROCESS_BUFFERS = {"mapping.w_avg"}


def cli(out: Path, data: Path, *extra: str, sets: list[str] = TINY, **popen: Any) -> Any:
    """``degan-bench run`` in a subprocess (``popen``: start it without waiting)."""
    cmd = [sys.executable, "-m", "degan_bench", "run", "stylegan2", "shapes-100", "--preset", "smoke",
           "--device", "cpu", "--no-eval", "--out", str(out), *[a for s in sets for a in ("--set", s)],
           *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "300",
           "DEGAN_BENCH_DATA": str(data)}  # fmt: skip
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def last(run: Path) -> dict[str, Any]:
    return ckpt.load_checkpoint(ckpt.list_checkpoints(run)["last"])


def assert_close_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], where: str) -> None:
    """Equal up to the order of float reductions (gradients summed over rounds vs over processes)."""
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        if name in PER_PROCESS_BUFFERS:
            continue
        scale = max(float(tensor.abs().max()), 1e-3)
        assert float((tensor - b[name]).abs().max()) <= 1e-3 * scale, f"{where}.{name}"


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A straight 2-process run and one stopped after its first minibatch, both through `run --gpus 2`."""
    root = tmp_path_factory.mktemp("two-processes")
    data = root / "data"
    prepare = subprocess.run(
        [sys.executable, "-m", "degan_bench", "data", "prepare", "shapes-100", "--resolution", "16"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "DEGAN_BENCH_DATA": str(data)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert prepare.returncode == 0, prepare.stderr
    straight = cli(root / "straight", data, "--gpus", "2")
    assert straight.returncode == 0, straight.stdout + straight.stderr
    assert "2 processes x 2 x 2" in straight.stdout
    stopped = cli(root / "stopped", data, "--gpus", "2", "--max-minutes", "0")  # stops after 1 minibatch
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "--gpus 2 --resume auto" in stopped.stdout
    shutil.copytree(root / "stopped", root / "stopped-copy")
    return {"root": root, "data": data, "straight": root / "straight", "stopped": root / "stopped"}


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_chunks(
    two: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(two["data"]))
    one = tmp_path / "one"
    execute_run(resolve_file(SHAPES, "smoke", TINY), seed=0, out=one, device="cpu", evaluate=False,
                handle_signals=False, tensorboard=False)  # fmt: skip
    a, b = last(one), last(two["straight"])
    assert a["cur_nimg"] == b["cur_nimg"] == 96
    assert a["layout"] == {"processes": 1, "batch_gpu": 2, "rounds": 4}
    assert b["layout"] == {"processes": 2, "batch_gpu": 2, "rounds": 2}
    for key in ("G", "D", "G_ema"):
        assert_close_states(a[key], b[key], key)
    # one path-length mean per chunk, in chunk order, whichever process kept it
    means = torch.cat([state["pl_mean"] for state in b["objective"]])
    torch.testing.assert_close(a["objective"][0]["pl_mean"], means, rtol=1e-3, atol=1e-6)
    # the logged losses are means over all processes
    for x, y in zip(RunDir(one).read_stats(), RunDir(two["straight"]).read_stats(), strict=True):
        assert x["losses"].keys() == y["losses"].keys()
        for name, value in x["losses"].items():
            assert value == pytest.approx(y["losses"][name], rel=1e-3, abs=1e-5), name
    info = RunDir(two["straight"]).read_info()
    assert info.device_count == 2 and info.sessions[-1].device_count == 2


@pytest.mark.slow
def test_two_processes_stop_and_resume_bit_exactly(two: dict[str, Path]) -> None:
    resumed = cli(two["stopped"], two["data"], "--gpus", "2", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = last(two["straight"]), last(two["stopped"])
    assert a["cur_nimg"] == b["cur_nimg"] == 96 and len(a["rng"]) == 2
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "objective", "sampler"):
        assert_same(a[key], b[key], key)
    losses = [[s["losses"] for s in RunDir(run).read_stats()] for run in (two["straight"], two["stopped"])]
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_resume_with_one_process_and_the_same_chunks_is_exact(
    two: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(two["data"]))
    run = two["root"] / "stopped-copy"
    result = execute_run(resolve_file(SHAPES, "smoke", TINY), seed=0, out=run, resume="auto", device="cpu",
                         evaluate=False, handle_signals=False, tensorboard=False)  # fmt: skip
    assert result is not None and result.status == "complete"
    assert "continued with 1 process a checkpoint written by 2: same chunks of 2 samples, exact" in (
        RunDir(run).log_path.read_text()
    )
    a, b = last(two["straight"]), last(run)
    for key in ("G", "D", "G_ema"):
        assert_close_states(a[key], b[key], key)
    assert [s.device_count for s in RunDir(run).read_info().sessions] == [2, 1]


def fake_two_processes(path: Path, batch_gpu: int) -> None:
    """Rewrite a one-process checkpoint as if two processes had written it with chunks of ``batch_gpu``."""
    payload = ckpt.load_checkpoint(path)
    for key in ("rng", "objective", "tick_stats"):
        payload[key] = payload[key] * 2
    payload["layout"] = {"processes": 2, "batch_gpu": batch_gpu, "rounds": 1}
    payload.pop("format")
    torch.save({"format": ckpt.FORMAT_VERSION, **payload}, path)


def test_resume_with_other_chunks_is_refused_naming_the_count_and_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from degan_bench.data.prepare import ensure_prepared

    sets = [s for s in TINY if not s.startswith("training.batch_gpu")]  # chunk = batch / processes
    resolved = resolve_file(SHAPES, "smoke", sets)
    ensure_prepared("shapes-100", 16)
    out = tmp_path / "run"
    kwargs = {"seed": 0, "out": out, "device": "cpu", "evaluate": False, "handle_signals": False,
              "tensorboard": False}  # fmt: skip
    execute_run(resolved, stop_at_nimg=8, **kwargs)  # type: ignore[arg-type]
    fake_two_processes(ckpt.list_checkpoints(out)["last"], batch_gpu=4)
    with pytest.raises(ResumeError) as refused:
        execute_run(resolved, resume="auto", **kwargs)  # type: ignore[arg-type]
    message = str(refused.value)
    assert "trained with 2 processes, this run has 1" in message
    assert "chunk changes from 4 to 8 samples" in message and "--gpus 2" in message and "--force" in message
    assert len(message.splitlines()) == 1
    forced = execute_run(resolved, resume="auto", force=True, **kwargs)  # type: ignore[arg-type]
    assert forced is not None and forced.status == "complete"
    assert "FORCED: continued with 1 process a checkpoint written by 2" in RunDir(out).log_path.read_text()


def test_networks_that_advance_state_per_forward_are_named() -> None:
    """BigGAN (batch norm in G, spectral norm in G and D) depends on the rounds per process; StyleGAN2 not."""
    for method, dataset, expected in [
        ("biggan", "cifar10-10pct", ["batch-norm running statistics", "spectral-norm power iterations"]),
        ("stylegan2", "shapes-100", []),
    ]:
        resolved = resolve_recipe(method, dataset, "smoke")
        G, D = build_models(parse_model_config(resolved.data["model"]), resolved.recipe.data.resolution)
        assert forward_state_modules(G, D) == expected, method


@pytest.mark.slow
def test_sigterm_to_the_launcher_checkpoints_and_exits_like_one_process(
    two: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = [*TINY, "training.kimg=50", "training.snapshot_ticks=1000"]
    launcher = cli(tmp_path / "two", two["data"], "--gpus", "2", sets=long, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    stats = tmp_path / "two" / "stats.jsonl"
    deadline = time.time() + 240
    while not (stats.exists() and len(stats.read_text().splitlines()) >= 2):
        assert launcher.poll() is None and time.time() < deadline, launcher.stderr.read().decode()
        time.sleep(0.5)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=240) is not None
    info = RunDir(tmp_path / "two").read_info()
    assert info.status == "stopped" and info.sessions[-1].end_reason == "SIGTERM"
    assert last(tmp_path / "two")["cur_nimg"] == info.cur_nimg > 0
    # the exit code is the one a single process gives for a clean stop (75 where `run` reports it)
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(two["data"]))
    _register_commands()
    args = [
        "run",
        "stylegan2",
        "shapes-100",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--no-eval",
        "--out",
        str(tmp_path / "one"),
        *[a for s in long for a in ("--set", s)],
        "--max-minutes",
        "0",
    ]
    single = CliRunner().invoke(app, args)
    assert RunDir(tmp_path / "one").read_info().status == "stopped", single.output
    assert launcher.returncode == single.exit_code
