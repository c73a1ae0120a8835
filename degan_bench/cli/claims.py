"""``degan-bench claims``: the papers' headline claims (``recipes/claims/``), checked against our runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from degan_bench.cli.app import app, console
from degan_bench.cli.options import RunStore

if TYPE_CHECKING:
    from degan_bench.claims.check import ClaimResult
    from degan_bench.claims.definition import ClaimDef
    from degan_bench.claims.plan import ClaimPlan

claims_app = typer.Typer(
    help="Check the papers' headline claims (recipes/claims/<name>.yaml) against the run store.",
    no_args_is_help=True,
)
app.add_typer(claims_app, name="claims")

VERDICT_STYLE = {"holds": "green", "does not hold": "red", "inconclusive": "yellow"}


def _styled(verdict: str) -> str:
    base = verdict.split(" (n=")[0]
    style = VERDICT_STYLE.get(base)
    return f"[bold {style}]{verdict}[/]" if style else f"[bold]{verdict}[/]"


@claims_app.command("list")
def list_command() -> None:
    """Every claim: its paper, title, cells and checks, and the quoted sentence."""
    from degan_bench.claims.definition import claim_names, load_claim

    for name in claim_names():
        claim = load_claim(name)
        pending = sum(1 for c in claim.cells.values() if c.pending)
        cells = f"{len(claim.cells)} cells" + (f" ({pending} pending)" if pending else "")
        console.print(
            f"[bold]{name}[/] ({claim.paper}) {claim.title} · {cells}, {len(claim.checks)} checks",
            highlight=False,
            soft_wrap=True,
        )
        quote = " ".join(claim.quote.split())
        console.print(
            f'    "{quote}" ({" ".join(claim.quote_source.split())})',
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


def _print_result(result: ClaimResult) -> None:
    from degan_bench.claims.page import interval_text, ours_text, reported_text

    claim = result.claim
    console.print(f"[bold]{claim.name}[/]: {claim.title}", highlight=False)
    console.print(
        f'  "{" ".join(claim.quote.split())}" ({claim.quote_source})',
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    cells = Table(show_lines=False)
    for column in ("cell", "protocol", "paper (source)", "ours", "n", "95% interval", "status"):
        cells.add_column(column, overflow="fold")
    for cell in result.cells.values():
        status = cell.status + (f": {cell.message}" if cell.message else "")
        cells.add_row(
            cell.label,
            cell.protocol,
            reported_text(cell),
            ours_text(cell),
            str(cell.n) if cell.use == "ours" else "—",
            interval_text(cell),
            status,
        )
    console.print(cells)
    for check in result.checks:
        console.print(f"  {_styled(check.verdict)}  {check.description}", highlight=False, soft_wrap=True)
        console.print(f"      ours: {check.detail}", highlight=False, soft_wrap=True, markup=False)
        console.print(
            f"      paper's numbers: {check.paper_verdict}; {check.paper_detail}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    console.print(
        f"claim {claim.name}: {_styled(result.verdict)} (the paper's numbers: {result.paper_verdict})",
        highlight=False,
    )


@claims_app.command("check")
def check_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Claim name(s) from recipes/claims/.", show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every claim.")] = False,
    run: Annotated[
        bool,
        typer.Option(
            "--run", help="Train the missing cells (cheapest first) through the sweep queue, then check."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="--run: start without asking.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="--run: print the jobs and the GPU-hour estimate; run nothing.")
    ] = False,
    seeds: Annotated[
        int | None,
        typer.Option(
            help="--run: training seeds per cell, 0..N-1 (default: the claim's).", min=1, show_default=False
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="--run: GPU indices, e.g. 0,1, or 'cpu' (default: every visible GPU, else cpu).",
            show_default=False,
        ),
    ] = None,
    runs: RunStore = None,
    reported: Annotated[
        Path | None,
        typer.Option(help="Reported numbers CSV (default: results/reported.csv).", show_default=False),
    ] = None,
) -> None:
    """Check claims against the runs that exist: holds / does not hold / inconclusive / not enough runs /
    no recipe, with 95 % t-intervals over seeds where a cell has n >= 3.

    Example: degan-bench claims check insgen-ffhq2k --run --dry-run
    """
    from degan_bench.claims.check import evaluate_claim
    from degan_bench.claims.definition import load_claims
    from degan_bench.errors import DeganError
    from degan_bench.paths import runs_dir
    from degan_bench.results.reported import load_reported
    from degan_bench.results.store import scan_runs

    if names and all_:
        raise DeganError("give claim names or --all, not both", fix="drop one of them")
    if (dry_run or yes or seeds or gpus) and not run:
        raise DeganError("--yes, --dry-run, --seeds and --gpus go with --run", fix="add --run")
    claims = load_claims(names, all_claims=all_)
    root = runs or runs_dir()
    table = load_reported(reported)
    if run:
        for claim in claims:
            _run_missing(claim, root, seeds=seeds, gpus=gpus, yes=yes, dry_run=dry_run)
    stored = scan_runs([root])
    cache: dict = {}
    for claim in claims:
        _print_result(evaluate_claim(claim, stored, table, cache=cache))


def _run_missing(
    claim: ClaimDef, root: Path, *, seeds: int | None, gpus: str | None, yes: bool, dry_run: bool
) -> None:
    from degan_bench.claims.plan import plan_claim, plan_lines
    from degan_bench.errors import DeganError

    plan = plan_claim(claim, root, seeds=seeds)
    for line in plan_lines(plan):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if dry_run or not plan.todo:
        if not plan.todo:
            console.print(f"claim {claim.name}: nothing to train", highlight=False)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise DeganError(
                f"claim {claim.name}: {len(plan.todo)} job(s) to train and no terminal to confirm",
                fix="pass --yes to start them, or --dry-run to only print the plan",
            )
        if not typer.confirm(f"start {len(plan.todo)} job(s)?", default=False):
            raise typer.Exit(1)
    run_queue(plan, root, gpus)


def run_queue(plan: ClaimPlan, root: Path, gpus: str | None) -> list:
    """Hand the planned jobs, in order, to the sweep's local queue; returns its results."""
    from degan_bench.cli.sweep import _visible_gpus
    from degan_bench.dispatch.local import LocalQueue, parse_gpus

    slots = parse_gpus(gpus, 0 if gpus is not None else _visible_gpus())
    log_dir = root / "sweep-logs"
    queue = LocalQueue(slots, log_dir, on_event=lambda m: console.print(m, highlight=False, soft_wrap=True))
    results = queue.run([p.job for p in plan.todo])
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    console.print(
        f"claim {plan.claim.name}: " + ", ".join(f"{n} {o}" for o, n in outcomes.items()), highlight=False
    )
    if queue.stop_requests:
        raise typer.Exit(130)
    return results


@claims_app.command("page")
def page_command(
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default: results/leaderboards/).", show_default=False),
    ] = None,
    runs: RunStore = None,
) -> None:
    """Write claims.md and claims.html (every claim with its checks and cells) beside the leaderboards."""
    from degan_bench.claims.page import build_claims_page
    from degan_bench.cli.table import default_out
    from degan_bench.paths import runs_dir
    from degan_bench.results.reported import load_reported
    from degan_bench.results.store import scan_runs

    written = build_claims_page(out or default_out(), scan_runs([runs or runs_dir()]), load_reported())
    for path in written:
        console.print(f"wrote {path}", highlight=False)
