"""``degan-bench data`` through Typer's CliRunner."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli.app import app
from degan_bench.data.store import dataset_dir
from degan_bench.errors import DataError

runner = CliRunner()


def test_prepare_path_verify_list():
    result = runner.invoke(app, ["data", "prepare", "shapes-100", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "1679dd0839dca867" in result.output

    result = runner.invoke(app, ["data", "path", "shapes-100"])
    assert result.exit_code == 0 and result.output.strip() == str(dataset_dir("shapes-100", 64))

    result = runner.invoke(app, ["data", "verify", "shapes-100"])
    assert result.exit_code == 0 and "ok shapes-100 train: 100 images" in result.output

    result = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "shapes-100" in line)
    assert "64: 1679dd0839dc" in row
    assert "cifar10-10pct" in result.output and "np_choice_seed0" in result.output


def test_prepare_from_folder_at_a_resolution(shared_data):
    source = shared_data / "100-shot-panda"
    result = runner.invoke(
        app, ["data", "prepare", "panda-100", "--from", str(source), "-r", "64", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (dataset_dir("panda-100", 64) / "train" / "images.npy").is_file()


def test_errors_are_data_errors_with_fixes():
    result = runner.invoke(app, ["data", "prepare", "shapes-10"])
    assert isinstance(result.exception, DataError)
    assert "did you mean 'shapes-100'" in str(result.exception)

    result = runner.invoke(app, ["data", "path", "obama-100", "--resolution", "64"])
    assert isinstance(result.exception, DataError)
    assert "degan-bench data prepare obama-100 --resolution 64" in str(result.exception)


@pytest.mark.parametrize("command", ["list", "prepare", "verify", "path"])
def test_help_texts(command):
    result = runner.invoke(app, ["data", command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Usage" in result.output
