"""Several processes (`run --gpus 2 --device cpu`: torchrun, gloo): the same numbers as one process with
the same chunks, a SIGTERM to the launcher that checkpoints like a single process, bit-exact resume, and
resume with another process count exact or refused."""

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
# 40 minibatches, so that a SIGTERM sent after the first one lands well before the end.
TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
    "model.channel_base=128", "model.channel_max=16", "training.batch=8", "training.batch_gpu=2",
    "training.kimg=0.32", "training.kimg_per_tick=0.064", "training.snapshot_ticks=1",
    "training.keep_checkpoints=100", "loss.r1_interval=2", "loss.pl_weight=2", "loss.pl_interval=2",
]  # fmt: skip
TOTAL_NIMG = 320
# Ticks end after minibatch 1, then every 8 (nimg 8, 72, 136, ...), each with a checkpoint. Runs that differ
# only in the order of float reductions are compared a few minibatches after they part: the GAN dynamics
# amplify rounding differences (40 minibatches later D's weights differ by about one Adam step).
TICK_NIMG = (8, 72, 136, 200, 264, 320)
# the tracked mean w (truncation only) follows each process's own chunks: rank 0's is saved
PER_PROCESS_BUFFERS = {"mapping.w_avg"}


def run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "stylegan2", "shapes-100", "--preset", "smoke", "--device", "cpu", "--no-eval",
            "--out", str(out), *[a for s in TINY for a in ("--set", s)], *extra]  # fmt: skip


def cli(out: Path, data: Path, *extra: str, **popen: Any) -> Any:
    """``degan-bench run`` in a subprocess (``popen``: start it without waiting)."""
    cmd = [sys.executable, "-m", "degan_bench", *run_args(out, *extra)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "300",
           "DEGAN_BENCH_DATA": str(data)}  # fmt: skip
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def last(run: Path) -> dict[str, Any]:
    return ckpt.load_checkpoint(ckpt.list_checkpoints(run)["last"])


def at(run: Path, nimg: int) -> dict[str, Any]:
    return ckpt.load_checkpoint(run / "checkpoints" / ckpt.checkpoint_name(nimg))


