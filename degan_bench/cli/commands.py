"""Registers every command group on the root app (one import per group)."""

from __future__ import annotations

import degan_bench.cli.eval  # noqa: F401  (degan-bench eval)
