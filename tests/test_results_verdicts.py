"""Pages from a synthetic run store that hits every verdict and run state (results_support.verdict_store):
golden Markdown / HTML / LaTeX, who wins and its significance rule, run states, links, pictures."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from results_support import (
    EXPECTED_VERDICTS,
    VERDICTS_TABLE,
    check_golden,
    verdict_store,
    write_recipes,
    write_reported,
)

from degan_bench.results import numbers
from degan_bench.results.ranking import rank_entries, rank_ours
from degan_bench.results.render import index_counts, write_leaderboards
from degan_bench.results.reported import load_reported
from degan_bench.results.store import scan_runs
from degan_bench.results.tables import BuildOptions, TableResult, Tolerance, build_table, load_table

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The verdict store, built once for the module (pages and pictures are written once per format)."""
    tmp = tmp_path_factory.mktemp("verdicts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEGAN_BENCH_RECIPES", str(write_recipes(tmp / "recipes")))
        patch.setenv("DEGAN_BENCH_DATA", str(tmp / "data"))
        data = verdict_store(tmp)
        data["stored"] = scan_runs([data["runs"]])
        data["tmp"] = tmp
        data["pages"] = {}
        yield data


@pytest.fixture
def verdicts(store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(store["tmp"] / "recipes"))
    return {**store, "tmp": tmp_path}


def page(data: dict[str, Any], fmt: str) -> tuple[Path, str]:
    """(output folder, page text) of the verdicts table in ``fmt``, written once per module."""
    if fmt not in data["pages"]:
        out = data["tmp"] / ("pages-latex" if fmt == "latex" else "pages")  # md and html share media/
        write_leaderboards([build(data)], data["stored"], out, fmt=fmt)
        suffix = {"md": "md", "html": "html", "latex": "tex"}[fmt]
        data["pages"][fmt] = (out, (out / f"verdicts.{suffix}").read_text(encoding="utf-8"))
    return data["pages"][fmt]


def build(data: dict[str, Any], **options: Any) -> TableResult:
    return build_table(
        load_table("verdicts"), data["stored"], load_reported(data["reported"]), BuildOptions(**options)
    )


def normalized(text: str, data: dict[str, Any]) -> str:
    return text.replace(data["variant"].hash[:8], "<variant>").replace(
        data["obama"].short_hash[:8], "<recipe>"
    )


def test_every_verdict_is_hit(verdicts: dict[str, Any]) -> None:
    cells = build(verdicts).cells
    main = cells[~cells["variant"]]
    got = {(c["row"], c["dataset"]): c["verdict"] for _, c in main.iterrows()}
    for key, verdict in EXPECTED_VERDICTS.items():
        assert got[key] == verdict, key
    # the --set run of neither row's recipe is a variant, never averaged in
    variant = cells[cells["variant"]]
    assert set(variant["verdict"]) == {"other recipe: not compared"}
    assert set(variant["recipe_hash"]) == {verdicts["variant"].hash}


@pytest.mark.parametrize("fmt", ["md", "html", "latex"])
def test_pages_match_golden_files(verdicts: dict[str, Any], fmt: str) -> None:
    _, text = page(verdicts, fmt)
    check_golden(f"results_verdicts.{'tex' if fmt == 'latex' else fmt}", normalized(text, verdicts))


def test_run_states_are_shown_as_failed_or_incomplete(verdicts: dict[str, Any]) -> None:
    result = build(verdicts)
    runs = result.runs.set_index("run_id")
    assert (
        runs.loc["grumpy64-s0", "status"] == "failed"
        and "diverged" in runs.loc["grumpy64-s0", "status_detail"]
    )
    assert runs.loc["panda64-s0", "status"] == "failed"
    assert "died before training" in runs.loc["panda64-s0", "status_detail"]
    assert runs.loc["cat64-s0", "status"] == "stopped"
    # a run that is starting right now is not failed
    fresh = build(verdicts, now=pd.Timestamp("2020-01-01T00:30:00").to_pydatetime())
    assert fresh.runs.set_index("run_id").loc["panda64-s0", "status"] == "running"
    text = page(verdicts, "md")[1]
    assert "💥 failed (1)" in text and "⏳ incomplete (1)" in text and "diverged (non-finite losses)" in text


