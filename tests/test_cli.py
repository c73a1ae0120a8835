"""The command line through Typer's runner, and user errors through the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench import __version__
from degan_bench.cli.app import app
from degan_bench.recipes.loader import resolve_recipe

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_version_and_help() -> None:
    assert invoke("--version").output.strip() == f"degan-bench {__version__}"
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "recipes", "data", "doctor", "eval"):
        assert command in result.output


def test_recipes_list_and_show() -> None:
    listing = invoke("recipes", "list", "stylegan2")
    assert listing.exit_code == 0, listing.output
    assert "obama-100" in listing.output and "fid5k_train" in listing.output
    shown = invoke(
        "recipes", "show", "stylegan2", "obama-100", "--preset", "smoke", "--set", "training.kimg=2"
    )
    assert shown.exit_code == 0, shown.output
    expected = resolve_recipe("stylegan2", "obama-100", "smoke", ["training.kimg=2"])
    assert f"hash={expected.hash}" in shown.output
    body = yaml.safe_load(shown.output.split("\n", 1)[1])
    assert body["training"]["kimg"] == 2.0 and body["preset"] == "smoke"


def test_run_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = invoke("--runs-dir", str(tmp_path), "run", "stylegan2", "obama-100", "--seed", "7", "--dry-run")
    assert result.exit_code == 0, result.output
    resolved = resolve_recipe("stylegan2", "obama-100")
    assert f"stylegan2-obama-100-paper-s7-{resolved.short_hash[:8]}" in result.output
    assert "300 kimg at 256px, batch 16" in result.output
    assert list(tmp_path.iterdir()) == []


def test_run_dry_run_names_the_backbone(tmp_path: Path) -> None:
    default = invoke("--runs-dir", str(tmp_path), "run", "diffaugment", "cifar10-10pct", "--dry-run")
    assert default.exit_code == 0, default.output
    assert "backbone: biggan (hinge)" in default.output and "25000 kimg at 32px, batch 50" in default.output
    other = invoke(
        "--runs-dir",
        str(tmp_path),
        "run",
        "diffaugment",
        "cifar10-10pct",
        "--backbone",
        "stylegan2",
        "--dry-run",
    )
    assert other.exit_code == 0, other.output
    assert (
        "backbone: stylegan2 (ns_r1)" in other.output
        and "diffaugment-cifar10-10pct-stylegan2-paper-s0-" in (other.output)
    )
    listing = invoke("recipes", "list", "diffaugment")
    assert listing.exit_code == 0 and "biggan" in listing.output and "stylegan2" in listing.output
    assert list(tmp_path.iterdir()) == []


def test_doctor_reports_the_machine() -> None:
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    for item in ("torch", "data root", "runs dir", "prepared datasets", "metric weights"):
        assert item in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "stylegan", "obama-100"], "unknown method 'stylegan' -> did you mean 'stylegan2'?"),
        (["run", "stylegan2", "obama-1000"], "no recipe for stylegan2 x obama-1000"),
        (["run", "stylegan2", "obama-100", "--set", "training.kimg"], "expected KEY.PATH=VALUE"),
        (["run", "stylegan2", "obama-100", "--set", "loss.r1_gamma=-1"], "below the minimum"),
        (["run", "stylegan2", "obama-100", "--preset", "tiny"], "unknown preset 'tiny'"),
        (
            ["recipes", "show", "stylegan2", "obama-100", "--set", "training.bacth=1"],
            "did you mean 'training.batch'",
        ),
        (
            ["run", "diffaugment", "cifar10-10pct", "--backbone", "sngan"],
            "available backbones for this cell: biggan, stylegan2 (--backbone)",
        ),
        (
            ["run", "biggan", "cifar10-10pct", "--set", "training.kimg=5"],
            "training.epochs and training.kimg are both given",
        ),
        (["run", "ada", "cifar10-10pct"], "no recipe for ada x cifar10-10pct"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "degan_bench", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in proc.stderr
