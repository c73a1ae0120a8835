"""``degan-bench bench``: time-boxed speed evidence in one call (training steps of the paper models in
paper numerics and with each speed switch, fid50k_full throughput, peak memory; optionally against the
official code), printed and written as JSON (schema: degan_bench/bench/report.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from degan_bench.cli.app import app, console


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "device"


@app.command("bench")
def bench_command(
    suite: Annotated[str, typer.Option(help="gpu (the paper models) | cpu (tiny models, seconds).")] = "gpu",
    budget_minutes: Annotated[
        float | None,
        typer.Option(
            help="Time box for the whole suite; what does not fit is skipped and listed "
            "(default: gpu 8, cpu 3).",
            min=0.05,
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="cuda | cuda:N | cpu (default: cuda for gpu, cpu for cpu).", show_default=False),
    ] = None,
    official: Annotated[
        list[Path] | None,
        typer.Option(
            "--official",
            help="A checkout of NVlabs/stylegan2-ada-pytorch and/or "
            "mit-han-lab/data-efficient-gans (or a folder holding both): time the official "
            "training step on the same configs, interleaved with ours (repeatable).",
            show_default=False,
        ),
    ] = None,
    cases: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated case names or ids (e.g. stylegan2-paper256/paper,biggan-cifar) "
            "(default: all, in priority order).",
            show_default=False,
        ),
    ] = None,
    reps: Annotated[
        int | None,
        typer.Option(help="Timed repetitions per case (default: gpu 5, cpu 3).", min=1, show_default=False),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Folder for the JSON report (results/bench/ feeds the cost model).")
    ] = Path("runs/bench"),
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the JSON report to this file instead.", show_default=False),
    ] = None,
    update_flops: Annotated[
        bool,
        typer.Option(
            "--update-flops",
            help="Instead of timing: count the training FLOPs per image of every "
            "job of every table (meta device, minutes) into results/costs-flops.json, which the "
            "cost model's extrapolation reads.",
        ),
    ] = False,
) -> None:
    """Time the training steps of the paper models (StyleGAN2 paper256 full lazy-regularization cycles,
    BigGAN-CIFAR, SNGAN) in paper numerics and with each speed switch, and fid50k_full throughput.

    Example: degan-bench bench --suite gpu --official ~/src/stylegan2-ada-pytorch --budget-minutes 8
    """
    from degan_bench.core.exitcodes import ExitCode
    from degan_bench.core.fileio import atomic_write_text
    from degan_bench.core.rundir import utc_now
    from degan_bench.errors import DeganError

    if update_flops:
        from degan_bench.dispatch.costs import update_flops_table

        path, counted = update_flops_table(log=lambda m: console.print(m, highlight=False, markup=False))
        console.print(f"wrote {path} ({counted} compute keys)", highlight=False)
        return

    import torch

    from degan_bench.bench.cases import get_suite
    from degan_bench.bench.official import find_code_bases
    from degan_bench.bench.report import format_table, validate_report
    from degan_bench.bench.runner import SuiteRunner, device_info

    chosen = get_suite(suite)
    name = device or ("cuda" if suite == "gpu" else "cpu")
    target = torch.device(name)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise DeganError(
            f"--suite {suite} --device {name}: no CUDA device is visible",
            fix="run it on a GPU machine (see `degan-bench doctor`), or use --suite cpu",
        )
    codebases = find_code_bases(list(official)) if official else {}
    only = [c.strip() for c in cases.split(",") if c.strip()] if cases else None
    stamp = utc_now().replace(":", "").replace("-", "")
    path = json_path or out / f"{suite}-{_slug(str(device_info(target)['name']))}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(report: dict) -> None:
        # after every case, so a run that is killed keeps what it measured
        atomic_write_text(path, json.dumps(report, indent=1, default=str) + "\n")

    runner = SuiteRunner(
        chosen,
        target,
        budget_minutes=budget_minutes,
        reps=reps,
        official=codebases,
        only=only,
        log=lambda m: console.print(m, highlight=False, markup=False),
        on_case=write,
    )
    runner.selected()  # unknown --cases fail before anything runs
    console.print(f"report: {path} (rewritten after every case)", highlight=False)
    try:
        runner.run()
    finally:
        report = runner.report()
        write(report)
    console.print(format_table(report), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {path}", highlight=False)
    problems = validate_report(report)
    if problems:
        raise DeganError(f"the report does not match its schema: {problems[0]}", fix="report this as a bug")
    if any(case["status"] == "error" for case in report["cases"]):
        raise typer.Exit(ExitCode.FAILED)