def test_page_names_other_presets_and_the_protocol_of_ours(verdicts: dict[str, Any]) -> None:
    paper = (
        write_leaderboards([build(verdicts)], verdicts["stored"], verdicts["tmp"] / "a", plots=False)[0]
    ).read_text()
    assert "1 under `smoke`" in paper and "`degan-bench table verdicts --preset smoke`" in paper
    smoke = build(verdicts, preset="smoke")
    obama = smoke.cells[(smoke.cells["row"] == "StyleGAN2") & (smoke.cells["dataset"] == "obama-100")].iloc[0]
    assert obama["verdict"] == "not comparable (preset)" and obama["n"] == 1
    page = (
        write_leaderboards([smoke], verdicts["stored"], verdicts["tmp"] / "b", plots=False)[0]
    ).read_text()
    assert "preset `smoke`" in page and "under `paper`" in page


def test_who_wins_ranks_our_numbers_with_the_significance_rule(verdicts: dict[str, Any]) -> None:
    result = build(verdicts)
    ranking = rank_ours(result)
    obama = ranking[ranking["dataset"] == "obama-100"].sort_values("rank")
    # 70, 71, 72 against 78, 80, 82 (n = 3 each): Welch's p < 0.05, so the first is bold
    assert list(obama["row"]) == ["StyleGAN2 (64 img)", "StyleGAN2"] and bool(obama.iloc[0]["bold"])
    assert obama.iloc[0]["p_next"] < 0.05 and bool(obama.iloc[0]["better_than_next"])
    # every ranking holds one protocol of ours, no reference row, no variant, no stand-in
    for _, group in ranking.groupby(["protocol", "dataset"]):
        assert group["our_protocol"].nunique() == 1 and group["bold"].sum() <= 1
    assert set(ranking["row"]) <= {"StyleGAN2", "StyleGAN2 (64 img)"}
    page = (
        write_leaderboards([result], verdicts["stored"], verdicts["tmp"] / "c", plots=False)[0]
    ).read_text()
    table = page[page.index("## Obama") : page.index("## Grumpy")]
    assert table.count("**71.00 ± 1.00 (n=3)**") == 1 and table.count("**80.00") == 0
    assert all(line.count("**") <= 2 for line in table.splitlines() if line.startswith("| "))


def entries(*cells: tuple[str, float, float, int]) -> pd.DataFrame:
    return pd.DataFrame([{"row": r, "mean": m, "std": s, "n": n} for r, m, s, n in cells])


def test_significance_rule() -> None:
    tolerance = Tolerance()
    # n = 1 is never significant, however far apart
    ranked = rank_entries(entries(("a", 10.0, float("nan"), 1), ("b", 90.0, 1.0, 3)), "fid", tolerance)
    assert list(ranked["row"]) == ["a", "b"] and not ranked["bold"].any()
    # clearly apart with three seeds each: bold; overlapping: not
    apart = rank_entries(entries(("b", 20.0, 1.0, 3), ("a", 10.0, 1.0, 3)), "fid", tolerance)
    assert list(apart["row"]) == ["a", "b"] and list(apart["bold"]) == [True, False]
    close = rank_entries(entries(("a", 10.0, 3.0, 3), ("b", 11.0, 3.0, 3)), "fid", tolerance)
    assert not close["bold"].any() and close.iloc[0]["p_next"] > 0.05
    # the first must beat every other: a third method with n = 2 blocks the bold
    blocked = rank_entries(
        entries(("a", 10.0, 1.0, 3), ("b", 20.0, 1.0, 3), ("c", 30.0, 1.0, 2)), "fid", tolerance
    )
    assert not blocked["bold"].any() and bool(blocked.iloc[0]["better_than_next"])
    # IS: higher is better
    higher = rank_entries(entries(("a", 8.0, 0.01, 3), ("b", 9.0, 0.01, 3)), "is", tolerance)
    assert list(higher["row"]) == ["b", "a"] and bool(higher.iloc[0]["bold"])


def test_index_counts_of_the_verdict_store(verdicts: dict[str, Any]) -> None:
    counts = index_counts(build(verdicts))
    assert counts == {
        "cells": 20,
        "within": 1,
        "outside": 1,
        "not compared": 3,
        "pending / incomplete": 2,
        "failed": 2,
        "not run": 1,
        "no recipe yet": 5,
        "reported only": 5,
    }


