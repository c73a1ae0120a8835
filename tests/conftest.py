"""Shared fixtures. ``../shared/data`` holds real 100-shot images and a JPEG copy of CIFAR-10.

Tests that need it skip where it is absent (users' machines); CI sets DEGAN_BENCH_REQUIRE_SHARED=1,
which turns that skip into a failure so CI always runs them.
"""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per process: on 2 cores shared by pytest, subprocesses and data workers,
# OpenMP spin-waiting with 2 threads made small CPU models up to 10x slower than with 1.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DEGAN_BENCH_SHARED", REPO.parent / "shared"))


def _need_shared(path: Path) -> Path:
    if path.exists():
        return path
    message = f"{path} is absent (the shared reference data beside the checkout)"
    if os.environ.get("DEGAN_BENCH_REQUIRE_SHARED") == "1":
        pytest.fail(message + "; DEGAN_BENCH_REQUIRE_SHARED=1 makes this a failure")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skip (or fail in CI) where it is absent."""
    return _need_shared(SHARED / "data")


@pytest.fixture(scope="session")
def cifar10_10pct_root(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cifar10-10pct prepared once per session from ``../shared/data/cifar10-jpeg-q75.zip``."""
    from degan_bench.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("cifar-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEGAN_BENCH_DATA", str(root))
        prepare_dataset("cifar10-10pct", source=shared_data / "cifar10-jpeg-q75.zip", progress=False)
    return root


@pytest.fixture
def cifar(cifar10_10pct_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's prepared cifar10-10pct as this test's data root (tests only read it)."""
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(cifar10_10pct_root))
    return cifar10_10pct_root


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's real data root, runs dir and cache."""
    root = tmp_path_factory.mktemp("degan-home")
    monkeypatch.setenv("DEGAN_BENCH_DATA", str(root / "data"))
    monkeypatch.setenv("DEGAN_BENCH_RUNS", str(root / "runs"))
    monkeypatch.setenv("DEGAN_BENCH_CACHE", str(root / "cache"))
    monkeypatch.delenv("DEGAN_BENCH_INCEPTION_WEIGHTS", raising=False)