def assert_close_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], where: str) -> None:
    """Equal up to the order of float reductions (gradients summed over rounds vs over processes)."""
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        if name in PER_PROCESS_BUFFERS:
            continue
        scale = max(float(tensor.abs().max()), 1e-3)
        assert float((tensor - b[name]).abs().max()) <= 1e-3 * scale, f"{where}.{name}"


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A straight 2-process run and one stopped by a SIGTERM to the launcher, both through `run --gpus 2`."""
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
    launcher = cli(root / "stopped", data, "--gpus", "2", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                   text=True, start_new_session=True)  # fmt: skip
    stats = root / "stopped" / "stats.jsonl"
    deadline = time.time() + 240
    while not stats.exists() or not stats.read_text().strip():  # the first minibatch is done
        assert launcher.poll() is None and time.time() < deadline, launcher.communicate()[0]
        time.sleep(0.05)
    launcher.send_signal(signal.SIGTERM)
    output = launcher.communicate(timeout=240)[0]
    assert "--gpus 2 --resume auto" in output, output
    shutil.copytree(root / "stopped", root / "stopped-copy")
    return {"root": root, "data": data, "straight": root / "straight", "stopped": root / "stopped",
            "stopped_rc": launcher.returncode}  # fmt: skip


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_chunks(
    two: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(two["data"]))
    one = tmp_path / "one"
    execute_run(resolve_file(SHAPES, "smoke", TINY), seed=0, out=one, device="cpu", evaluate=False,
                handle_signals=False, tensorboard=False, stop_at_nimg=TICK_NIMG[1])  # fmt: skip
    a, b = at(one, TICK_NIMG[1]), at(two["straight"], TICK_NIMG[1])
    assert last(two["straight"])["cur_nimg"] == TOTAL_NIMG
    assert a["layout"] == {"processes": 1, "batch_gpu": 2, "rounds": 4}
    assert b["layout"] == {"processes": 2, "batch_gpu": 2, "rounds": 2}
    for key in ("G", "D", "G_ema"):
        assert_close_states(a[key], b[key], key)
    # one path-length mean per chunk, in chunk order, whichever process kept it
    means = torch.cat([state["pl_mean"] for state in b["objective"]])
    torch.testing.assert_close(a["objective"][0]["pl_mean"], means, rtol=1e-3, atol=1e-6)
    # the logged losses are means over all processes
    for x, y in zip(RunDir(one).read_stats(), RunDir(two["straight"]).read_stats()[:2], strict=True):
        assert x["losses"].keys() == y["losses"].keys()
        for name, value in x["losses"].items():
            assert value == pytest.approx(y["losses"][name], rel=1e-3, abs=1e-5), name
    info = RunDir(two["straight"]).read_info()
    assert info.device_count == 2 and info.sessions[-1].device_count == 2


@pytest.mark.slow
def test_sigterm_to_the_launcher_checkpoints_and_exits_like_one_process(
    two: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = RunDir(two["stopped"]).read_info()
    assert info.status == "stopped" and info.sessions[-1].end_reason == "SIGTERM"
    assert 0 < last(two["stopped"])["cur_nimg"] == info.cur_nimg < TOTAL_NIMG
    # the exit code is the one a single process gives for a clean stop (75 where `run` reports it)
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(two["data"]))
    _register_commands()
    single = CliRunner().invoke(app, run_args(tmp_path / "one", "--max-minutes", "0"))
    assert RunDir(tmp_path / "one").read_info().status == "stopped", single.output
    assert two["stopped_rc"] == single.exit_code


@pytest.mark.slow
def test_two_processes_stop_and_resume_bit_exactly(two: dict[str, Any]) -> None:
    resumed = cli(two["stopped"], two["data"], "--gpus", "2", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = last(two["straight"]), last(two["stopped"])
    assert a["cur_nimg"] == b["cur_nimg"] == TOTAL_NIMG and len(a["rng"]) == 2
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "objective", "sampler"):
        assert_same(a[key], b[key], key)
    losses = [[s["losses"] for s in RunDir(run).read_stats()] for run in (two["straight"], two["stopped"])]
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_resume_with_one_process_and_the_same_chunks_is_exact(
    two: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(two["data"]))
    run = two["root"] / "stopped-copy"
    stopped_at = last(run)["cur_nimg"]
    compare = min(n for n in TICK_NIMG if n > stopped_at)  # the first tick end after the stop
    result = execute_run(resolve_file(SHAPES, "smoke", TINY), seed=0, out=run, resume="auto", device="cpu",
                         evaluate=False, handle_signals=False, tensorboard=False,
                         stop_at_nimg=compare)  # fmt: skip
    assert result is not None and result.cur_nimg == compare
    assert "continued with 1 process a checkpoint written by 2: same chunks of 2 samples, exact" in (
        RunDir(run).log_path.read_text()
    )
    a, b = at(two["straight"], compare), at(run, compare)
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

    # chunk = batch / processes; 6 minibatches
    sets = [s for s in TINY if not s.startswith("training.batch_gpu")] + ["training.kimg=0.048"]
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
    assert [s.forced for s in RunDir(out).read_info().sessions] == [False, True]


def test_networks_that_advance_state_per_forward_are_named() -> None:
    """BigGAN (batch norm in G, spectral norm in G and D) depends on the rounds per process; StyleGAN2 not."""
    for method, dataset, expected in [
        ("biggan", "cifar10-10pct", ["batch-norm running statistics", "spectral-norm power iterations"]),
        ("stylegan2", "shapes-100", []),
    ]:
        resolved = resolve_recipe(method, dataset, "smoke")
        G, D = build_models(parse_model_config(resolved.data["model"]), resolved.recipe.data.resolution)
        assert forward_state_modules(G, D) == expected, method
