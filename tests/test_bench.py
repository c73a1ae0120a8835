"""The bench suite on CPU: the bench trainer is the loop's training step, A/B interleaving, the budget,
the JSON report and its schema, the CLI end to end on tiny configs, and the official-code adapters'
discovery (the adapters themselves need a checkout of the official code, which is never vendored)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from tiny import TINY_MODEL, assert_same
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.bench.cases import CPU_SUITE, PAPER256, TINY, Suite, TrainCase, get_suite
from degan_bench.bench.official import BIGGAN_CIFAR, STYLEGAN2_ADA, CodeBase, find_code_bases
from degan_bench.bench.report import SCHEMA, SCHEMA_VERSION, format_table, validate_report
from degan_bench.bench.runner import SuiteRunner, compile_verdict
from degan_bench.bench.timing import Deadline, interleave, paired_ratios, spread
from degan_bench.bench.trainer import build_trainer, random_dataset
from degan_bench.cli import app
from degan_bench.errors import DeganError
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.training.loop import TrainingSetup, train
from degan_bench.training.runner import plan_run

CPU = torch.device("cpu")
FAST = ("stylegan2-paper256/paper", "biggan-cifar/paper")


def test_spread_is_median_and_inclusive_quartiles() -> None:
    s = spread([4.0, 1.0, 3.0, 2.0, 100.0])
    assert (s.median, s.q1, s.q3, s.n) == (3.0, 2.0, 4.0, 5)
    rates = s.scaled(12.0)  # seconds -> items per second: the quartiles swap
    assert rates.median == 4.0 and rates.q1 == 3.0 and rates.q3 == 6.0
    two = spread([1.0, 3.0])
    assert (two.q1, two.median, two.q3) == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError):
        spread([])


def test_interleave_alternates_contestants_and_pairs_rounds() -> None:
    order: list[str] = []

    def contestant(name: str, seconds: float):
        def rep() -> float:
            order.append(name)
            return seconds

        return rep

    samples = interleave({"ours": contestant("ours", 1.0), "official": contestant("official", 1.5)}, reps=4)
    assert order == ["ours", "official"] * 4
    assert paired_ratios(samples["official"], samples["ours"]) == [1.5] * 4


def test_interleave_stops_before_overrunning_the_deadline() -> None:
    deadline = Deadline(0.25)

    def slow() -> float:
        time.sleep(0.1)
        return 0.1

    samples = interleave({"a": slow}, reps=50, deadline=deadline)
    assert 1 <= len(samples["a"]) <= 3 and deadline.left() > -0.1


@pytest.mark.slow
def test_bench_trainer_is_the_training_loop_step(tmp_path: Path) -> None:
    """Same seed, same minibatches: the bench's objective and the loop end with identical weights."""
    overrides = [
        *TINY_MODEL,
        "training.batch_gpu=8",
        "loss.r1_interval=4",
        "loss.pl_weight=2",
        "loss.pl_interval=2",
        "training.kimg=0.032",
        "training.kimg_per_tick=1",
        "training.image_snapshot_ticks=1000",
        "training.snapshot_ticks=1000",
    ]
    resolved = resolve_recipe("stylegan2", "shapes-100", "smoke", overrides)
    dataset = random_dataset(resolved, count=24, seed=3)
    trainer = build_trainer(resolved, CPU, workdir=tmp_path / "bench", seed=0, dataset=dataset)
    assert trainer.cycle == 4  # lcm of the lazy intervals (path length 2, R1 4)
    trainer.run_cycle()
    assert trainer.cur_nimg == 32
    plan = plan_run(resolved, 0, out=tmp_path / "run")
    train(
        TrainingSetup(
            resolved=resolved,
            seed=0,
            run=plan.run,
            device=CPU,
            dataset=dataset,
            console=Console(quiet=True),
            evaluator=None,
            tensorboard=False,
            handle_signals=False,
        )
    )
    looped = torch.load(sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
    assert_same(trainer.G.state_dict(), looped["G"], "G")
    assert_same(trainer.D.state_dict(), looped["D"], "D")


def test_case_specs_resolve_in_both_suites() -> None:
    for suite in (get_suite("gpu"), get_suite("cpu")):
        for case in suite.cases:
            overrides = case.variant.overrides if isinstance(case, TrainCase) else ()
            resolved = case.spec.resolve(overrides)
            assert resolved.recipe.training.batch >= 1
    paper256 = PAPER256.resolve()
    assert (paper256.recipe.loss.r1_interval, paper256.recipe.loss.pl_interval) == (16, 4)
    assert paper256.recipe.training.batch == 64 and paper256.model.channel_base == 16384
    assert not paper256.recipe.performance.tf32 and paper256.recipe.performance.amp == "off"
    with pytest.raises(DeganError):
        get_suite("tpu")


def _tiny_suite(**changes: object) -> Suite:
    fields = {**CPU_SUITE.__dict__, "cases": CPU_SUITE.cases, **changes}
    return Suite(**fields)  # type: ignore[arg-type]


@pytest.mark.slow
def test_cpu_suite_report_matches_its_schema(tmp_path: Path) -> None:
    runner = SuiteRunner(
        CPU_SUITE,
        CPU,
        budget_minutes=2,
        reps=3,
        only=[*FAST, "sngan-cifar", "stylegan2-paper256/tf32"],
        log=lambda _m: None,
    )
    report = runner.run()
    assert validate_report(report) == []
    assert report["schema"] == SCHEMA and report["schema_version"] == SCHEMA_VERSION
    assert report["device"]["type"] == "cpu" and report["software"]["torch"] == torch.__version__
    cases = {c["id"]: c for c in report["cases"]}
    paper = cases["stylegan2-paper256/paper"]
    assert paper["status"] == "ok" and paper["cycle_minibatches"] == 16  # G, Greg/4, D, Dreg/16
    assert paper["phases"] == [["G", 1], ["Greg", 4], ["D", 1], ["Dreg", 16]]
    assert len(paper["seconds_per_rep"]) == paper["img_per_s"]["n"] == 3
    assert paper["reals_per_rep"] == 16 * 4 * paper["cycles_per_rep"]
    rate = paper["reals_per_rep"] / paper["img_per_s"]["median"]
    assert rate == pytest.approx(sorted(paper["seconds_per_rep"])[1], rel=1e-3)
    assert paper["sec_per_kimg"]["median"] == pytest.approx(1000 / paper["img_per_s"]["median"], rel=1e-3)
    assert cases["biggan-cifar/paper"]["cycle_minibatches"] == 1  # one iteration: 4 D steps + G
    assert cases["biggan-cifar/paper"]["reals_per_rep"] % (4 * 4) == 0
    assert cases["stylegan2-paper256/tf32"]["status"] == "skipped"
    assert "CUDA only" in cases["stylegan2-paper256/tf32"]["reason"]
    text = format_table(report)
    assert "stylegan2-paper256/paper" in text and "skipped" in text
    json.dumps(report)  # serializable as is
    broken = json.loads(json.dumps(report))
    broken["cases"][0]["img_per_s"]["q1"] = 1e9
    del broken["device"]["name"]
    problems = validate_report(broken)
    assert any("quartiles" in p for p in problems) and any("device.name" in p for p in problems)


def test_budget_skips_what_does_not_fit_and_says_so() -> None:
    suite = _tiny_suite(setup_prior_seconds=30.0)
    started = time.monotonic()
    report = SuiteRunner(suite, CPU, budget_minutes=0.05, reps=3, only=list(FAST), log=lambda _m: None).run()
    assert time.monotonic() - started < 10
    assert [c["status"] for c in report["cases"]] == ["skipped", "skipped"]
    assert all("does not fit the budget" in c["reason"] for c in report["cases"])
    assert validate_report(report) == []


def test_a_running_case_stops_adding_repetitions_at_the_deadline() -> None:
    report = SuiteRunner(
        CPU_SUITE, CPU, budget_minutes=0.05, reps=1000, only=["biggan-cifar"], log=lambda _m: None
    ).run()
    (case,) = report["cases"]
    assert case["status"] == "ok" and 1 <= case["img_per_s"]["n"] < 1000
    assert report["budget"]["used_seconds"] < 3 + 10  # the budget plus one repetition and set-up


class FakeOfficial:
    """An "official" step that trains our own tiny objective, half as fast (sleeps as long again)."""

    def __init__(self, resolved, device, tmp: Path, events: list[str]) -> None:
        self.trainer = build_trainer(resolved, device, workdir=tmp, seed=1)
        self.cycle, self.reals_per_minibatch = (
            self.trainer.cycle,
            self.trainer.objective.reals_per_minibatch(),
        )
        self.label, self.info, self.events = "fake official", {"code": "fake"}, events

    @property
    def reals_per_cycle(self) -> int:
        return self.trainer.reals_per_cycle

    def backends(self) -> None:
        pass

    def warmup(self, minibatches: int) -> None:
        for _ in range(minibatches):
            self.trainer.minibatch()

    def run_cycle(self) -> int:
        self.events.append("official")
        start = time.perf_counter()
        consumed = sum(self.trainer.minibatch() for _ in range(self.cycle))
        time.sleep(time.perf_counter() - start)
        return consumed


def test_official_ab_is_interleaved_and_reports_ratios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    def build(self, name, resolved, options):
        return FakeOfficial(resolved, self.device, tmp_path / name, events)

    monkeypatch.setattr(SuiteRunner, "_build_official", build)
    from degan_bench.bench import trainer as trainer_mod

    original = trainer_mod.BenchTrainer.run_cycle

    def tracked(self):
        events.append("ours")
        return original(self)

    monkeypatch.setattr(trainer_mod.BenchTrainer, "run_cycle", tracked)
    codebase = CodeBase(BIGGAN_CIFAR, tmp_path)
    runner = SuiteRunner(
        CPU_SUITE,
        CPU,
        budget_minutes=2,
        reps=4,
        official={BIGGAN_CIFAR: codebase},
        only=["biggan-cifar"],
        log=lambda _m: None,
    )
    report = runner.run()
    assert validate_report(report) == []
    (case,) = report["cases"]
    (official,) = case["official"]
    assert official["label"] == "fake official" and official["info"] == {"code": "fake"}
    n = case["img_per_s"]["n"]
    assert n == len(official["seconds_per_rep"]) == official["speedup_of_ours"]["n"] == 4
    # A/B/A/B: each round is one repetition of ours, then one of the official step
    per_rep = case["cycles_per_rep"]
    assert events == (["ours"] * per_rep + ["official"] * per_rep) * n
    assert official["speedup_of_ours"]["median"] > 1.2  # the fake sleeps as long as it trains (~2x)
    assert "vs fake official" in format_table(report)


def test_compile_verdict_needs_a_range_clear_of_one() -> None:
    def case(n: int, low: float, high: float, median: float) -> dict:
        return {"img_per_s": {"n": n}, "vs_paper": {"low": low, "high": high, "median": median}}

    paper = {"img_per_s": {"n": 5}}
    assert (
        compile_verdict(
            {"stylegan2-paper256/paper": paper, "stylegan2-paper256/compile": case(5, 1.1, 1.3, 1.2)}
        )["ship"]
        == "compile"
    )
    assert (
        compile_verdict(
            {"stylegan2-paper256/paper": paper, "stylegan2-paper256/compile": case(5, 0.9, 1.2, 1.05)}
        )["ship"]
        == "undecided"
    )
    assert (
        compile_verdict(
            {"stylegan2-paper256/paper": paper, "stylegan2-paper256/compile": case(5, 0.7, 0.9, 0.8)}
        )["ship"]
        == "eager"
    )
    assert (
        compile_verdict(
            {"stylegan2-paper256/paper": paper, "stylegan2-paper256/compile": case(1, 1.1, 1.3, 1.2)}
        )["ship"]
        is None
    )


def test_official_code_bases_are_found_by_their_entry_points(tmp_path: Path) -> None:
    sg2 = tmp_path / "both" / "stylegan2-ada-pytorch"
    (sg2 / "training").mkdir(parents=True)
    (sg2 / "torch_utils").mkdir()
    (sg2 / "training" / "loss.py").write_text("")
    biggan = tmp_path / "both" / "data-efficient-gans" / "DiffAugment-biggan-cifar"
    biggan.mkdir(parents=True)
    for name in ("train_fns.py", "BigGAN.py", "utils.py"):
        (biggan / name).write_text("")
    found = find_code_bases([tmp_path / "both"])
    assert found[STYLEGAN2_ADA].root == sg2.resolve() and found[BIGGAN_CIFAR].root == biggan.resolve()
    assert "utils" in found[BIGGAN_CIFAR].top_level and "training" in found[STYLEGAN2_ADA].top_level
    with pytest.raises(DeganError, match="neither"):
        find_code_bases(
            [tmp_path / "both" / "data-efficient-gans" / "DiffAugment-biggan-cifar" / ".." / ".." / ".."]
        )
    with pytest.raises(DeganError, match="no such directory"):
        find_code_bases([tmp_path / "missing"])


def test_code_base_modules_live_in_sys_modules_only_while_active(tmp_path: Path) -> None:
    import sys

    for name, value in (("one", 1), ("two", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "utils.py").write_text(f"VALUE = {value}\n")
    first, second = CodeBase("one", tmp_path / "one"), CodeBase("two", tmp_path / "two")
    outside = sys.modules.get("utils")
    with first.active():
        import utils

        assert utils.VALUE == 1
    with second.active():
        import utils

        assert utils.VALUE == 2
    with first.active():
        assert sys.modules["utils"].VALUE == 1  # the first code base's module object is kept
    assert sys.modules.get("utils") is outside


def test_cli_cpu_suite_writes_the_json_and_refuses_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--suite",
            "cpu",
            "--cases",
            "biggan-cifar,sngan-cifar",
            "--reps",
            "3",
            "--budget-minutes",
            "1",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert validate_report(report) == [] and [c["status"] for c in report["cases"]] == ["ok", "ok"]
    assert "biggan-cifar/paper" in result.output and str(out) in result.output

    def refused(args: list[str], words: str) -> None:
        result = CliRunner().invoke(app, ["bench", *args])
        assert isinstance(result.exception, DeganError) and words in str(result.exception), result.output

    refused(["--suite", "cpu", "--cases", "nope"], "--cases nope: unknown")
    refused(["--suite", "tpu"], "--suite 'tpu' is unknown")
    refused(["--suite", "cpu", "--official", str(tmp_path / "nothing")], "no such directory")
    if not torch.cuda.is_available():
        refused(["--suite", "gpu"], "no CUDA device")


def test_tiny_configs_cover_every_cpu_case() -> None:
    assert set(TINY) == {"stylegan2", "biggan", "sngan"}
    for case in CPU_SUITE.cases:
        resolved = case.spec.resolve()
        assert any(o in case.spec.overrides for o in TINY[resolved.model.arch]), case.id
        assert resolved.recipe.data.resolution <= 32
