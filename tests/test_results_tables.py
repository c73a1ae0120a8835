"""Table building from a fixture run store with known numbers: aggregation, verdicts, flags, states,
the Markdown golden file, CSV/JSON output, plots and the ``table`` command."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from results_support import broken_run, make_run, metric_record, reported_row, write_recipes, write_reported
from typer.testing import CliRunner

import degan_bench.cli.commands  # noqa: F401  (registers the command groups)
from degan_bench.cli import app
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.results.render import to_csv, to_json, to_markdown
from degan_bench.results.reported import load_reported
from degan_bench.results.store import load_run, pick_record, scan_runs
from degan_bench.results.tables import BuildOptions, MetricTolerance, Tolerance, build_table, load_table

GOLDEN = Path(__file__).parent / "golden" / "results_fixture_table.md"
LAST = 48  # cur_nimg of a complete tiny run


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    recipes = write_recipes(tmp_path / "recipes")
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(recipes))
    runs = tmp_path / "runs"
    obama = resolve_recipe("stylegan2", "obama-100")
    variant = resolve_recipe("stylegan2", "obama-100", overrides=["training.kimg=0.064"])

    def last(value: float | None, **kw: Any) -> list[dict[str, Any]]:
        return [metric_record(value, nimg=LAST, **kw)]

    for seed, value in enumerate((78.0, 80.0, 82.0)):
        make_run(runs, f"obama-s{seed}", obama, seed, metrics=last(value))
    make_run(runs, "obama-s3-failed", obama, 3, status="failed", cur_nimg=16)
    make_run(
        runs,
        "obama-s4-stopped",
        obama,
        4,
        status="stopped",
        cur_nimg=32,
        metrics=[metric_record(70.0, nimg=32, checkpoint="ckpt-0000000032.pt")],
    )
    make_run(runs, "obama-s5-standin", obama, 5, metrics=last(10.0, standard=False))
    make_run(runs, "obama-s0-kimg64", variant, 0, metrics=[metric_record(50.0, nimg=64)])
    broken_run(runs, f"stylegan2-obama-100-paper-s9-{obama.short_hash[:8]}")
    make_run(runs, "grumpy-s0", resolve_recipe("stylegan2", "grumpy-cat-100"), 0, metrics=last(60.0))
    panda = resolve_recipe("stylegan2", "panda-100")
    for seed, (value, best) in enumerate(((40.0, 39.0), (42.0, 41.0))):
        selection = {"protocol": "fid5k_train", "split": "train", "value": best - 1, "eval_seed": 0}
        make_run(
            runs,
            f"panda-s{seed}",
            panda,
            seed,
            metrics=[
                metric_record(best - 1, nimg=32, checkpoint="ckpt-0000000032.pt"),
                metric_record(value, nimg=LAST),
                metric_record(best, nimg=32, checkpoint="best", selection=selection),
            ],
        )
    make_run(
        runs, "cat-s0", resolve_recipe("stylegan2", "animalface-cat"), 0, metrics=last(70.0), device="cpu"
    )
    make_run(runs, "dog-s0", resolve_recipe("stylegan2", "animalface-dog"), 0, metrics=last(None))
    reported = load_reported(write_reported(tmp_path / "reported.csv"))
    return {
        "runs": runs,
        "reported": reported,
        "table": load_table("fixture"),
        "variant": variant,
        "tmp": tmp_path,
        "reported_path": tmp_path / "reported.csv",
    }


def cell(result: Any, row: str, dataset: str, variant: bool = False) -> pd.Series:
    cells = result.cells
    match = cells[(cells["row"] == row) & (cells["dataset"] == dataset) & (cells["variant"] == variant)]
    assert len(match) == 1, match
    return match.iloc[0]


def build(store: dict[str, Any], **options: Any) -> Any:
    return build_table(store["table"], scan_runs([store["runs"]]), store["reported"], BuildOptions(**options))


def test_mean_std_delta_and_verdict_over_seeds(store: dict[str, Any]) -> None:
    obama = cell(build(store), "StyleGAN2", "obama-100")
    assert obama["n"] == 3 and obama["mean"] == pytest.approx(80.0) and obama["std"] == pytest.approx(2.0)
    assert obama["reported"] == 80.0 and obama["delta"] == pytest.approx(0.0) and obama["verdict"] == "within"
    # failed, stopped, stand-in and unreadable runs are counted and shown, never averaged
    assert (obama["n_failed"], obama["n_incomplete"], obama["n_standin"], obama["n_unreadable"]) == (
        1,
        1,
        1,
        1,
    )
    assert obama["gpu_hours"] == pytest.approx(
        6.0
    )  # every run of the recipe: 3 ok + failed + stopped + stand-in
    assert "1 run(s) with stand-in weights (10.00)" in obama["flags"]
    assert any("90.00 (Table 4, arXiv v1" in f for f in obama["flags"])  # the other reported version


def test_outside_tolerance_and_test_set_selection_flag(store: dict[str, Any]) -> None:
    panda = cell(build(store), "StyleGAN2", "panda-100")
    assert (
        panda["n"] == 2
        and panda["mean"] == pytest.approx(41.0)
        and panda["std"] == pytest.approx(math.sqrt(2))
    )
    assert panda["delta"] == pytest.approx(11.0) and panda["rel_delta"] == pytest.approx(11 / 30)
    # two seeds are too few for a t-interval: the FID band alone, 0.5 + 5% of 30 = 2 < 11
    assert panda["verdict"] == "outside (n=2)" and panda["band"] == pytest.approx(2.0)
    assert pd.isna(panda["ci_low"])
    assert {"selection_test", "aggregator"} <= set(panda["flag_keys"])
    loose = build(store, tolerance=Tolerance(metrics={"fid": MetricTolerance(relative=0.5, absolute=0.0)}))
    assert cell(loose, "StyleGAN2", "panda-100")["verdict"] == "within (n=2)"


def test_protocol_mismatch_is_flagged_and_not_compared(store: dict[str, Any]) -> None:
    grumpy = cell(build(store), "StyleGAN2", "grumpy-cat-100")
    assert grumpy["reported_protocol"] == "unknown" and grumpy["our_protocol"] == "fid5k_train"
    assert grumpy["verdict"] == "not comparable (protocol)"
    assert any("protocol unknown" in f for f in grumpy["flags"])


def test_cell_states_single_seed_pending_missing_and_reference(store: dict[str, Any]) -> None:
    result = build(store)
    assert cell(result, "StyleGAN2", "animalface-cat")["verdict"] == "no reported value"
    assert cell(result, "StyleGAN2", "animalface-dog")["verdict"] == "pending"
    assert cell(result, "StyleGAN2 + DiffAugment", "obama-100")["verdict"] == "no recipe yet"
    reference = cell(result, "TransferGAN", "obama-100")
    assert reference["reference_only"] and reference["reported"] == 48.73
    single = build(store, tolerance=Tolerance(metrics={"fid": MetricTolerance(relative=0.2, absolute=0.0)}))
    assert cell(single, "StyleGAN2", "grumpy-cat-100")["n"] == 1
    # n = 1 says so in the verdict
    os.remove(store["runs"] / "obama-s1" / "metrics.jsonl")
    os.remove(store["runs"] / "obama-s2" / "metrics.jsonl")
    one = cell(build(store), "StyleGAN2", "obama-100")
    assert one["n"] == 1 and one["verdict"] == "within (n=1)" and one["n_pending"] == 2


def test_runs_of_a_non_paper_preset_are_never_compared(store: dict[str, Any]) -> None:
    smoke = resolve_recipe("stylegan2", "obama-100", "smoke")
    make_run(store["runs"], "obama-smoke", smoke, 0, metrics=[metric_record(80.0, nimg=32)])
    obama = cell(build(store, preset="smoke"), "StyleGAN2", "obama-100")
    assert obama["n"] == 1 and obama["mean"] == 80.0 and obama["verdict"] == "not comparable (preset)"
    assert any("smoke preset" in f for f in obama["flags"])
    assert cell(build(store), "StyleGAN2", "obama-100")["n"] == 3  # the paper table ignores the smoke run


def test_other_recipe_hash_is_a_separate_variant(store: dict[str, Any]) -> None:
    variant = cell(build(store), "StyleGAN2", "obama-100", variant=True)
    assert variant["recipe_hash"] == store["variant"].hash
    assert (
        variant["n"] == 1 and variant["mean"] == 50.0 and variant["verdict"] == "other recipe: not compared"
    )


def test_records_of_different_protocol_fingerprints_are_not_averaged(store: dict[str, Any]) -> None:
    path = store["runs"] / "panda-s1" / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "protocol_fingerprint": "changed"}) + "\n" for r in records))
    panda = cell(build(store), "StyleGAN2", "panda-100")
    assert panda["n"] == 2 and pd.isna(panda["mean"])
    assert panda["verdict"] == "not comparable (mixed protocol fingerprints)"
    assert "⚠️" in to_markdown(build(store))


def test_best_checkpoint_and_selection_flag(store: dict[str, Any]) -> None:
    panda = cell(build(store, checkpoint="best"), "StyleGAN2", "panda-100")
    assert panda["mean"] == pytest.approx(40.0)  # the best records (39, 41), not last (40, 42)
    assert "ours: best checkpoint on train" in panda["flags"] and "selection_ours" in panda["flag_keys"]
    # a run without a best record (best was the last checkpoint) uses its last record, also flagged
    run = load_run(store["runs"] / "obama-s0")
    picked = pick_record(run, "fid5k_train", "best")
    assert picked.value == 78.0 and picked.selected_on_split == "train"


def test_a_standard_record_wins_over_a_newer_stand_in(store: dict[str, Any]) -> None:
    run_dir = store["runs"] / "grumpy-s0"
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(metric_record(5.0, nimg=LAST, standard=False)) + "\n")
    picked = pick_record(load_run(run_dir), "fid5k_train")
    assert picked.state == "ok" and picked.value == 60.0


def test_unreadable_runs_are_kept_with_a_reason(store: dict[str, Any]) -> None:
    broken_run(store["runs"], "garbage", run_json="{not json")
    runs = scan_runs([store["runs"], store["runs"]])  # a root given twice counts once
    unreadable = {r.path.name: r.problem for r in runs if r.status == "unreadable"}
    assert "cannot be read" in unreadable["garbage"]
    assert any("no run.json" in p for p in unreadable.values())
    assert len(runs) == len({r.path for r in runs})


def test_csv_and_json_outputs(store: dict[str, Any]) -> None:
    result = build(store)
    data = json.loads(to_json(result))
    obama = next(
        c
        for c in data["cells"]
        if c["dataset"] == "obama-100" and c["row"] == "StyleGAN2" and not c["variant"]
    )
    assert obama["n"] == 3 and obama["verdict"] == "within" and obama["std"] == pytest.approx(2.0)
    assert {r["status"] for r in data["runs"]} >= {"complete", "failed", "stopped", "unreadable"}
    import io

    frame = pd.read_csv(io.StringIO(to_csv(result)))  # the tidy frame: one row per cell and source
    assert set(frame["source"]) == {"paper", "ours"} and "verdict" in frame.columns
    obama = frame[(frame["dataset"] == "obama-100") & (frame["row"] == "StyleGAN2")].set_index("source")
    assert obama.loc["paper", "value"] == 80.0 and obama.loc["ours", "value"] == pytest.approx(80.0)
    assert obama.loc["ours", "n"] == 3 and "Table 4" in obama.loc["paper", "source_text"]


def test_plots_are_written(store: dict[str, Any]) -> None:
    from degan_bench.results.plots import plot_run

    run_dir = store["runs"] / "panda-s0"
    Image.new("RGB", (64, 32), (200, 30, 30)).save(run_dir / "fakes_000000.png")
    with (run_dir / "stats.jsonl").open("a") as f:
        for tick in range(3):
            losses = {"Loss/G/loss": 1.0 - tick / 10, "Loss/D/loss": 1.2}
            f.write(json.dumps({"tick": tick, "kimg": 0.016 * (tick + 1), "losses": losses}) + "\n")
    out = store["tmp"] / "plots"
    run_png = plot_run(load_run(run_dir), out / "run.png")
    assert run_png.stat().st_size > 5000
    with Image.open(run_png) as image:
        assert image.size[0] > 400


def test_table_command_writes_markdown_plots_and_json(store: dict[str, Any]) -> None:
    out = store["tmp"] / "leaderboards"
    common = [
        "fixture",
        "--runs",
        str(store["runs"]),
        "--reported",
        str(store["reported_path"]),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, ["table", *common])
    assert result.exit_code == 0, result.output
    markdown = (out / "fixture.md").read_text()
    assert "![who wins: fid5k_train](media/fixture-fid5k-train-paper-who-wins.svg)" in markdown
    assert "(media/runs/panda-s0.png)" in markdown
    assert "<svg" in (out / "media" / "fixture-fid5k-train-paper-who-wins.svg").read_text()
    assert (out / "media" / "runs" / "panda-s0.png").stat().st_size > 0
    assert "unreadable" in result.output
    result = CliRunner().invoke(app, ["table", *common, "--format", "latex"])
    assert result.exit_code == 0, result.output
    latex = (out / "fixture.tex").read_text()
    assert "\\begin{tabular}" in latex and "\\toprule" in latex and "\\color{ForestGreen}" in latex
    result = CliRunner().invoke(app, ["table", *common, "--format", "json", "--checkpoint", "best"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "fixture.json").read_text())["checkpoint"] == "best"
    bad = CliRunner().invoke(app, ["table", "fixtur", "--runs", str(store["runs"])])
    assert bad.exit_code != 0 and "did you mean 'fixture'" in str(bad.exception or bad.output)


def test_t_interval_over_three_seeds_decides_the_verdict(store: dict[str, Any]) -> None:
    """Obama: 78, 80, 82 over three seeds against a reported 84, with no band: the 95% t-interval
    (80 ± t(0.975, 2) * 2 / sqrt(3) = 80 ± 4.97) reaches 84, the 80% one (80 ± 2.18) does not."""
    reported = load_reported(write_reported(store["tmp"] / "r84.csv", [reported_row(value="84.00")]))
    none = Tolerance(metrics={"fid": MetricTolerance(relative=0.0, absolute=0.0)})

    def obama(tolerance: Tolerance) -> pd.Series:
        options = BuildOptions(tolerance=tolerance)
        return cell(
            build_table(store["table"], scan_runs([store["runs"]]), reported, options),
            "StyleGAN2",
            "obama-100",
        )

    wide = obama(none)
    assert wide["halfwidth"] == pytest.approx(4.9683, rel=1e-4) and wide["band"] == 0.0
    assert (wide["ci_low"], wide["ci_high"]) == (
        pytest.approx(75.0317, rel=1e-5),
        pytest.approx(84.9683, rel=1e-5),
    )
    assert wide["verdict"] == "within"
    assert obama(Tolerance(metrics=none.metrics, confidence=0.8))["verdict"] == "outside"


def add_grids(store: dict[str, Any]) -> None:
    """Two sample grids in panda-s0; the newer one (48) is blue."""
    run_dir = store["runs"] / "panda-s0"
    Image.new("RGB", (1024, 256), (200, 30, 30)).save(run_dir / "fakes_000016.png")
    Image.new("RGB", (1024, 256), (30, 30, 200)).save(run_dir / "fakes_000048.png")


def test_columns_with_runs_get_curves_and_a_sample_panel(store: dict[str, Any]) -> None:
    from degan_bench.results.render import write_leaderboards

    add_grids(store)
    out = store["tmp"] / "pages"
    runs = scan_runs([store["runs"]])
    write_leaderboards([build(store)], runs, out)
    markdown = (out / "fixture.md").read_text()
    curves = "media/fixture-panda-100-fid5k-train-paper-curves.svg"
    assert f"![Panda: curves]({curves})" in markdown
    svg = (out / curves).read_text()
    assert "paper 30.00" in svg and "tolerance" in svg and "mean over seeds" in svg  # reported band drawn
    panel = next(line for line in markdown.splitlines() if line.startswith("![Panda: samples]"))
    with Image.open(out / panel[panel.index("(") + 1 : -1]) as image:
        assert image.width >= 1000
    # the grumpy column's paper number is under another protocol: no paper line on its curves
    assert (
        "paper 50.00" not in (out / "media/fixture-grumpy-cat-100-fid5k-train-paper-curves.svg").read_text()
    )
    # a column without runs gets no pictures
    assert not list((out / "media").glob("fixture-animalface-dog-*")) or "dog-s0" in markdown


def test_html_page_links_each_picture_once(store: dict[str, Any]) -> None:
    import re

    add_grids(store)
    out = store["tmp"] / "html"
    args = ["table", "fixture", "--runs", str(store["runs"]), "--reported", str(store["reported_path"])]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--format", "html"])
    assert result.exit_code == 0, result.output
    page = (out / "fixture.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<style>") == 1 and "<script" not in page
    assert "base64" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources and len(sources) == len(set(sources)) and all((out / s).is_file() for s in sources)
    assert page.count("Protocols and legend") == 1 and page.count("within / ") == 1
    assert ' title="' in page and re.search(r'class="[^"]*r within"', page)  # tooltips and the verdict colour
