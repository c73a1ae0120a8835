"""The claims page beside the leaderboards: ``claims.md`` and ``claims.html``.

Tables are pandas frames written with :meth:`pandas.DataFrame.to_markdown`; the HTML is the same
Markdown rendered by markdown-it-py, so both say the same thing. :func:`write_claims_page` is what the
leaderboard writer (or ``degan-bench claims page``) calls.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt

from degan_bench.claims.check import CellValue, ClaimResult, evaluate_claim
from degan_bench.claims.definition import ClaimDef
from degan_bench.results.render import Page
from degan_bench.results.store import StoredRun

PAGE_TITLE = "Claims: the papers' headline claims, checked"
VERDICT_TEXT = (
    "A claim **holds** when every check holds on our runs: the claimed cell is better beyond noise and "
    "the claimed size is within reach; **does not hold** when a check is contradicted beyond noise; "
    "**inconclusive** when the difference is within noise. Noise is the metric's band (FID 0.5 + 5 %, "
    "IS 0.1, KID 0.001 + 10 % of the compared value, as the leaderboards use it) plus the half-widths "
    "of the cells' 95 % t-intervals over training seeds (n ≥ 3; with fewer seeds the verdict says "
    "(n=1) and uses the band alone). **Not enough runs** / **no recipe** name what is missing: "
    "`degan-bench claims check NAME --run` trains it, cheapest cell first. Each check is also evaluated "
    "on the paper's own numbers (`results/reported.csv`)."
)


def _cell_text(value: str) -> str:
    """A table cell for Markdown: pipes escaped, line breaks flattened."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _md_table(frame: pd.DataFrame) -> str:
    frame = frame.map(_cell_text)
    return frame.to_markdown(index=False, disable_numparse=True)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ours_text(cell: CellValue) -> str:
    if cell.use == "reported":
        return "(reported number used)"
    if cell.mean is None:
        return "—"
    text = _fmt(cell.mean)
    if cell.std is not None:
        text += f" ± {cell.std:.2f}"
    return text


def interval_text(cell: CellValue) -> str:
    if cell.ci_low is None or cell.ci_high is None:
        return "—"
    return f"[{cell.ci_low:.2f}, {cell.ci_high:.2f}]"


def reported_text(cell: CellValue) -> str:
    if cell.reported is None:
        return "—"
    verification = f", {cell.verification}" if cell.verification else ""
    return f"{cell.reported:g} ({cell.reported_where}; {cell.reported_protocol}{verification})"


def cells_frame(result: ClaimResult) -> pd.DataFrame:
    rows = []
    for cell in result.cells.values():
        status = cell.status + (f": {cell.message}" if cell.message else "")
        rows.append(
            {
                "cell": cell.label,
                "protocol": cell.protocol,
                "paper's number (source; protocol)": reported_text(cell),
                "ours (mean ± std)": ours_text(cell),
                "n": str(cell.n) if cell.use == "ours" else "—",
                "95% t-interval": interval_text(cell),
                "status": status,
            }
        )
    return pd.DataFrame(rows)


def checks_frame(result: ClaimResult) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "check": check.description + (f" ({check.note})" if check.note else ""),
                "our runs": f"**{check.verdict}**",
                "the paper's numbers": check.paper_verdict,
                "how": check.detail,
                "paper's numbers, how": check.paper_detail,
            }
            for check in result.checks
        ]
    )


def summary_frame(results: list[ClaimResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        ours = [c for c in result.cells.values() if c.use == "ours"]
        with_runs = len({c.key for c in ours if c.n > 0})
        rows.append(
            {
                "claim": f"[{result.claim.title}](#{result.claim.name})",
                "paper": result.claim.paper,
                "our runs": f"**{result.verdict}**",
                "the paper's numbers": result.paper_verdict,
                "cells with runs": f"{with_runs} of {len({c.key for c in ours})}",
            }
        )
    return pd.DataFrame(rows)


def claim_markdown(result: ClaimResult) -> str:
    claim: ClaimDef = result.claim
    parts = [
        f'<a id="{claim.name}"></a>',
        f"## {claim.title} (`{claim.name}`)",
        f"> {' '.join(claim.quote.split())}\n>\n> — {claim.quote_source}",
        f"Our runs: **{result.verdict}** · the paper's numbers: {result.paper_verdict} · preset "
        f"`{claim.preset}`, at least {claim.min_seeds} complete run(s) per cell · "
        f"`degan-bench claims check {claim.name}` (`--run` trains the missing cells)",
        "### Checks",
        _md_table(checks_frame(result)),
        "### Cells",
        _md_table(cells_frame(result)),
    ]
    notes = [*claim.notes, *(f"{c.display()}: {c.note}" for c in claim.cells.values() if c.note)]
    if notes:
        parts += ["### Notes", "\n".join(f"- {' '.join(n.split())}" for n in notes)]
    return "\n\n".join(parts) + "\n"


def claims_markdown(results: list[ClaimResult]) -> str:
    parts = [f"# {PAGE_TITLE}", VERDICT_TEXT]
    if results:
        parts.append(_md_table(summary_frame(results)))
    else:
        parts.append("No claims defined (recipes/claims/*.yaml).")
    return "\n\n".join(parts) + "\n\n" + "\n".join(claim_markdown(r) for r in results)


def markdown_to_html(markdown: str, title: str = PAGE_TITLE) -> str:
    """A self-contained HTML page of ``markdown`` (CommonMark + tables, raw HTML only for anchors)."""
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.4}table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;"
        "padding:.3rem .5rem;vertical-align:top}th{background:#f4f4f4}blockquote{color:#444;"
        "border-left:4px solid #ccc;margin:1rem 0;padding:.2rem 1rem}code{background:#f4f4f4}"
    )
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def write_claims_page(results: list[ClaimResult], out: Path) -> list[Path]:
    """``out/claims.md`` and ``out/claims.html``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    markdown = claims_markdown(results)
    md_path, html_path = out / "claims.md", out / "claims.html"
    md_path.write_text(markdown, encoding="utf-8")
    html_path.write_text(markdown_to_html(markdown), encoding="utf-8")
    return [md_path, html_path]


def evaluate_all_claims(runs: list[StoredRun], reported: pd.DataFrame) -> list[ClaimResult]:
    """Every claim of ``recipes/claims/``, evaluated on ``runs`` (one recipe cache shared by all)."""
    from degan_bench.claims.definition import load_claims

    cache: dict = {}
    return [evaluate_claim(c, runs, reported, cache=cache) for c in load_claims(all_claims=True)]


def build_claims_page(out: Path, runs: list[StoredRun], reported: pd.DataFrame) -> list[Path]:
    """Evaluate every claim and write ``claims.md`` + ``claims.html`` under ``out``."""
    return write_claims_page(evaluate_all_claims(runs, reported), out)


def claims_leaderboard_page(runs: list[StoredRun], reported: pd.DataFrame) -> Page:
    """The claims page as a page of the leaderboard writer (``write_leaderboards(extra_pages=...)``), so
    ``degan-bench table --all`` writes it beside the tables and links it from the index."""
    from degan_bench.results.blocks import Text

    return Page("claims", PAGE_TITLE, [Text(claims_markdown(evaluate_all_claims(runs, reported)))])
