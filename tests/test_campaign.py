"""The campaign machinery on the CPU, fast: leases (one writer per run directory, takeover of stale
ones), the stop request (SIGINT then SIGTERM is one request, a third signal aborts), the plan (chains
never split by selection or shards, a CI matrix with jq alone, waves), the local queue packing 1- and
2-GPU jobs on 3 fake devices, SLURM scripts for a 4-GPU and a 2-node job, export + import + table,
exit codes and the CI preflight."""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from results_support import FIXTURE_TABLE, make_run, reported_row, write_recipes, write_reported
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli import app
from degan_bench.core.exitcodes import ExitCode
from degan_bench.core.lease import LEASE_FILE, LeaseHeld, LeaseRecord, acquire, live_lease, read_lease
from degan_bench.dispatch.deadline import Deadline
from degan_bench.dispatch.jobs import expand_jobs, override_gpus
from degan_bench.dispatch.local import JobResult, LocalQueue, check_fits, sweep_exit_code
from degan_bench.dispatch.plan import Selection, build_chains, effective_states, jobs_of, select
from degan_bench.dispatch.slurm import SlurmOptions, chain_script, sbatch_script
from degan_bench.errors import DeganError
from degan_bench.paths import recipes_dir
from degan_bench.results.tables import load_table
from degan_bench.training.loop import StopRequest

REPO = Path(__file__).resolve().parent.parent

# The lottery chain of test_lottery_sweep (IMP round 0 -> round 1 -> ticket) beside single jobs.
CHAIN_TABLE = {
    "title": "Lottery chain",
    "description": "a ticket and its IMP rounds",
    "backbone": "biggan",
    "protocols": ["fid10k_test"],
    "source": {"paper": "lottery"},
    "columns": [{"dataset": "cifar10-10pct", "label": "CIFAR-10 10%"}],
    "rows": [{"method": "lottery", "label": "ticket"}],
    "set": ["lottery.round=1"],
    "default_preset": "smoke",
    "seeds": 2,
    "in_all": False,
}
SINGLES_TABLE = {
    "title": "Singles",
    "description": "independent jobs",
    "backbone": "stylegan2",
    "protocols": ["kid5k_train"],
    "source": {"paper": "diffaugment"},
    "columns": [{"dataset": "shapes-100", "label": "shapes"}],
    "rows": [{"method": "stylegan2", "label": "StyleGAN2"}],
    "default_preset": "smoke",
    "seeds": 4,
    "in_all": False,
}


@pytest.fixture
def real_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "recipes"
    shutil.copytree(recipes_dir(), root, ignore=shutil.ignore_patterns("tables"))
    (root / "tables").mkdir()
    for name, table in (("chain", CHAIN_TABLE), ("singles", SINGLES_TABLE)):
        (root / "tables" / f"{name}.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(root))
    return root


# -- leases --------------------------------------------------------------------------------------
def _foreign_lease(run_dir: Path, *, heartbeat_age: float, ttl: float = 600.0, host: str = "other-host",
                   pid: int = 4242, owner: str = "") -> None:  # fmt: skip
    now = time.time()
    record = LeaseRecord(token="x" * 32, host=host, pid=pid, started=now - heartbeat_age - 60,
                         heartbeat=now - heartbeat_age, ttl=ttl, owner=owner)  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LEASE_FILE).write_text(json.dumps(record.to_json()))


def test_a_live_lease_refuses_a_second_writer_in_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _foreign_lease(run_dir, heartbeat_age=5)
    with pytest.raises(LeaseHeld) as err:
        acquire(run_dir, owner="")
    message = str(err.value)
    assert "\n" not in message and "other-host" in message and "pid 4242" in message and "since" in message
    assert err.value.exit_code == ExitCode.NOTHING_TO_DO
    assert live_lease(run_dir) is not None and read_lease(run_dir).host == "other-host"  # untouched


