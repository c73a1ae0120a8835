"""Where data, weights, runs and results live. One place, so every command agrees.

- data root: ``$DEGAN_BENCH_DATA``, default ``<user cache>/degan-bench/data``
- runs dir: ``$DEGAN_BENCH_RUNS``, default ``./runs``
- recipes: ``$DEGAN_BENCH_RECIPES``, default ``recipes/`` of the checkout
- cache (reference statistics, weights): ``$DEGAN_BENCH_CACHE``, default ``<user cache>/degan-bench``
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DEGAN_BENCH_DATA"
RUNS_ENV = "DEGAN_BENCH_RUNS"
CACHE_ENV = "DEGAN_BENCH_CACHE"
RECIPES_ENV = "DEGAN_BENCH_RECIPES"


def user_cache_dir() -> Path:
    """The per-user cache root: ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "degan-bench"


def cache_dir() -> Path:
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else user_cache_dir()


def data_root() -> Path:
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else cache_dir() / "data"


def runs_dir() -> Path:
    value = os.environ.get(RUNS_ENV)
    return Path(value).expanduser() if value else Path("runs")


def weights_dir() -> Path:
    return cache_dir() / "weights"


def repo_root() -> Path:
    """The checkout this package runs from (recipes/ and results/ live beside degan_bench/)."""
    return Path(__file__).resolve().parent.parent


def recipes_dir() -> Path:
    value = os.environ.get(RECIPES_ENV)
    return Path(value).expanduser() if value else repo_root() / "recipes"


def results_dir() -> Path:
    return repo_root() / "results"
