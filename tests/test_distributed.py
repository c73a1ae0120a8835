"""Two processes (torchrun, gloo on the CPU): a stop + resume equals a straight run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from degan_bench.core import checkpoint as ckpt

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2",
    "model.channel_base=128", "model.channel_max=16", "training.batch=8", "training.batch_gpu=2",
    "training.kimg=0.096", "training.kimg_per_tick=0.032", "training.snapshot_ticks=1",
    "loss.r1_interval=2", "loss.pl_weight=2", "loss.pl_interval=2",
]  # fmt: skip


def torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    sets = [arg for item in TINY for arg in ("--set", item)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "degan_bench", "run", "stylegan2", "shapes-100", "--preset", "smoke", "--device", "cpu",
           "--no-eval", "--out", str(out), *sets, *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_resume_exactly(tmp_path: Path) -> None:
    prepare = subprocess.run(
        [sys.executable, "-m", "degan_bench", "data", "prepare", "shapes-100", "--resolution", "16"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
    )  # fmt: skip
    assert prepare.returncode == 0, prepare.stderr
    straight = torchrun(tmp_path / "straight")
    assert straight.returncode == 0, straight.stdout + straight.stderr
    stopped = torchrun(tmp_path / "resumed", "--max-minutes", "0")  # stops after its first minibatch
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "--resume auto" in stopped.stdout
    resumed = torchrun(tmp_path / "resumed", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    assert a["cur_nimg"] == b["cur_nimg"] == 96
    assert len(a["rng"]) == 2  # one random state per process
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
