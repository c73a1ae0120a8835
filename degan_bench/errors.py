"""User-facing errors.

Every error a user can cause by bad input is a :class:`DeganError`: its message is one line that
names what is wrong and how to fix it. The CLI prints it without a traceback and exits with code 2.
"""

from __future__ import annotations


class DeganError(Exception):
    """An error caused by input the user can fix; ``str(err)`` is a one-line message naming the fix."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.problem = message
        self.fix = fix
        text = message if fix is None else f"{message} -> {fix}"
        super().__init__(" ".join(text.split()))


class RecipeError(DeganError):
    """A recipe file, preset or ``--set`` override is invalid."""


class DataError(DeganError):
    """A dataset is missing, corrupt, or does not match its checksum."""


class WeightsError(DeganError):
    """Feature-extractor weights are missing or do not match their sha256."""


class ResumeError(DeganError):
    """A run directory cannot be resumed as asked."""


class MethodError(DeganError):
    """A method name or its arguments are invalid."""