@pytest.mark.parametrize(
    "kind",
    ["expired", "dead process on this host", "same owner (a requeued SLURM job)"],
)
def test_a_stale_lease_is_taken_over_with_one_log_line(tmp_path: Path, kind: str) -> None:
    run_dir = tmp_path / "run"
    if kind == "expired":
        _foreign_lease(run_dir, heartbeat_age=700, ttl=600)
    elif kind.startswith("dead"):
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        _foreign_lease(run_dir, heartbeat_age=1, host=platform.node(), pid=dead.pid)
        record = json.loads((run_dir / LEASE_FILE).read_text())
        record["pid_ns"] = (
            str(os.stat("/proc/self/ns/pid").st_ino) if Path("/proc/self/ns/pid").exists() else ""
        )
        (run_dir / LEASE_FILE).write_text(json.dumps(record))
    else:
        _foreign_lease(run_dir, heartbeat_age=1, owner="slurm:77_3")
    lines: list[str] = []
    lease = acquire(run_dir, owner="slurm:77_3" if kind.startswith("same") else "", log=lines.append)
    assert len(lines) == 1 and "taking over the lease of host" in lines[0]
    assert read_lease(run_dir).token == lease.record.token and read_lease(run_dir).pid == os.getpid()
    lease.release()
    assert not (run_dir / LEASE_FILE).exists()


def test_the_heartbeat_thread_renews_and_a_takeover_is_noticed(tmp_path: Path) -> None:
    lease = acquire(tmp_path / "run", ttl=30, owner="")
    first = read_lease(tmp_path / "run").heartbeat
    lost: list[str] = []
    lease.on_lost = lost.append
    lease.start_heartbeat(interval=0.05)
    deadline = time.time() + 30
    while read_lease(tmp_path / "run").heartbeat == first and time.time() < deadline:
        time.sleep(0.02)
    assert read_lease(tmp_path / "run").heartbeat > first
    _foreign_lease(tmp_path / "run", heartbeat_age=0)  # someone else took it (we "stalled")
    while not lost and time.time() < deadline:
        time.sleep(0.02)
    assert lost and "other-host" in lost[0] and lease.lost
    lease.release()
    assert read_lease(tmp_path / "run").host == "other-host"  # a lost lease is not removed


def test_two_processes_racing_for_one_lease_get_one_winner(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from degan_bench.core.lease import acquire, LeaseHeld\n"
        "time.sleep(max(float(sys.argv[2]) - time.time(), 0))\n"
        "try:\n    lease = acquire(sys.argv[1], owner='')\n"
        "    print('won'); time.sleep(1.0); lease.release()\n"
        "except LeaseHeld as err:\n    print('refused', err)\n"
    )
    start = str(time.time() + 1.5)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "run"), start],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert sorted(o.split()[0] for o in outputs) == ["refused", "won"], outputs


# -- signals -------------------------------------------------------------------------------------
def test_sigint_then_sigterm_is_one_stop_request_and_a_third_signal_aborts() -> None:
    with StopRequest(True) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.reason == "SIGINT" and stop.signals == ["SIGINT", "SIGTERM"]
        assert stop.description == "SIGINT+SIGTERM (one stop request)"
        with pytest.raises(KeyboardInterrupt, match="third signal"):
            os.kill(os.getpid(), signal.SIGINT)  # (a SIGTERM this soon would count as a duplicate)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


