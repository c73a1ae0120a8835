"""Lottery chains through `degan-bench sweep`: a ticket cell expands into its IMP rounds (dependencies
first, hashes that the method's own chain lookup finds), the local queue runs them in order and skips
what a failed dependency blocks, a second sweep skips the complete chain, and the SLURM backend emits
one sbatch per link with --dependency=afterok."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli import app
from degan_bench.dispatch.jobs import expand_jobs
from degan_bench.dispatch.local import LocalQueue
from degan_bench.dispatch.slurm import SlurmOptions, chain_script
from degan_bench.methods.lottery import ARTIFACTS, MASK_FILE
from degan_bench.paths import recipes_dir
from degan_bench.results.tables import load_table

# The StudioGAN BigGAN smoke preset shrunk further: 4 G steps of 5 D steps x 5 reals per run.
TINY = ["model.g_ch=4", "model.d_ch=4", "training.batch=5", "training.kimg=0.1",
        "training.kimg_per_tick=0.05", "training.ema_start_step=2", "training.grid_size=[10,1]"]  # fmt: skip
CHAIN_TABLE = {
    "title": "Lottery chain",
    "description": "the round-1 ticket of cifar10-10pct and its two IMP rounds",
    "backbone": "biggan",
    "protocols": ["fid10k_test"],
    "source": {"paper": "lottery"},
    "columns": [{"dataset": "cifar10-10pct", "label": "CIFAR-10 10%"}],
    "rows": [{"method": "lottery", "label": "ticket"}],
    "set": [*TINY, "lottery.round=1"],
    "default_preset": "smoke",
    "seeds": 1,
    "in_all": False,
}


@pytest.fixture
def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "recipes"
    shutil.copytree(recipes_dir(), root, ignore=shutil.ignore_patterns("tables"))
    (root / "tables").mkdir()
    (root / "tables" / "chain.yaml").write_text(yaml.safe_dump(CHAIN_TABLE, sort_keys=False))
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(root))
    return root


def test_a_ticket_cell_expands_into_its_imp_rounds(recipes: Path, tmp_path: Path) -> None:
    jobs, skipped = expand_jobs([load_table("chain")], tmp_path / "runs")
    assert not skipped
    find0, find1, ticket = jobs
    sections = [j.resolved.data["lottery"] for j in jobs]
    assert [(s["stage"], s["round"]) for s in sections] == [("find", 0), ("find", 1), ("train", 1)]
    assert sections[0]["policy"] == "none" and sections[2]["policy"] == "color,translation,cutout"
    assert ticket.depends_on == [find1] and find1.depends_on == [find0] and find0.depends_on == []
    assert all(j.tables == ["chain"] for j in jobs)
    # overrides the chain replaces are not repeated: one lottery.round per command line
    command = find0.command(python="python")
    assert [command[i + 1] for i, a in enumerate(command) if a == "--set"].count("lottery.round=0") == 1
    assert "lottery.round=1" not in command


@pytest.mark.slow
def test_two_round_pipeline_end_to_end_through_sweep(recipes: Path, tmp_path: Path, cifar: Path) -> None:
    runs = tmp_path / "runs"
    args = ["sweep", "chain", "--runs", str(runs), "--gpus", "cpu", "--no-eval", "--no-table"]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    jobs, _ = expand_jobs([load_table("chain")], runs)
    assert f"{jobs[2].name} [chain] after {jobs[1].name}" in dry.output.replace("\n", "")

    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "3 complete" in first.output
    started = [line.split()[1] for line in first.output.splitlines() if line.startswith("start ")]
    assert started == [j.name for j in jobs]  # round 0, round 1, then the ticket
    masks = [json.loads((runs / j.name / "run.json").read_text())["status"] for j in jobs]
    assert masks == ["complete"] * 3
    import torch

    m1 = torch.load(runs / jobs[1].name / ARTIFACTS / MASK_FILE, weights_only=True)
    ticket_mask = torch.load(runs / jobs[2].name / ARTIFACTS / MASK_FILE, weights_only=True)
    assert ticket_mask["source"] == jobs[1].name and m1["round"] == 1
    assert all(torch.equal(ticket_mask["G"][k], m1["G"][k]) for k in m1["G"])
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "3 complete" in again.output and "nothing to run" in again.output


@dataclass
class StubJob:
    name: str
    script: str
    depends_on: list[Any] = field(default_factory=list)
    state: str = "new"
    note: str = ""

    def command(self, **_: Any) -> list[str]:
        return [sys.executable, "-c", self.script]


def test_the_queue_waits_for_dependencies_and_skips_what_a_failure_blocks(tmp_path: Path) -> None:
    def refresh(job: StubJob) -> None:
        job.state = "complete" if "ok" in job.script else "failed"

    # round0 -> round1 (fails) -> ticket; an unrelated job listed first; a second chain that works
    r0 = StubJob("round0", "print('ok')")
    r1 = StubJob("round1", "raise SystemExit(2)", [r0])
    ticket = StubJob("ticket", "print('ok')", [r1])
    other = StubJob("other", "print('ok')", [r0])
    events: list[str] = []
    queue = LocalQueue(["0", "1"], tmp_path / "logs", refresh=refresh, on_event=events.append)  # type: ignore[arg-type]
    results = queue.run([r0, r1, ticket, other])  # type: ignore[list-item]
    assert [r.outcome for r in results] == ["complete", "failed", "skipped", "complete"]
    assert results[2].blocked_by.startswith("round1") and not (tmp_path / "logs" / "ticket.log").exists()
    starts = [e.split()[1] for e in events if e.startswith("start ")]
    # two slots, yet round1 and other never start before round0 is done
    assert starts[0] == "round0" and set(starts[1:]) == {"round1", "other"}
    assert events.index(next(e for e in events if e.startswith("complete round0"))) < events.index(
        next(e for e in events if e.startswith("start round1"))
    )
    # a dependency that is not part of the queue and not complete (a conflict) blocks at once
    conflict = StubJob("moved", "print('ok')", state="conflict", note="holds another recipe")
    (result,) = LocalQueue([None], tmp_path / "logs2", refresh=refresh).run([StubJob("x", "", [conflict])])  # type: ignore[list-item]
    assert result.outcome == "skipped" and "holds another recipe" in result.blocked_by


def test_slurm_chain_script_submits_each_round_after_the_previous(recipes: Path, tmp_path: Path) -> None:
    jobs, _ = expand_jobs([load_table("chain")], tmp_path / "runs")
    script = chain_script(jobs, tmp_path / "logs", SlurmOptions(partition="gpu"), python="python",
                          workdir=tmp_path)  # fmt: skip
    lines = script.splitlines()
    submits = [line for line in lines if "sbatch --parsable" in line]
    assert len(submits) == 3 and "--dependency" not in submits[0]
    assert "--dependency=afterok:$J0 --kill-on-invalid-dep=yes" in submits[1]
    assert "--dependency=afterok:$J1 --kill-on-invalid-dep=yes" in submits[2]
    assert (
        script.count("#SBATCH --partition=gpu") == 3 and script.count('scontrol requeue "$SLURM_JOB_ID"') == 3
    )
    for i, job in enumerate(jobs):  # each heredoc runs its own job's command
        body = script.split(f"J{i}=$(sbatch")[1].split("DEGAN_BENCH_JOB\n)")[0]
        assert str(job.run_dir) in body and f"lottery.round={job.resolved.data['lottery']['round']}" in body
    # a chain whose first round is already complete waits only on what it submits
    jobs[0].state = "complete"
    tail = chain_script(jobs[1:], tmp_path / "logs", SlurmOptions(), python="python", workdir=tmp_path)
    assert next(line for line in tail.splitlines() if "sbatch --parsable" in line).count("--dependency") == 0
    # the sweep command writes the driver (and no array) without submitting
    cli = CliRunner().invoke(app, ["sweep", "chain", "--backend", "slurm", "--runs", str(tmp_path / "runs")])
    assert cli.exit_code == 0, cli.output
    (driver,) = (tmp_path / "runs" / "sweep-logs").glob("*-chains.sh")
    assert not list((tmp_path / "runs" / "sweep-logs").glob("*.sbatch"))
    assert f"bash {driver}" in cli.output.replace("\n", "")
    syntax = subprocess.run(["bash", "-n", str(driver)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr


def test_rows_of_one_method_are_a_sparsity_axis_with_their_own_runs_and_numbers(tmp_path: Path) -> None:
    """lottery-cifar: six rows of the lottery recipe told apart by their row ``set``; each cell takes only
    its own recipe's runs (no sibling row's run as a variant) and its numbers by ``reported_method``."""
    from results_support import make_run

    from degan_bench.results.reported import load_reported
    from degan_bench.results.store import scan_runs
    from degan_bench.results.tables import build_table, resolve_cell

    table = load_table("lottery-cifar")
    rows = {row.label: row for row in table.rows}
    cells = {label: resolve_cell(table, "lottery", "cifar10-10pct", "paper", row_set=row.set) for label, row
             in rows.items()}  # fmt: skip
    hashes = {label: cell.resolved.hash for label, cell in cells.items() if cell.resolved}
    assert len(set(hashes.values())) == 6  # six distinct recipes of one method and dataset
    dense, ticket = cells["Dense BigGAN"].resolved, cells["Sparse BigGAN Tickets + DiffAug + AdvAug"].resolved
    assert dense.data["lottery"]["stage"] == "find" and dense.data["lottery"]["round"] == 0
    assert (
        ticket.data["lottery"]
        == resolve_cell(table, "lottery", "cifar10-10pct", "paper").resolved.data["lottery"]
    )
    runs = tmp_path / "runs"
    make_run(runs, "dense-run", dense, 0)
    make_run(runs, "ticket-run", ticket, 0)
    result = build_table(table, scan_runs([runs]), load_reported())
    c10 = result.cells[(result.cells["dataset"] == "cifar10-10pct")]
    assert not c10["variant"].any()  # neither run shows up as a variant of another row
    by_row = c10.set_index("row")
    assert "dense-run" in str(by_row.loc["Dense BigGAN", "run_ids"])
    assert "ticket-run" not in str(by_row.loc["Dense BigGAN", "run_ids"])
    assert "ticket-run" in str(by_row.loc["Sparse BigGAN Tickets + DiffAug + AdvAug", "run_ids"])
    reported = by_row["reported"].to_dict()
    assert reported["Dense BigGAN"] == 26.44 and reported["Sparse BigGAN Tickets + DiffAug"] == 16.74
    assert reported["Sparse BigGAN Tickets + DiffAug + AdvAug"] == 14.38
    assert by_row.loc["Dense BigGAN + DiffAug", "n"] == 0  # its recipe has no run here
