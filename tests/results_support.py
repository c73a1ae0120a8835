"""Fixtures for the results and dispatch tests: a private recipes root (tiny StyleGAN2 recipes and table
definitions), a reported-numbers CSV with known values, and run directories written directly (no
training), so the table math can be checked against numbers chosen by hand."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import yaml

from degan_bench.core.rundir import RunDir, RunInfo
from degan_bench.results.reported import REPORTED_COLUMNS

GOLDEN = Path(__file__).parent / "golden"

TINY_BASE = {
    "model": {
        "arch": "stylegan2",
        "z_dim": 16,
        "w_dim": 16,
        "mapping_layers": 2,
        "channel_base": 128,
        "channel_max": 16,
    },
    "data": {"resolution": 16},
    "training": {
        "kimg": 0.048,
        "batch": 8,
        "batch_gpu": 4,
        "kimg_per_tick": 0.016,
        "snapshot_ticks": 1,
        "image_snapshot_ticks": 1,
        "ema_kimg": 0.02,
        "grid_size": [4, 2],
        "keep_checkpoints": 2,
    },
    "loss": {"r1_interval": 2},
    "evaluation": {"protocols": ["fid5k_train"], "select_best": True},
    "performance": {"tf32": False, "cudnn_benchmark": False},
    "presets": {"smoke": {"training": {"kimg": 0.032}}},
}
DATASETS = ("obama-100", "grumpy-cat-100", "panda-100", "animalface-cat", "animalface-dog", "shapes-100")

FIXTURE_TABLE = {
    "title": "Fixture: low-shot FID",
    "description": "Known numbers for the table tests.",
    "backbone": "stylegan2",
    "protocols": ["fid5k_train"],
    "source": {"paper": "diffaugment", "table": "Table 4", "arxiv_version": "v2+"},
    "columns": [
        {"dataset": "obama-100", "label": "Obama"},
        {"dataset": "grumpy-cat-100", "label": "Grumpy cat"},
        {"dataset": "panda-100", "label": "Panda"},
        {"dataset": "animalface-cat", "label": "Cat"},
        {"dataset": "animalface-dog", "label": "Dog"},
    ],
    "rows": [
        {
            "method": "transfergan",
            "label": "TransferGAN",
            "source": {"paper": "diffaugment", "table": "Table 4", "arxiv_version": ""},
        },
        {"method": "stylegan2", "label": "StyleGAN2"},
        {"method": "diffaugment", "label": "StyleGAN2 + DiffAugment"},
    ],
}


def write_recipes(root: Path, tables: dict[str, dict[str, Any]] | None = None) -> Path:
    """A recipes root with the tiny base, stylegan2 recipes for DATASETS and the given tables (default:
    ``fixture`` and ``verdicts``)."""
    (root / "_bases").mkdir(parents=True, exist_ok=True)
    (root / "_bases" / "tiny.yaml").write_text(yaml.safe_dump(TINY_BASE, sort_keys=False))
    (root / "stylegan2").mkdir(exist_ok=True)
    for dataset in DATASETS:
        recipe = {
            "extends": "../_bases/tiny.yaml",
            "method": "stylegan2",
            "dataset": dataset,
            "purpose": "demo",
            "description": f"tiny test recipe on {dataset}",
        }
        (root / "stylegan2" / f"{dataset}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (root / "tables").mkdir(exist_ok=True)
    for name, table in (tables or {"fixture": FIXTURE_TABLE, "verdicts": VERDICTS_TABLE}).items():
        (root / "tables" / f"{name}.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    return root


def reported_row(**values: Any) -> dict[str, str]:
    row = {
        "paper": "diffaugment",
        "arxiv": "2006.10738",
        "arxiv_version": "v2+",
        "table": "Table 4",
        "row": "StyleGAN2",
        "column": "Obama",
        "method": "stylegan2",
        "backbone": "stylegan2-tf",
        "dataset": "obama-100",
        "data_setting": "100 imgs",
        "metric": "fid",
        "protocol": "fid5k_train",
        "value": "80.00",
        "selection": "unknown",
        "verification": "readme",
        "reference_only": "false",
        "source": "fixture",
        "notes": "",
        "quotes": "",
    }
    row.update({k: str(v) for k, v in values.items()})
    return row


FIXTURE_REPORTED = [
    reported_row(),
    reported_row(arxiv_version="v1", value="90.00"),
    reported_row(column="Grumpy cat", dataset="grumpy-cat-100", value="50.00", protocol="unknown"),
    reported_row(
        column="Panda",
        dataset="panda-100",
        value="30.00",
        selection="best_on_test",
        verification="aggregator",
    ),
    reported_row(column="Dog", dataset="animalface-dog", value="100.00"),
    reported_row(row="StyleGAN2 + DiffAugment", method="diffaugment", value="45.00"),
    reported_row(
        arxiv_version="",
        row="TransferGAN",
        method="transfergan",
        value="48.73",
        reference_only="true",
        verification="unverified",
    ),
]


def write_reported(path: Path, rows: list[dict[str, str]] | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(REPORTED_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(FIXTURE_REPORTED if rows is None else rows)
    return path


def metric_record(
    value: float | None,
    *,
    nimg: int,
    checkpoint: str = "last",
    standard: bool = True,
    selection: dict[str, Any] | None = None,
    protocol: str = "fid5k_train",
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "protocol": protocol,
        "metric": protocol[:3],
        "value": value,
        "status": "ok" if value is not None else "pending",
        "checkpoint": checkpoint,
        "purpose": checkpoint if checkpoint in ("last", "best") else "selection",
        "kimg": nimg / 1000,
        "cur_nimg": nimg,
        "protocol_record": {"id": protocol, "reference": "train"},
    }
    if value is not None:
        record.update(
            standard_weights=standard,
            weights_sha256="f" * 64 if standard else "0" * 64,
            protocol_fingerprint="fixture",
        )
    if selection is not None:
        record["selection"] = selection
    return record


def make_run(
    root: Path,
    run_id: str,
    resolved: Any,
    seed: int,
    *,
    status: str = "complete",
    metrics: list[dict[str, Any]] | None = None,
    cur_nimg: int | None = None,
    gpu_hours: float = 1.0,
    device: str = "NVIDIA A100",
    stats: list[dict[str, Any]] | None = None,
) -> RunDir:
    """A run directory as the training loop leaves it, written by hand."""
    run = RunDir(root / run_id)
    run.path.mkdir(parents=True)
    run.write_recipe_dict(resolved.data)
    total = round(resolved.recipe.training.kimg * 1000)
    info = RunInfo(
        run_id=run_id,
        method=resolved.method,
        dataset=resolved.dataset,
        preset=resolved.preset,
        seed=seed,
        recipe_hash=resolved.hash,
        total_nimg=total,
        code_version="fixture",
        status=status,
        cur_nimg=total if cur_nimg is None else cur_nimg,
        device=device,
        gpu_hours=gpu_hours if device != "cpu" else 0.0,
    )
    run.write_info(info)
    for record in metrics or []:
        run.append_metric(record)
    for record in stats or []:
        run.append_stats(record)
    return run


def broken_run(root: Path, name: str, run_json: str | None = None) -> Path:
    """A run directory that cannot be trusted: no run.json, or one that is not JSON."""
    path = root / name
    path.mkdir(parents=True)
    (path / "recipe.yaml").write_text("method: stylegan2\n")
    if run_json is not None:
        (path / "run.json").write_text(run_json)
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# -- a run store that hits every verdict -------------------------------------------------------------------
VERDICTS_TABLE = {
    **FIXTURE_TABLE,
    "title": "Fixture: every verdict",
    "description": "A synthetic run store whose cells hit every verdict and run state.",
    "rows": [
        *FIXTURE_TABLE["rows"],
        {
            "method": "stylegan2",
            "label": "StyleGAN2 (64 img)",
            "set": ["training.kimg=0.064"],
            "source": {"paper": "ada"},
            "note": "the same recipe trained for 64 images (a row axis of one method)",
        },
    ],
}
#: the verdict of every (row, dataset) cell of :data:`VERDICTS_TABLE` built from :func:`verdict_store`
EXPECTED_VERDICTS = {
    ("TransferGAN", "obama-100"): "reported only",
    ("StyleGAN2", "obama-100"): "within",
    ("StyleGAN2", "grumpy-cat-100"): "not comparable (protocol)",
    ("StyleGAN2", "panda-100"): "outside (n=2)",
    ("StyleGAN2", "animalface-cat"): "pending",
    ("StyleGAN2", "animalface-dog"): "not run",
    ("StyleGAN2 + DiffAugment", "obama-100"): "no recipe yet",
    ("StyleGAN2 (64 img)", "obama-100"): "no reported value",
    ("StyleGAN2 (64 img)", "grumpy-cat-100"): "failed",
    ("StyleGAN2 (64 img)", "panda-100"): "failed",
    ("StyleGAN2 (64 img)", "animalface-cat"): "incomplete",
    ("StyleGAN2 (64 img)", "animalface-dog"): "stand-in weights only",
}
STALE_UTC = "2020-01-01T00:00:00Z"


def _grid(path: Path, colour: tuple[int, int, int], grid: tuple[int, int] = (4, 2), tile: int = 16) -> None:
    """A sample grid of ``grid`` tiles, each a distinct shade of ``colour``."""
    import numpy as np
    from PIL import Image

    cols, rows = grid
    canvas = np.zeros((rows * tile, cols * tile, 3), dtype=np.uint8)
    for i in range(cols * rows):
        r, c = divmod(i, cols)
        canvas[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = [min(255, v + 12 * i) for v in colour]
    Image.fromarray(canvas).save(path)


def verdict_store(root: Path) -> dict[str, Any]:
    """Recipes, reported numbers and runs under ``root`` whose :data:`VERDICTS_TABLE` cells hit every
    verdict (:data:`EXPECTED_VERDICTS`); set ``DEGAN_BENCH_RECIPES`` to ``root / "recipes"`` first (the
    recipes are written by :func:`write_recipes`). Runs carry sample grids and curves."""
    from degan_bench.recipes.loader import resolve_recipe

    runs = root / "runs"
    resolve = resolve_recipe
    obama, grumpy = resolve("stylegan2", "obama-100"), resolve("stylegan2", "grumpy-cat-100")
    panda, cat = resolve("stylegan2", "panda-100"), resolve("stylegan2", "animalface-cat")
    long = {d: resolve("stylegan2", d, overrides=["training.kimg=0.064"]) for d in DATASETS}
    variant = resolve("stylegan2", "obama-100", overrides=["training.kimg=0.032"])

    def curve(final: float, nimg: int = 48, **kw: Any) -> list[dict[str, Any]]:
        return [
            metric_record(final * 1.5, nimg=16, checkpoint="ckpt-0000000016.pt", **kw),
            metric_record(final * 1.2, nimg=32, checkpoint="ckpt-0000000032.pt", **kw),
            metric_record(final, nimg=nimg, **kw),
        ]

    def with_grids(run: RunDir, colour: tuple[int, int, int], kimgs: tuple[int, ...] = (0, 0)) -> None:
        _grid(run.path / "reals.png", (200, 200, 200))
        for kimg in kimgs:
            _grid(run.path / f"fakes_{kimg:06d}.png", colour)

    for seed, value in enumerate((78.0, 80.0, 82.0)):
        with_grids(make_run(runs, f"obama-s{seed}", obama, seed, metrics=curve(value)), (180, 40, 40))
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
    make_run(runs, "obama-s5-standin", obama, 5, metrics=[metric_record(10.0, nimg=48, standard=False)])
    make_run(runs, "obama-s0-variant", variant, 0, metrics=[metric_record(50.0, nimg=32)])
    broken_run(runs, f"stylegan2-obama-100-paper-s9-{obama.short_hash[:8]}")
    make_run(runs, "grumpy-s0", grumpy, 0, metrics=curve(60.0))
    for seed, value in enumerate((40.0, 42.0)):
        make_run(runs, f"panda-s{seed}", panda, seed, metrics=curve(value))
    make_run(runs, "cat-s0", cat, 0, metrics=[metric_record(None, nimg=48)], device="cpu")
    for seed, value in enumerate((70.0, 71.0, 72.0)):
        with_grids(
            make_run(runs, f"obama64-s{seed}", long["obama-100"], seed, metrics=curve(value, nimg=64)),
            (40, 40, 180),
        )
    make_run(runs, "grumpy64-s0", long["grumpy-cat-100"], 0, status="diverged", cur_nimg=32)
    stale = make_run(runs, "panda64-s0", long["panda-100"], 0, status="running", cur_nimg=0)
    info = json.loads(stale.info_path.read_text())
    stale.info_path.write_text(json.dumps({**info, "updated_utc": STALE_UTC}, indent=2, sort_keys=True))
    make_run(runs, "cat64-s0", long["animalface-cat"], 0, status="stopped", cur_nimg=32)
    make_run(
        runs, "dog64-s0", long["animalface-dog"], 0, metrics=[metric_record(20.0, nimg=64, standard=False)]
    )
    smoke = resolve("stylegan2", "obama-100", "smoke")
    make_run(runs, "obama-smoke", smoke, 0, metrics=[metric_record(90.0, nimg=32)])
    reported = write_reported(root / "reported.csv")
    return {"runs": runs, "reported": reported, "variant": variant, "obama": obama}


def check_golden(name: str, text: str) -> None:
    """``text`` equals ``tests/golden/<name>`` (``DEGAN_BENCH_UPDATE_GOLDEN=1`` rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("DEGAN_BENCH_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} changed (DEGAN_BENCH_UPDATE_GOLDEN=1 rewrites it)"
    )