# -- plan ------------------------------------------------------------------------------------------
def _plan(tmp_path: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["plan", "chain", "singles", "--runs", str(tmp_path / "runs"), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plan_json_lists_jobs_and_whole_chains_and_shards_never_split_them(
    real_recipes: Path, tmp_path: Path
) -> None:
    plan = _plan(tmp_path)
    assert plan["summary"]["jobs"] == 2 * 3 + 4 and plan["summary"]["chains"] == 2 + 4
    chains = {c["id"]: c for c in plan["chains"]}
    jobs = {j["id"]: j for j in plan["jobs"]}
    lottery = [c for c in chains.values() if len(c["jobs"]) == 3]
    assert len(lottery) == 2
    for chain in lottery:
        find0, find1, ticket = (jobs[j] for j in chain["jobs"])
        assert chain["id"] == find0["id"] and ticket["depends_on"] == [find1["id"]]
        assert find1["depends_on"] == [find0["id"]] and find0["depends_on"] == []
    some = jobs[lottery[0]["jobs"][2]]
    assert some["command"][:2] == ["degan-bench", "run"] and "--resume" in some["command"]
    assert {"recipe_hash", "seed", "gpus", "nodes", "state", "estimate", "leased_by"} <= some.keys()
    assert all(j["state"] == "new" and j["gpus"] == 1 for j in jobs.values())
    # shards partition the chains, each chain whole in exactly one shard
    seen: list[str] = []
    for i in (1, 2, 3):
        shard = _plan(tmp_path, "--shard", f"{i}/3")
        for chain in shard["chains"]:
            assert chain["jobs"] == chains[chain["id"]]["jobs"]
        assert {j["id"] for j in shard["jobs"]} == {j for c in shard["chains"] for j in c["jobs"]}
        seen += [c["id"] for c in shard["chains"]]
    assert sorted(seen) == sorted(chains)
    # --chain keeps it whole; --job keeps that job alone; filters
    one = _plan(tmp_path, "--chain", lottery[1]["id"])
    assert [c["jobs"] for c in one["chains"]] == [lottery[1]["jobs"]]
    alone = _plan(tmp_path, "--job", lottery[1]["jobs"][2])
    assert [j["id"] for j in alone["jobs"]] == [lottery[1]["jobs"][2]]
    assert {j["method"] for j in _plan(tmp_path, "--method", "stylegan2")["jobs"]} == {"stylegan2"}
    assert _plan(tmp_path, "--dataset", "cifar10-10pct")["summary"]["jobs"] == 6
    bad = CliRunner().invoke(app, ["plan", "chain", "--runs", str(tmp_path / "runs"), "--chain", "nope"])
    assert isinstance(bad.exception, DeganError) and "no such chain" in str(bad.exception)


def test_the_ci_matrix_comes_from_the_plan_with_jq_alone_in_waves(real_recipes: Path, tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--wave-size", "4", "--max-gpus-per-job", "2")
    assert plan["summary"]["waves"] == [4, 2] and all(c["runner"] == "gpu-1" for c in plan["chains"])
    wave0 = [c["id"] for c in plan["chains"] if c["wave"] == 0]
    matrix = CliRunner().invoke(
        app,
        [
            "plan",
            "chain",
            "singles",
            "--runs",
            str(tmp_path / "runs"),
            "--wave-size",
            "4",
            "--format",
            "matrix",
        ],
    )
    assert [e["chain"] for e in json.loads(matrix.stdout)["include"]] == wave0
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq is not installed (apt-get install -y jq)")
    line = "{include: [.chains[] | select(.dispatch and .wave == 0) | {chain: .id, gpus, runner}]}"
    readme = (REPO / "README.md").read_text()
    assert line in readme  # the documented jq line is the one tested here
    done = subprocess.run(
        [jq, "-c", line], input=json.dumps(plan), capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == json.loads(matrix.stdout)


def test_runner_labels_route_by_gpu_count_and_gpu_overrides_keep_the_hash(
    real_recipes: Path, tmp_path: Path
) -> None:
    from degan_bench.dispatch.plan import DEFAULT_RUNNER_LABELS, Chain, runner_label

    jobs, _ = expand_jobs([load_table("singles")], tmp_path / "runs")
    hashes = [j.resolved.hash for j in jobs]
    override_gpus(jobs, gpus=3)
    assert [j.resolved.hash for j in jobs] == hashes and all(j.gpus == 3 for j in jobs)
    assert runner_label(Chain("c", jobs[:1]), DEFAULT_RUNNER_LABELS) == "gpu-4"
    command = jobs[0].command(python="python")
    assert command[command.index("--gpus") + 1] == "3"
    override_gpus(jobs, max_gpus=2)
    assert all(j.gpus == 2 for j in jobs)
    jobs[0].gpus, jobs[0].nodes = 16, 2
    assert runner_label(Chain("c", jobs[:1]), DEFAULT_RUNNER_LABELS) is None  # multi-node: SLURM, not CI
    with pytest.raises(DeganError, match="--max-gpus-per-job"):
        check_fits(jobs, ["0", "1"])


# -- the local queue packing by GPU count ---------------------------------------------------------
@dataclass
class FakeJob:
    """A job whose command is a fake launcher: it records its devices and start/end times."""

    name: str
    gpus: int
    marks: Path
    seconds: float = 0.4
    depends_on: list[Any] = field(default_factory=list)
    estimate_seconds: float | None = None
    state: str = "new"
    note: str = ""

    def command(self, **_: Any) -> list[str]:
        script = (
            "import json, os, sys, time\n"
            "start = time.time()\n"
            f"time.sleep({self.seconds})\n"
            f"rec = dict(name={self.name!r}, devices=os.environ['CUDA_VISIBLE_DEVICES'], start=start,"
            " end=time.time())\n"
            f"open({str(self.marks / (self.name + '.json'))!r}, 'w').write(json.dumps(rec))\n"
        )
        return [sys.executable, "-c", script]


def test_the_queue_packs_1_and_2_gpu_jobs_on_3_devices_without_oversubscription(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    a = FakeJob("a2", 2, marks)
    b = FakeJob("b1", 1, marks)
    c = FakeJob("c2", 2, marks, depends_on=[a])
    d = FakeJob("d1", 1, marks, depends_on=[b])
    e = FakeJob("e1", 1, marks)
    f = FakeJob("f2", 2, marks)
    jobs = [a, b, c, d, e, f]

    def refresh(job: FakeJob) -> None:
        job.state = "complete" if (marks / f"{job.name}.json").exists() else "failed"

    queue = LocalQueue(["0", "1", "2"], tmp_path / "logs", refresh=refresh)
    results = queue.run(jobs)  # type: ignore[arg-type]
    assert [r.outcome for r in results] == ["complete"] * 6
    records = {j.name: json.loads((marks / f"{j.name}.json").read_text()) for j in jobs}
    for job in jobs:
        devices = records[job.name]["devices"].split(",")
        assert len(devices) == job.gpus == len(set(devices)) and set(devices) <= {"0", "1", "2"}
        for dep in job.depends_on:  # dependencies respected
            assert records[dep.name]["end"] <= records[job.name]["start"]
    # no device ever runs two jobs at once
    for device in "012":
        spans = sorted((r["start"], r["end"]) for r in records.values() if device in r["devices"].split(","))
        assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans)), device


def test_a_waiting_big_job_is_not_starved_by_small_ones(tmp_path: Path) -> None:
    """A 2-GPU job becomes ready while a 1-GPU job runs: with unknown estimates nothing starts beside it
    (it waits for the devices to drain); with known ones a short job fills the gap if it ends in time."""

    def scenario(marks: Path, estimates: bool) -> list[str]:
        marks.mkdir()
        known = (lambda s: s) if estimates else (lambda s: None)
        long = FakeJob("long1", 1, marks, seconds=1.5, estimate_seconds=known(1.5))
        gate = FakeJob("gate1", 1, marks, seconds=0.05, estimate_seconds=known(0.05))
        big = FakeJob("big2", 2, marks, depends_on=[gate], estimate_seconds=known(0.4))
        smalls = [FakeJob(f"small{i}", 1, marks, seconds=0.2, estimate_seconds=known(0.2)) for i in range(2)]

        def refresh(job: FakeJob) -> None:
            job.state = "complete"

        events: list[str] = []
        queue = LocalQueue(["0", "1"], marks / "logs", refresh=refresh, on_event=events.append)
        queue.run([long, gate, big, *smalls])  # type: ignore[list-item]
        return [e.split()[1] for e in events if e.startswith("start ")]

    strict = scenario(tmp_path / "unknown", estimates=False)
    assert strict[:2] == ["long1", "gate1"] and strict[2] == "big2"  # no small job overtakes it
    backfilled = scenario(tmp_path / "known", estimates=True)
    assert backfilled[:2] == ["long1", "gate1"] and backfilled.index("big2") > backfilled.index("small0")


def test_a_ci_cancels_second_signal_is_the_same_stop_request_while_jobs_checkpoint(tmp_path: Path) -> None:
    """SIGINT, then SIGTERM 1 s later (a CI cancel): the job gets one SIGTERM and finishes its 1.5 s
    "checkpoint"; the second signal only says so; then stop signals are ignored until the process exits."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(1.5)  # a slow checkpoint\n"
        f"    open({str(marks / 'stopped')!r}, 'w').write('ok')\n"
        "    sys.exit(75)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"open({str(marks / 'ready')!r}, 'w').write('ok')\n"
        "time.sleep(60)\n"
    )
    job = FakeJob("slow", 1, marks)
    job.command = lambda **_: [sys.executable, "-c", script]  # type: ignore[method-assign]
    events: list[str] = []
    queue = LocalQueue(["0"], tmp_path / "logs", refresh=lambda j: None, on_event=events.append)

    def cancel_like_ci() -> None:  # once the job can take a signal: SIGINT, then SIGTERM 1 s later
        deadline = time.monotonic() + 60
        while not (marks / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    canceller = threading.Thread(target=cancel_like_ci, daemon=True)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with queue.signal_scope(until_exit_after_stop=True):
            canceller.start()
            (result,) = queue.run([job])  # type: ignore[list-item]
        assert result.outcome == "stopped" and result.returncode == 75
        assert (marks / "stopped").read_text() == "ok"  # the checkpoint was not abandoned
        assert any(e.startswith("SIGINT: no new jobs") for e in events), events
        assert any(e.startswith("SIGTERM: the same stop request") for e in events), events
        assert queue.stop_reason != "aborted"
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # the command only exits now
    finally:
        canceller.join(timeout=60)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- SLURM -----------------------------------------------------------------------------------------
def test_slurm_scripts_request_the_jobs_gpus_and_launch_torchrun_through_srun(
    real_recipes: Path, tmp_path: Path
) -> None:
    jobs, _ = expand_jobs([load_table("singles")], tmp_path / "runs")
    four, two_nodes = jobs[0], jobs[1]
    four.gpus, two_nodes.gpus, two_nodes.nodes = 4, 8, 2
    options = SlurmOptions(partition="gpu", cpus_per_gpu=6)
    array = sbatch_script([four], tmp_path / "logs", options, python="/opt/py", workdir=tmp_path)
    assert "#SBATCH --gpus-per-node=4" in array and "#SBATCH --nodes=1" in array
    assert "#SBATCH --ntasks-per-node=1" in array and "#SBATCH --cpus-per-task=24" in array
    assert "--nproc-per-node=$GPUS_PER_NODE" in array and "GPUS_PER_NODE=4" in array
    assert "srun --kill-on-bad-exit=1" in array and "--rdzv-endpoint=$head:$port" in array
    assert "--gpus" not in array.split("ARGS=(")[1]  # torchrun starts the processes, not `run --gpus`
    assert "scontrol requeue" in array and "#SBATCH --signal=B:USR1@120" in array
    driver = chain_script([two_nodes], tmp_path / "logs", options, python="/opt/py", workdir=tmp_path)
    assert "#SBATCH --nodes=2" in driver and "#SBATCH --gpus-per-node=4" in driver
    assert 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in driver
    assert "--nnodes=$SLURM_NNODES" in driver and "--rdzv-id=$SLURM_JOB_ID" in driver
    for name, text in (("array.sbatch", array), ("driver.sh", driver)):
        path = tmp_path / name
        path.write_text(text)
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
    with pytest.raises(DeganError, match="mix GPU shapes"):
        sbatch_script([four, jobs[2]], tmp_path, options, python="p", workdir=tmp_path)
    single = sbatch_script([jobs[2]], tmp_path / "logs", options, python="/opt/py", workdir=tmp_path)
    assert "#SBATCH --gpus-per-node=1" in single and "srun" not in single


# -- export / import / table ------------------------------------------------------------------------
def test_export_import_and_table_give_the_same_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from degan_bench.recipes.loader import resolve_recipe

    root = write_recipes(tmp_path / "recipes", {"fixture": FIXTURE_TABLE})
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(root))
    reported = write_reported(tmp_path / "reported.csv", [reported_row(value="80.00")])
    store = tmp_path / "store"
    for seed, value in enumerate((60.0, 62.0)):
        resolved = resolve_recipe("stylegan2", "obama-100", "paper")
        metric = {"protocol": "fid5k_train", "metric": "fid", "value": value, "status": "ok",
                  "checkpoint": "last", "kimg": 0.048, "cur_nimg": 48}  # fmt: skip
        run = make_run(store, f"run-s{seed}", resolved, seed, metrics=[metric])
        (run.checkpoint_dir).mkdir()
        (run.checkpoint_dir / "ckpt-0000000048.pt").write_bytes(b"x" * 1000)
    exported = tmp_path / "export"
    assert (
        CliRunner()
        .invoke(app, ["runs", "export", "--no-checkpoints", str(exported), "--runs", str(store)])
        .exit_code
        == 0
    )
    assert not list(exported.rglob("*.pt")) and (exported / "run-s0" / "run.json").exists()
    merged = tmp_path / "merged"
    result = CliRunner().invoke(app, ["runs", "import", str(exported), "--into", str(merged)])
    assert result.exit_code == 0 and "2 added" in result.output

    def page(runs: Path, out: Path) -> str:
        args = [
            "table",
            "fixture",
            "--runs",
            str(runs),
            "--out",
            str(out),
            "--reported",
            str(reported),
            "--no-plots",
        ]
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0, done.output
        return (out / "fixture.md").read_text()

    assert page(store, tmp_path / "a") == page(merged, tmp_path / "b")
    # importing again keeps what is there; a less complete copy never overwrites a more complete one
    again = CliRunner().invoke(app, ["runs", "import", str(store), "--into", str(merged)])
    assert "2 kept" in again.output
    other = tmp_path / "other"
    resolved = resolve_recipe("stylegan2", "obama-100", "paper")
    make_run(other, "run-s0", resolved, 0, status="stopped", cur_nimg=16)
    make_run(other, "run-s1", resolve_recipe("stylegan2", "panda-100", "paper"), 1)
    clash = CliRunner().invoke(app, ["runs", "import", str(other), "--into", str(merged)])
    assert (
        clash.exit_code == ExitCode.FAILED and "conflict run-s1" in clash.output and "1 kept" in clash.output
    )
    assert json.loads((merged / "run-s0" / "run.json").read_text())["status"] == "complete"


# -- exit codes, deadline, preflight ---------------------------------------------------------------
def test_sweep_exit_codes_follow_the_contract() -> None:
    @dataclass
    class J:
        state: str
        name: str = "j"

    def results(*outcomes: str) -> list[JobResult]:
        return [JobResult(J("new"), None, Path("x"), 0.0, "", outcome=o) for o in outcomes]  # type: ignore[arg-type]

    assert sweep_exit_code(results("complete"), [J("complete")]) == ExitCode.COMPLETE
    assert sweep_exit_code(results("stopped"), [J("incomplete")]) == ExitCode.PROGRESS
    assert sweep_exit_code(results("complete", "deferred"), [J("complete"), J("new")]) == ExitCode.PROGRESS
    assert sweep_exit_code(results("leased", "skipped"), [J("leased"), J("new")]) == ExitCode.NOTHING_TO_DO
    assert sweep_exit_code(results("deferred"), [J("new")]) == ExitCode.NOTHING_TO_DO
    assert sweep_exit_code(results("failed", "complete"), [J("failed"), J("complete")]) == ExitCode.FAILED
    assert sweep_exit_code([], [J("conflict")]) == ExitCode.FAILED
    codes = (ExitCode.COMPLETE, ExitCode.FAILED, ExitCode.USAGE, ExitCode.NOTHING_TO_DO, ExitCode.PROGRESS)
    assert codes == (0, 1, 2, 3, 75)
    readme = (REPO / "README.md").read_text()
    for code in ("`0`", "`1`", "`2`", "`3`", "`75`"):
        assert code in readme.split("### Exit codes")[1].split("###")[0]
    for command in ("run", "sweep"):
        assert "75  stopped cleanly with a checkpoint" in CliRunner().invoke(app, [command, "--help"]).output


def test_deadline_budget_and_start_rule() -> None:
    deadline = Deadline.from_minutes(10, now=0.0)
    assert deadline.reserve_s == 60 and deadline.min_start_s == 30
    assert deadline.budget_s(now=0.0) == 540 and deadline.can_start(object(), now=0.0)
    assert not deadline.can_start(object(), now=600 - 60 - 29)  # less than the start-up allowance left
    assert deadline.backstop_due(now=600 - 29) and not deadline.backstop_due(now=600 - 31)
    with pytest.raises(DeganError, match="leaves no time"):
        Deadline.from_minutes(1, reserve_minutes=1)


def test_a_run_refused_by_a_live_lease_exits_3_naming_the_holder(tmp_path: Path) -> None:
    from degan_bench.recipes.loader import resolve_recipe
    from degan_bench.training.runner import default_run_name

    out = tmp_path / "runs" / default_run_name(resolve_recipe("stylegan2", "shapes-100", "smoke"), 0)
    _foreign_lease(out, heartbeat_age=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "degan_bench", "run", "stylegan2", "shapes-100", "--preset", "smoke",
         "--resume", "auto", "--out", str(out), "--device", "cpu", "--no-eval"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == ExitCode.NOTHING_TO_DO, done.stderr
    assert "other-host pid 4242 since" in done.stderr and not (out / "run.json").exists()


def test_sweep_leaves_a_leased_job_alone_and_exits_3(real_recipes: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    jobs, _ = expand_jobs([load_table("singles")], runs, seeds=1)
    _foreign_lease(jobs[0].run_dir, heartbeat_age=1)
    args = ["sweep", "singles", "--seeds", "1", "--runs", str(runs), "--gpus", "cpu", "--no-table"]
    result = CliRunner().invoke(app, [*args, "--summary-json", str(tmp_path / "s.json")])
    assert result.exit_code == ExitCode.NOTHING_TO_DO, result.output
    assert "leased" in result.output and "other-host" in result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["exit_code"] == 3 and summary["outcomes"] == {}  # nothing was started
    status = CliRunner().invoke(app, ["sweep", "singles", "--seeds", "1", "--runs", str(runs), "--status"])
    assert "leased" in status.output and "other-host" in status.output


def test_doctor_ci_names_what_is_missing(real_recipes: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--ci", "singles", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == ExitCode.FAILED
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("doctor --ci: missing") and "GPU" in last and "weights" in last
    assert "ok store" in result.output and "dataset shapes-100@32: not prepared; generated" in result.output


def test_selection_keeps_chains_whole(real_recipes: Path, tmp_path: Path) -> None:
    jobs, _ = expand_jobs([load_table("chain")], tmp_path / "runs")
    chains = build_chains(jobs)
    states = effective_states(jobs)
    assert [len(c.jobs) for c in chains] == [3, 3]
    jobs[0].state = "failed"
    states = effective_states(jobs)
    assert [states[id(j)] for j in chains[0].jobs] == ["failed", "blocked", "blocked"]
    picked = select(chains, states, Selection(states=["new"]))
    assert [c.id for c in picked] == [chains[1].id] and jobs_of(picked) == chains[1].jobs


def test_the_nightly_check_fails_on_unfinished_runs_nan_and_regressions(tmp_path: Path, monkeypatch) -> None:
    from degan_bench.recipes.loader import resolve_recipe

    root = write_recipes(tmp_path / "recipes")
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(root))
    runs = tmp_path / "nightly"
    ticks = [
        {"tick": t, "kimg": 0.016 * t, "sec_per_kimg": s, "losses": {"G": 1.0}}
        for t, s in enumerate((9, 2, 2))
    ]
    metric = {"protocol": "fid5k_train", "value": 50.0, "status": "ok", "lower_is_better": True}
    make_run(runs, "good", resolve_recipe("stylegan2", "obama-100"), 0, stats=ticks, metrics=[metric])
    reference = tmp_path / "reference.json"
    first = CliRunner().invoke(
        app, ["runs", "check", "--runs", str(runs), "--write-reference", str(reference)]
    )
    assert first.exit_code == 0 and "no reference" in first.output  # the first night sets the reference
    assert (
        CliRunner()
        .invoke(app, ["runs", "check", "--runs", str(runs), "--reference", str(reference)])
        .exit_code
        == 0
    )
    slow = [{**t, "sec_per_kimg": 3.0} for t in ticks]
    worse = {**metric, "value": 70.0}
    bad_ticks = [*ticks, {"tick": 3, "kimg": 0.048, "sec_per_kimg": 2, "losses": {"G": float("nan")}}]
    make_run(runs, "slow", resolve_recipe("stylegan2", "panda-100"), 0, stats=slow, metrics=[worse])
    make_run(runs, "nan", resolve_recipe("stylegan2", "grumpy-cat-100"), 0, stats=bad_ticks, status="failed")
    data = json.loads(reference.read_text())
    key = next(iter(data["cells"]))
    for name in ("panda-100", "grumpy-cat-100"):
        data["cells"][key.replace("obama-100", name)] = data["cells"][key]
    reference.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["runs", "check", "--runs", str(runs), "--reference", str(reference)])
    assert result.exit_code == ExitCode.FAILED
    out = " ".join(result.output.split())
    assert "slow: 3 sec/kimg is slower than the reference 2" in out and "fid5k_train 70 is worse" in out
    assert "nan: failed" in out and "nan: non-finite loss G=nan" in out
