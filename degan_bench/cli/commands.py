"""Registers every command group on the root app (one import per group)."""

from __future__ import annotations
