"""The ``degan-bench`` command line (Typer + rich). Each command group lives in its own module."""

from __future__ import annotations

from degan_bench.cli.app import app, main

__all__ = ["app", "main"]
