"""End to end: train a tiny run while the metric weights are missing (the metric stays pending and the
run is kept), then `degan-bench eval RUN` fills it in through the real checkpoint and metrics code."""

from __future__ import annotations

import json
from pathlib import Path

from metrics_support import declared_standins, small_inception, standins  # noqa: F401
from test_training_loop import tiny_recipe
from typer.testing import CliRunner

from degan_bench.cli.app import app
from degan_bench.core.rundir import RunDir
from degan_bench.training.execute import execute_run, load_evaluator


def test_pending_metric_is_filled_by_eval(
    tmp_path: Path,
    monkeypatch,
    declared_standins,  # noqa: F811 - pytest fixture imported from metrics_support
    small_inception,  # noqa: F811
) -> None:
    import degan_bench.cli.commands  # noqa: F401  (registers the eval command)

    out = tmp_path / "run"
    # No usable weights while training: $DEGAN_BENCH_INCEPTION_WEIGHTS names a folder without them.
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_WEIGHTS", str(tmp_path / "no-weights"))
    (tmp_path / "no-weights").mkdir()
    recipe = tiny_recipe("training.kimg=0.048", "evaluation.protocols=[kid64_train]")
    result = execute_run(
        recipe, seed=0, out=out, evaluator=load_evaluator(), handle_signals=False, tensorboard=False
    )
    assert result is not None and result.status == "complete"
    pending = RunDir(out).read_metrics()
    assert [r["status"] for r in pending] == ["pending"]
    assert pending[0]["checkpoint"] == "last" and "weights" in pending[0]["reason"]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"

    # The weights arrive (stand-ins, declared as non-standard): eval fills the pending record.
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_WEIGHTS", str(declared_standins.folder))
    outcome = CliRunner().invoke(app, ["eval", str(out), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    records = RunDir(out).read_metrics()
    assert [r["status"] for r in records] == ["pending", "ok"]
    filled = records[-1]
    assert (
        filled["protocol"] == "kid64_train" and filled["checkpoint"] == "last" and filled["purpose"] == "last"
    )
    assert filled["fills_pending"] == pending[0]["timestamp"]
    assert filled["standard_weights"] is False and isinstance(filled["value"], float)
    assert filled["n_gen"] == 64 and filled["kimg"] == 0.048
