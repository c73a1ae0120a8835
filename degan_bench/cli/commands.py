"""Registers every command group on the root app (one import per group)."""

from __future__ import annotations

from degan_bench.cli import bench, claims, data, doctor, eval, plan, recipes, run, runs, sweep, table  # noqa: F401
