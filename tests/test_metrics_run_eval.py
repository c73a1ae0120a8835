"""Run-directory evaluation (pending -> filled) and the ``degan-bench eval`` command.

``degan_bench.core.checkpoint`` (list_checkpoints, load_generator) is replaced by a fake with the
same signatures, so the checkpoint format is not under test here.
"""

from __future__ import annotations

import json
import sys
import types
import urllib.error

import metrics_support
import pytest
from metrics_support import FakeData, TinyGenerator, install_fake_data, smooth_images, write_pngs

import degan_bench.cli.commands  # noqa: F401  (registers the commands before a test fakes the data package)
from degan_bench.cli import main
from degan_bench.core.rundir import RunDir, RunInfo
from degan_bench.errors import ResumeError, WeightsError
from degan_bench.metrics import weights as weights_mod
from degan_bench.metrics.evaluate import evaluate_generator
from degan_bench.metrics.run_eval import evaluate_run, open_pending

standins = metrics_support.standins
declared_standins = metrics_support.declared_standins
small_inception = metrics_support.small_inception
single_thread_torch = metrics_support.single_thread_torch
pytestmark = pytest.mark.usefixtures("single_thread_torch")

RES = 16
RECIPE = {
    "dataset": "tiny",
    "data": {"resolution": RES, "subset_rule": None},
    "evaluation": {"protocols": ["kid5k_train"]},
}


