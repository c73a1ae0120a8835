"""``degan-bench data``: list, prepare, verify and locate datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from degan_bench.cli.app import app, console, err_console
from degan_bench.data.prepare import (
    is_prepared,
    load_prepared,
    prepare_dataset,
    prepared_path,
    prepared_status,
    verify_prepared,
)
from degan_bench.data.registry import get_dataset_spec
from degan_bench.paths import data_root

data_app = typer.Typer(
    name="data",
    help="Prepare, verify and locate datasets. Prepared data lives in "
    "<data root>/<name>/<resolution>/<split>/ (set the root with --data-root or DEGAN_BENCH_DATA).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="dataset name, e.g. obama-100, cifar10-10pct (see `data list`)")]
ResolutionOpt = Annotated[
    int | None,
    typer.Option(
        "--resolution", "-r", help="image side in pixels (power of two); default: the dataset's own"
    ),
]


@data_app.command(
    "list",
    help="Every known dataset: image counts per split, training resolution, and the resolutions prepared "
    "here with their content-hash prefixes. Subset views (cifar10-10pct, ffhq-2k) show their base dataset "
    "and default subset rule.",
)
def list_datasets() -> None:
    table = Table(title=f"datasets (data root: {data_root()})", show_lines=False)
    for column in ("name", "images", "px", "prepared (px: content hash)", "description"):
        table.add_column(column, overflow="fold")
    for row in prepared_status():
        counts = " / ".join(f"{split} {row.counts[split]}" for split in row.splits)
        if row.subset:
            prepared = f"{', '.join(map(str, row.prepared)) or '-'} (view of {row.base}, {row.subset})"
        else:
            prepared = ", ".join(f"{r}: {h}" for r, h in row.prepared.items()) or "-"
        table.add_row(row.name, counts, str(row.native_resolution), prepared, row.description)
    console.print(table)


@data_app.command(
    "prepare",
    help="Download the official archive (or read --from PATH), validate and resize every image, and store "
    "the dataset as uint8 arrays with a manifest and content hash. A subset view (cifar10-10pct, ffhq-2k) "
    "prepares its base dataset; the subset is selected when loading. Running it again is a no-op unless "
    "--force. Offline: download the archive elsewhere and pass it with --from.",
)
def prepare(
    name: NameArg,
    resolution: ResolutionOpt = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="prepare from this local folder of images, .zip, or CIFAR python tarball instead of "
            "downloading (for offline machines; FFHQ always needs it)",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="prepare again even if already prepared")] = False,
    center_crop: Annotated[
        bool,
        typer.Option("--center-crop", help="crop non-square images to their central square (else an error)"),
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show progress bars")] = True,
) -> None:
    if not force and is_prepared(name, resolution):
        err_console.print(f"{name} is already prepared; pass --force to prepare it again")
    split_dirs = prepare_dataset(
        name, resolution=resolution, source=source, progress=progress, force=force, center_crop=center_crop
    )
    spec = get_dataset_spec(name)
    table = Table(title=f"{spec.base} prepared")
    for column in ("split", "images", "px", "content hash", "directory"):
        table.add_column(column, overflow="fold")
    for split_dir in split_dirs:
        dataset = load_prepared(spec.base, resolution, split_dir.name)
        table.add_row(
            split_dir.name,
            str(len(dataset)),
            str(dataset.resolution),
            dataset.content_hash[:16],
            str(split_dir),
        )
    console.print(table)


@data_app.command(
    "verify",
    help="Recompute the content hash of every prepared split and compare it with its manifest "
    "(an error names the damaged split and the command that re-prepares it).",
)
def verify(name: NameArg, resolution: ResolutionOpt = None) -> None:
    spec = get_dataset_spec(name)
    for split in spec.splits:
        dataset = verify_prepared(name, resolution, split)
        console.print(
            f"[green]ok[/] {name} {split}: {len(dataset)} images, content hash {dataset.content_hash[:16]}"
        )


@data_app.command(
    "path",
    help="Print the prepared directory (one sub-folder per split, each with images.npy, labels.npy if "
    "labelled, and manifest.json); an error with the prepare command if it is not prepared.",
)
def path(name: NameArg, resolution: ResolutionOpt = None) -> None:
    typer.echo(str(prepared_path(name, resolution)))


app.add_typer(data_app, name="data")
