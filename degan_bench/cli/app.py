"""Root Typer app: global options, error handling, and registration of the command groups."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from degan_bench import __version__
from degan_bench.errors import DeganError
from degan_bench.paths import DATA_ENV, RUNS_ENV

#: the width of tables when output goes to a pipe or file (terminals use their own width)
PIPED_WIDTH = 400


def make_console(*, stderr: bool = False) -> Console:
    """A console that prints whole lines when piped: off a terminal rich would wrap and crop at 80
    columns (``recipes show | less``, logs of ``run --dry-run``). ``COLUMNS`` still wins when set."""
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    return Console(stderr=stderr, width=PIPED_WIDTH, soft_wrap=True)


def print_yaml(text: str, target: Console | None = None) -> None:
    """YAML highlighted on a terminal (long lines wrap), verbatim when piped (nothing cut)."""
    from rich.syntax import Syntax

    target = target or console
    if target.is_terminal:
        target.print(Syntax(text, "yaml", background_color="default", word_wrap=True))
    else:
        target.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)


console = make_console()
err_console = make_console(stderr=True)

app = typer.Typer(
    name="degan-bench",
    help="Reproduce the results tables of data-efficient GAN papers (DiffAugment, ADA, InsGen, FakeCLR, "
    "DigGAN, lottery-ticket GANs) and compare reported with reproduced numbers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"degan-bench {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root",
            envvar=DATA_ENV,
            help="Where prepared datasets live (default ~/.cache/degan-bench/data).",
            show_default=False,
        ),
    ] = None,
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir",
            envvar=RUNS_ENV,
            help="Where run directories go (default ./runs).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Global options apply to every command."""
    if data_root is not None:
        os.environ[DATA_ENV] = str(data_root)
    if runs_dir is not None:
        os.environ[RUNS_ENV] = str(runs_dir)


def _register_commands() -> None:
    # Each module adds its commands to ``app``; importing is registering.
    from degan_bench.cli import commands  # noqa: F401


def main() -> None:
    """Console entry point: user errors print one line (no traceback) and exit with code 2."""
    _register_commands()
    try:
        app()  # standalone mode: click reports its own usage errors (exit code 2)
    except DeganError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(err.exit_code)