@pytest.fixture
def data(monkeypatch):
    return install_fake_data(
        monkeypatch, FakeData(splits={("tiny", "train"): smooth_images(10, RES, seed=2)})
    )


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run directory with two checkpoints and best.pt, and a fake checkpoint module."""
    run = RunDir(tmp_path / "run")
    run.write_info(
        RunInfo(
            run_id="r",
            method="diffaugment",
            dataset="tiny",
            preset="smoke",
            seed=0,
            recipe_hash="h",
            total_nimg=2000,
        )
    )
    run.write_recipe_dict(RECIPE)
    run.checkpoint_dir.mkdir()
    names = ["ckpt-0000001000.pt", "ckpt-0000002000.pt", "best.pt"]
    for name in names:
        (run.checkpoint_dir / name).write_bytes(b"")
    loaded = []

    def list_checkpoints(run_dir):
        found = {
            name: run.checkpoint_dir / name for name in names[:2] if (run.checkpoint_dir / name).exists()
        }
        return {**found, "last": run.checkpoint_dir / names[1], "best": run.checkpoint_dir / names[2]}

    def load_generator(path, device="cpu"):
        loaded.append(path.name)
        return TinyGenerator(size=RES, seed=names.index(path.name)), json.loads(json.dumps(RECIPE))

    module = types.ModuleType("degan_bench.core.checkpoint")
    module.list_checkpoints, module.load_generator = list_checkpoints, load_generator
    monkeypatch.setitem(sys.modules, "degan_bench.core.checkpoint", module)
    run.loaded = loaded
    return run


def offline(monkeypatch):
    def refuse(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", refuse)


def test_open_pending_follows_record_order():
    pending = {"status": "pending", "protocol": "fid5k_train", "checkpoint_file": "a.pt"}
    done = {"status": "ok", "protocol": "fid5k_train", "checkpoint_file": "a.pt"}
    other = {"status": "pending", "protocol": "fid5k_train", "checkpoint_file": "b.pt"}
    assert open_pending([pending, done]) == []
    assert open_pending([done, pending]) == [pending]
    assert open_pending([pending, other, done]) == [other]


def test_pending_record_stays_pending_while_weights_are_missing(run, data, monkeypatch):
    # training without weights: a pending record for the checkpoint it just wrote
    offline(monkeypatch)
    pending = evaluate_generator(
        TinyGenerator(size=RES),
        "kid5k_train",
        dataset="tiny",
        resolution=RES,
        n_gen=12,
        on_missing_weights="pending",
    )
    run.append_metric({**pending, "checkpoint": "last", "checkpoint_file": "ckpt-0000001000.pt", "kimg": 1.0})
    with pytest.raises(WeightsError, match=r"weights-inception-2015-12-05-6726825d\.pth"):
        evaluate_run(run.path, device="cpu")
    assert len(run.read_metrics()) == 1 and open_pending(run.read_metrics())


def test_eval_run_fills_pending_then_evaluates_requested(
    run, data, declared_standins, small_inception, monkeypatch
):
    pending = evaluate_generator(
        TinyGenerator(size=RES),
        "kid5k_train",
        dataset="tiny",
        resolution=RES,
        n_gen=12,
        on_missing_weights="pending",
        weights_path=run.path / "no-such-weights.pth",
    )
    assert pending["status"] == "pending"
    run.append_metric({**pending, "checkpoint": "last", "checkpoint_file": "ckpt-0000001000.pt", "kimg": 1.0})
    stamp = run.read_metrics()[0]["timestamp"]

    filled = evaluate_run(run.path, device="cpu")
    assert len(filled) == 1 and run.loaded == ["ckpt-0000001000.pt"]
    record = filled[0]
    assert record["status"] == "ok" and record["protocol"] == "kid12_train" and record["value"] is not None
    assert record["checkpoint_file"] == "ckpt-0000001000.pt" and record["kimg"] == 1.0
    assert record["fills_pending"] == stamp
    assert open_pending(run.read_metrics()) == []
    assert run.read_metrics()[-1]["value"] == record["value"]

    # nothing pending: the requested protocol on every checkpoint
    records = evaluate_run(run.path, protocols=["kid5k_train"], checkpoint="all", n_gen=12, device="cpu")
    assert [r["checkpoint"] for r in records] == ["ckpt-0000001000.pt", "ckpt-0000002000.pt", "best"]
    assert [r["kimg"] for r in records] == [1.0, 2.0, None]
    assert records[0]["value"] == record["value"]  # same checkpoint, protocol and seed: same number
    assert len(run.read_metrics()) == 5


def test_eval_run_reports_deleted_checkpoints_and_unknown_names(
    run, data, declared_standins, small_inception
):
    run.append_metric(
        {
            "status": "pending",
            "protocol": "kid12_train",
            "checkpoint_file": "ckpt-0000000500.pt",
            "protocol_record": _kid_record(12),
        }
    )
    notes = []
    assert evaluate_run(run.path, device="cpu", log=notes.append) == []
    assert any("ckpt-0000000500.pt no longer exists" in note for note in notes)
    with pytest.raises(ResumeError, match=r"checkpoint 'ckpt-9\.pt' not found"):
        evaluate_run(run.path, protocols=["kid5k_train"], checkpoint="ckpt-9.pt")


def _kid_record(n_gen):
    from degan_bench.metrics.protocols import get_protocol

    return get_protocol("kid5k_train").derive(n_gen=n_gen).record()


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["degan-bench", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_images_mode(tmp_path, data, declared_standins, small_inception, monkeypatch, capsys):
    folder = write_pngs(smooth_images(12, RES, seed=5), tmp_path / "samples")
    out = tmp_path / "results.jsonl"
    code, stdout, stderr = run_cli(
        monkeypatch,
        capsys,
        "eval",
        "--images",
        str(folder),
        "--ref",
        "tiny",
        "--protocol",
        "kid5k_train",
        "--protocol",
        "is10k",
        "--n-gen",
        "12",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["protocol"] for r in records] == ["kid12_train", "is12"]
    assert records[0]["source"] == f"images:{folder}"
    assert "kid12_train" in stdout and "non-standard" in stderr


def test_cli_errors_are_one_line(tmp_path, data, monkeypatch, capsys):
    offline(monkeypatch)
    folder = write_pngs(smooth_images(4, RES, seed=5), tmp_path / "samples")
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "eval",
        "--images",
        str(folder),
        "--ref",
        "tiny",
        "--n-gen",
        "4",
        "--device",
        "cpu",
    )
    assert code == 2 and "weights-inception-2015-12-05-6726825d.pth" in err and "Traceback" not in err
    code, _out, err = run_cli(monkeypatch, capsys, "eval")
    assert code == 2 and "either a RUN_DIR or --images" in err
    code, _out, err = run_cli(
        monkeypatch, capsys, "eval", "--images", str(folder), "--protocol", "fid50k-train"
    )
    assert code == 2 and "fid50k_full" in err


def test_cli_run_mode_fills_pending(run, data, declared_standins, small_inception, monkeypatch, capsys):
    run.append_metric(
        {
            "status": "pending",
            "protocol": "kid12_train",
            "checkpoint": "last",
            "checkpoint_file": "ckpt-0000002000.pt",
            "protocol_record": _kid_record(12),
        }
    )
    code, stdout, stderr = run_cli(monkeypatch, capsys, "eval", str(run.path), "--device", "cpu")
    assert code == 0, stderr
    assert "kid12_train" in stdout
    assert run.read_metrics()[-1]["status"] == "ok" and open_pending(run.read_metrics()) == []
