"""``degan-bench eval``: FID/KID/IS of a run's checkpoints, or of a folder of images, under a protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from degan_bench.cli.app import app, console, err_console
from degan_bench.core.fileio import append_jsonl
from degan_bench.errors import DataError
from degan_bench.metrics.protocols import PROTOCOLS

_PROTOCOL_HELP = "protocol id (repeatable): " + ", ".join(sorted(PROTOCOLS))


def _table(records: list[dict[str, Any]]) -> Table:
    table = Table(show_header=True, header_style="bold")
    table.add_column("protocol", no_wrap=True)
    for column in ("checkpoint", "value", "n gen/ref", "weights", "ref stats", "img/s"):
        table.add_column(column)
    for r in records:
        if r.get("value") is None:
            value = "pending"
        else:
            std = r.get("value_std")
            value = f"{r['value']:.4f}" + (f" ± {std:.4f}" if std is not None else "")
        weights = (
            "standard" if r.get("standard_weights") else f"non-standard {str(r.get('weights_sha256'))[:8]}"
        )
        table.add_row(
            r["protocol"],
            str(r.get("checkpoint", "-")),
            value,
            f"{r.get('n_gen')}/{r.get('n_ref') or '-'}",
            weights,
            (r.get("reference") or {}).get("stats_cache", "-"),
            str(r.get("images_per_second", "-")),
        )
    return table


@app.command("eval")
def eval_command(
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            help="run directory: fills its pending metrics, or evaluates --protocol", show_default=False
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images", help="folder of generated images, evaluated against --ref", show_default=False
        ),
    ] = None,
    ref: Annotated[
        str | None, typer.Option("--ref", help="reference dataset for --images", show_default=False)
    ] = None,
    protocol: Annotated[
        list[str] | None, typer.Option("--protocol", "-p", help=_PROTOCOL_HELP, show_default=False)
    ] = None,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="last | best | all | a checkpoint file name (run mode)")
    ] = "last",
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="Inception weights file (or a folder holding it) (env DEGAN_BENCH_INCEPTION_WEIGHTS)",
            show_default=False,
        ),
    ] = None,
    weights_sha256: Annotated[
        str | None,
        typer.Option(
            "--weights-sha256",
            help="declare a non-standard weights file by its sha256 "
            "(results are marked non-standard) (env DEGAN_BENCH_INCEPTION_SHA256)",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda if present)", show_default=False),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="images per generator/Inception batch")
    ] = 64,
    n_gen: Annotated[
        int | None,
        typer.Option(
            "--n-gen",
            min=2,
            help="generated count other than the protocol's (recorded as a "
            "derived, non-paper protocol, e.g. fid500_train)",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", min=0, help="evaluation seed (default: the protocol's, 0)", show_default=False
        ),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution",
            help="reference resolution for --images (default: the images')",
            show_default=False,
        ),
    ] = None,
    subset_rule: Annotated[
        str | None,
        typer.Option("--subset-rule", help="subset rule of --ref for *_train protocols", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="append the --images records to this JSONL file", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full records as JSON lines")] = False,
) -> None:
    """Compute FID/KID/IS under named protocols; records carry the full protocol and weights hash.

    Run mode (RUN_DIR) appends to the run's metrics.jsonl: first the pending records left by training
    without weights, then --protocol (default: the recipe's protocols) on --checkpoint.
    Folder mode (--images DIR --ref DATASET) compares a folder of images with a prepared dataset.
    """
    from degan_bench.metrics.evaluate import evaluate_images_many
    from degan_bench.metrics.run_eval import evaluate_run

    if (run_dir is None) == (images is None):
        raise DataError(
            "give either a RUN_DIR or --images DIR",
            fix="e.g. `degan-bench eval runs/<run>` or `degan-bench eval --images samples/ --ref obama-100`",
        )

    def log(message: str) -> None:
        err_console.print(f"[dim]{message}[/]", highlight=False)

    common: dict[str, Any] = dict(
        device=device,
        batch_size=batch_size,
        weights_path=weights,
        weights_sha256=weights_sha256,
        seed=seed,
        n_gen=n_gen,
        log=log,
        progress=True,
    )
    if run_dir is not None:
        records = evaluate_run(run_dir, protocols=protocol, checkpoint=checkpoint, **common)
    else:
        assert images is not None
        records = evaluate_images_many(
            images,
            protocol or ["fid5k_train"],
            ref=ref,
            resolution=resolution,
            subset_rule=subset_rule,
            **common,
        )
        if out is not None:
            for record in records:
                append_jsonl(out, record)
    if as_json:
        for record in records:
            console.print_json(json.dumps(record))
    else:
        console.print(_table(records))
    for record in records:
        for note in record.get("warnings", []):
            err_console.print(f"[yellow]warning[/] {record['protocol']}: {note}", highlight=False)