def test_markdown_links_resolve_to_files_that_git_does_not_ignore(verdicts: dict[str, Any]) -> None:
    out, _ = page(verdicts, "md")
    fixture = build_table(load_table("fixture"), verdicts["stored"], load_reported(verdicts["reported"]))
    write_leaderboards([fixture], verdicts["stored"], out)  # a second table: shares the media folder
    links = set()
    for path in out.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        links |= set(re.findall(r"\]\(([^)\s]+)\)", text)) | set(re.findall(r'src="([^"]+)"', text))
    local = sorted(link for link in links if not link.startswith(("http://", "https://", "#")))
    assert any(link.startswith("media/runs/") for link in local) and any("samples/" in link for link in local)
    for link in local:
        assert (out / link).is_file(), link
    # as committed under results/leaderboards/ (anchored /runs/ in .gitignore): none is ignored
    paths = [f"results/leaderboards/{link}" for link in local]
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", *paths],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ignored.returncode == 1 and not ignored.stdout, ignored.stdout


def test_sample_panel_shows_real_images_then_each_method(verdicts: dict[str, Any]) -> None:
    from PIL import Image

    from degan_bench.results.media import sample_pictures

    pictures = sample_pictures(build(verdicts), verdicts["stored"])
    picture, caption = pictures["obama-100"]
    assert set(pictures) == {"obama-100"} and "same fixed latents, all at 0 kimg" in caption
    assert "not prepared here" in caption  # the memorisation rows need the training images
    with Image.open(__import__("io").BytesIO(picture.data)) as image:
        assert image.width >= 1000  # page width


def test_memorisation_finds_the_copied_training_image() -> None:
    import numpy as np
    from PIL import Image

    from degan_bench.results.memorisation import is_low_shot, nearest

    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    fakes = [Image.fromarray(reals[7]), Image.fromarray(reals[3])]
    assert nearest(fakes, reals) == [7, 3]
    assert is_low_shot("obama-100") and not is_low_shot("cifar10-100pct")


def test_kid_is_printed_times_a_thousand() -> None:
    assert numbers.value("kid", 0.00123) == "1.23" and numbers.metric_header("kid") == "KID×10³ ↓"
    assert numbers.delta("fid", -1.2) == "−1.20" and numbers.delta("is", 0.05) == "+0.05"
    assert numbers.mean_sd("fid", 47.77, 1.9, 3) == "47.77 ± 1.90 (n=3)" and numbers.value("fid", None) == "—"


SVG_SCRIPT = """
import hashlib
from degan_bench.results.charts import CurvePanel, Reported, SeedCurve, curves_svg
seeds = [SeedCurve(f"seed {s}", [(k, 100 / (k + 1) + s) for k in (0, 4, 8, 16)]) for s in range(3)]
seeds.append(SeedCurve("seed 9", [(8, 5.0)], standin=True))
panel = CurvePanel("StyleGAN2", seeds, Reported(12.0, 1.1, "paper 12.00"), 20, "FID")
print(hashlib.sha256(curves_svg([panel, panel], log_x=True).encode()).hexdigest())
"""


def test_curve_svg_is_byte_identical_across_processes() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    digests = {
        subprocess.run(
            [sys.executable, "-c", SVG_SCRIPT], capture_output=True, text=True, check=True, env=env, cwd=REPO
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64
    assert hashlib.sha256(b"").hexdigest() not in digests


def test_memorisation_rows_on_a_prepared_low_shot_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shapes-100 prepared here: each method row gets its nearest-training-image row and precision /
    recall, labelled stand-in without the Inception weights."""
    from results_support import _grid, make_run, metric_record

    from degan_bench.data.prepare import prepare_dataset
    from degan_bench.recipes.loader import resolve_recipe
    from degan_bench.results.media import sample_pictures

    monkeypatch.setenv("DEGAN_BENCH_RECIPES", str(write_recipes(tmp_path / "recipes", {})))
    prepare_dataset("shapes-100", resolution=16, progress=False)
    recipe = resolve_recipe("stylegan2", "shapes-100")
    run = make_run(tmp_path / "runs", "shapes-s0", recipe, 0, metrics=[metric_record(5.0, nimg=48)])
    _grid(run.path / "reals.png", (90, 90, 90))
    _grid(run.path / "fakes_000000.png", (30, 160, 30))
    table = {**VERDICTS_TABLE, "columns": [{"dataset": "shapes-100", "label": "Shapes"}]}
    write_recipes(tmp_path / "recipes", {"shapes": table})
    result = build_table(
        load_table("shapes"),
        scan_runs([tmp_path / "runs"]),
        load_reported(write_reported(tmp_path / "r.csv")),
    )
    picture, caption = sample_pictures(result, scan_runs([tmp_path / "runs"]))["shapes-100"]
    assert "nearest training images" in caption and "stand-in features" in caption
    assert picture.name.startswith("samples/shapes-100-paper-") and len(picture.data) > 1000
