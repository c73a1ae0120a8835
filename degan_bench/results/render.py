"""Leaderboard pages: one tidy frame per table, composed into pages and written as GitHub Markdown, HTML
and LaTeX (:mod:`degan_bench.results.blocks`), plus CSV (the tidy frame) and JSON (every cell).

A table page reads, top to bottom:

1. title, description and what our numbers are (preset, checkpoint, the protocol they were made under,
   runs under other presets);
2. the protocol glossary (from :mod:`degan_bench.metrics.protocols`) and the legend (once per page; once
   for the combined HTML page);
3. who wins: our means with 95 % intervals per column (a chart);
4. one section per column (dataset): **Method | Paper | Ours (mean ± sd, n) | Δ | Source**, Δ coloured
   by verdict (grey when not comparable); then who wins there: our numbers ranked, bold only where the
   significance rule of :mod:`degan_bench.results.ranking` holds, each source's own claimed ordering
   beside them; the sample panel and the curves;
5. notes: each flag once, with the cells it concerns (no per-cell footnotes);
6. folded details (cells with runs or a run state, never the not-run ones) and runs.

Pictures live once under ``media/`` beside the pages (:mod:`degan_bench.results.media`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from degan_bench.metrics.protocols import EXTRACTORS, get_protocol
from degan_bench.results import blocks as bl
from degan_bench.results import numbers
from degan_bench.results import reported as rep
from degan_bench.results.media import Picture, slug
from degan_bench.results.ranking import rank_entries, rank_ours
from degan_bench.results.tables import FLAG_TITLES, TableResult, paper_name, source_commit

MEDIA_DIR = "media"

# -- verdicts as the pages show them ------------------------------------------------------------------
#: symbol, CSS class and meaning of each shown state (Markdown has no colour: the symbol carries it)
SYMBOLS: dict[str, str] = {
    "within": "✅",
    "outside": "❌",
    "nc": "⚪",
    "wait": "⏳",
    "failed": "💥",
    "warn": "⚠️",
}


def base_verdict(verdict: str) -> str:
    """The verdict without its ``(n=1)`` / ``(n=2)`` suffix."""
    return verdict.split(" (n=")[0]


def verdict_class(verdict: str) -> str:
    base = base_verdict(verdict)
    if base in ("within", "outside"):
        return base
    return "nc" if base.startswith("not comparable") or base == "other recipe: not compared" else ""


def ours_state(cell: pd.Series) -> str:
    """What the Ours column says when there is no mean."""
    verdict = base_verdict(str(cell["verdict"]))
    if cell["reference_only"]:
        return "reported only"
    if cell["n"]:
        return f"{SYMBOLS['warn']} not averaged (n={int(cell['n'])})"
    counts = {
        "incomplete": "n_incomplete",
        "pending": "n_pending",
        "failed": "n_failed",
        "unreadable": "n_unreadable",
    }
    if verdict in ("incomplete", "pending"):
        return f"{SYMBOLS['wait']} {verdict} ({int(cell[counts[verdict]])})"
    if verdict in ("failed", "unreadable"):
        return f"{SYMBOLS['failed']} {verdict} ({int(cell[counts[verdict]])})"
    if verdict == "stand-in weights only":
        values = ", ".join(numbers.value(cell["metric"], v) for v in cell["standin_values"])
        return f"{SYMBOLS['warn']} stand-in only: {values}"
    return verdict


# -- the tidy frame ------------------------------------------------------------------------------------
TIDY_COLUMNS = [
    "table",
    "preset",
    "protocol",
    "metric",
    "row",
    "method",
    "dataset",
    "column",
    "source",
    "source_text",
    "protocol_used",
    "value",
    "sd",
    "n",
    "ci_low",
    "ci_high",
    "delta",
    "verdict",
    "state",
    "flags",
]


def source_markdown(cell: pd.Series) -> str:
    """``[DiffAugment](arXiv) · Table 4 · v2+ · [@12444c7](repo@commit)`` (+ quoting, protocol)."""
    paper = str(cell["reported_paper"])
    info = rep.PAPERS.get(paper)
    version = cell["reported_version"] if isinstance(cell["reported_version"], str) else ""
    name = paper_name(paper)
    if info is not None and info.arxiv:
        suffix = version if version and not version.endswith("+") else ""
        name = f"[{name}](https://arxiv.org/abs/{info.arxiv}{suffix})"
    parts = [name, str(cell["reported_table"])]
    if version:
        parts.append(version)
    commit = source_commit(cell["reported_source"])
    if commit and info is not None and info.repo:
        parts.append(f"[@{commit}](https://github.com/{info.repo}/tree/{commit})")
    quotes = cell["reported_quotes"] if isinstance(cell["reported_quotes"], str) else ""
    if quotes:
        quoted, _, quoted_version = quotes.partition("@")
        parts.append(f"quoting {paper_name(quoted)}{(' ' + quoted_version) if quoted_version else ''}")
    if cell["reported_protocol"] != cell["our_protocol"]:
        protocol = cell["reported_protocol"]
        parts.append("protocol unknown" if protocol == rep.UNKNOWN_PROTOCOL else f"`{protocol}`")
    if cell["verification"] in ("aggregator", "unverified"):
        parts.append(str(cell["verification"]))
    return " · ".join(parts)


def tidy_frame(result: TableResult) -> pd.DataFrame:
    """One row per method × dataset × metric × source (``paper``: the reported number; ``ours``: our
    mean over seeds, or the state of the cell): the frame every page, CSV and chart of the table comes
    from. Recipe variants are left out (they are listed in the details)."""
    rows = []
    for _, cell in result.cells[~result.cells["variant"].astype(bool)].iterrows():
        common = {
            "table": result.table.name,
            "preset": result.preset,
            "protocol": cell["protocol"],
            "metric": cell["metric"],
            "row": cell["row"],
            "method": cell["method"],
            "dataset": cell["dataset"],
            "column": cell["column"],
            "verdict": cell["verdict"],
            "flags": list(cell["flags"]),
        }
        if numbers.present(cell["reported"]):
            rows.append(
                {
                    **common,
                    "source": "paper",
                    "source_text": source_markdown(cell),
                    "protocol_used": cell["reported_protocol"],
                    "value": cell["reported"],
                    "n": None,
                    "state": "",
                }
            )
        if not cell["reference_only"]:
            has_mean = bool(cell["n"]) and numbers.present(cell["mean"])
            rows.append(
                {
                    **common,
                    "source": "ours",
                    "source_text": f"degan-bench · {result.preset} · {result.checkpoint}",
                    "protocol_used": cell["our_protocol"],
                    "value": cell["mean"] if has_mean else None,
                    "sd": cell["std"],
                    "n": int(cell["n"]),
                    "ci_low": cell["ci_low"],
                    "ci_high": cell["ci_high"],
                    "delta": cell["delta"],
                    "state": "" if has_mean else ours_state(cell),
                }
            )
        else:
            rows.append(
                {
                    **common,
                    "source": "ours",
                    "source_text": "",
                    "protocol_used": None,
                    "value": None,
                    "n": 0,
                    "state": "reported only",
                }
            )
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


# -- page pieces -----------------------------------------------------------------------------------------
_REFERENCES = {
    "train": "all training images (a subset view: its subset)",
    "full": "the full base dataset",
    "test": "the test split",
}
_RESIZERS = {"tf1_bilinear": "TF1-compatible bilinear", "clean_pil_bicubic": "PIL bicubic (clean-fid)"}


def glossary(ours: Iterable[str], papers: Iterable[str]) -> list[bl.Block]:
    """The protocols a page uses, defined from the protocol registry."""
    ours, papers = set(ours), set(papers)
    rows = []
    for protocol_id in sorted((ours | papers) - {rep.UNKNOWN_PROTOCOL}):
        protocol = get_protocol(protocol_id)
        layer = "logits" if protocol.metric == "is" else "pool 2048"
        used = " and ".join(w for w, s in (("ours", ours), ("papers", papers)) if protocol_id in s)
        rows.append(
            {
                "Protocol": f"`{protocol_id}`" + ("" if protocol.registered else " (derived, smoke)"),
                "Metric": numbers.metric_name(protocol.metric),
                "Generated images": f"{protocol.n_gen:,}",
                "Reference": _REFERENCES.get(str(protocol.reference), "none (IS)"),
                "Features": f"{EXTRACTORS[protocol.resizer]} ({layer})",
                "Resizer": _RESIZERS[protocol.resizer],
                "Used by": used,
            }
        )
    if rep.UNKNOWN_PROTOCOL in papers:
        rows.append(
            {
                "Protocol": "unknown",
                "Metric": "",
                "Generated images": "not stated",
                "Reference": "not stated",
                "Features": "not stated",
                "Resizer": "not stated",
                "Used by": "papers",
            }
        )
    frame = pd.DataFrame(rows)
    return [bl.Table(frame, "llrllll", caption="Protocols", name="glossary")]


def _band_text(tolerance: Any) -> str:
    parts = []
    for metric in ("fid", "is", "kid"):
        band = tolerance.metrics[metric]
        scale = numbers.SCALE[metric]
        pieces = [
            f"{band.absolute * scale:g}" if band.absolute else "",
            f"{band.relative:.0%}" if band.relative else "",
        ]
        parts.append(f"{numbers.metric_name(metric)} {' + '.join(p for p in pieces if p) or '0'}")
    return "; ".join(parts)


def legend(tolerance: Any) -> list[bl.Block]:
    confidence = f"{tolerance.confidence:.0%}"
    items = [
        "**Paper** is the source's number (its source column: paper · table · arXiv version · code commit; "
        "hover in HTML for the full source). **Ours** is the mean ± sample sd over `n` training seeds "
        "(complete runs, standard Inception weights). **Δ** = ours − paper.",
        f"{SYMBOLS['within']} within / {SYMBOLS['outside']} outside tolerance: |Δ| ≤ band + half-width of "
        "our "
        f"{confidence} t-interval (n ≥ {tolerance.min_seeds}; else the band alone). Band: "
        f"{_band_text(tolerance)} (absolute + relative to the paper's value).",
        f"{SYMBOLS['nc']} (Δ in parentheses, grey): not comparable — the paper measured under another or an "
        "unknown protocol, another configuration, or our runs use a non-paper preset; see the notes.",
        f"{SYMBOLS['wait']} pending metric or incomplete run (`degan-bench eval` / `degan-bench sweep` "
        f"continue them); {SYMBOLS['failed']} failed (also diverged, or died before training) or unreadable; "
        f"{SYMBOLS['warn']} not averaged or stand-in weights only.",
        "*not run*: a recipe exists, no run yet; *no recipe yet*: the paper has the cell, degan-bench has "
        "no recipe for it; *reported only*: a baseline degan-bench does not implement (never trained here).",
        f"**Bold** (who wins): the best of ours, only when Welch's t-test says it beats every other method "
        f"of the column at {1 - tolerance.confidence:.0%} with n ≥ {tolerance.min_seeds} seeds each; "
        "n = 1 or 2 is never significant. Papers' own orderings are shown beside ours, never mixed with "
        "them.",
        "Numbers: two decimals; KID ×10³ as the papers print it; a dash (—) is a missing value.",
    ]
    return [bl.Text("\n".join(f"- {item}" for item in items))]


def _rank_text(entry: dict[str, Any], metric: str) -> str:
    value = numbers.value(metric, entry["mean"])
    shown = f"{entry['row']} {value}"
    if entry["bold"]:
        shown = f"**{shown}**"
    interval = numbers.interval(metric, entry["ci_low"], entry["ci_high"])
    return f"{shown} {interval if interval != numbers.MISSING else ''} (n={int(entry['n'])})".replace(
        "  ", " "
    )


def _next_text(entry: dict[str, Any], last: bool) -> str:
    if last:
        return ""
    p = entry["p_next"]
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "not tested (n < 3)"
    return f"{'better' if entry['better_than_next'] else 'n.s.'} (p = {p:.3f})"


def who_wins(ranked: pd.DataFrame, claims: pd.DataFrame, metric: str, name: str) -> bl.Table | None:
    """Our ranking of one column with each source's own ordering beside it, rank by rank."""
    ours = ranked.sort_values("rank").to_dict("records") if not ranked.empty else []
    orderings = []
    for claim, entries in claims.groupby("claim", sort=False):
        ascending = numbers.LOWER_IS_BETTER[metric]
        ordered = entries.sort_values("value", ascending=ascending, kind="stable")
        protocol = entries["claim_protocol"].iloc[0]
        header = f"{claim} · {'protocol unknown' if protocol == rep.UNKNOWN_PROTOCOL else protocol}"
        orderings.append(
            (header, [f"{e['label']} {numbers.value(metric, e['value'])}" for _, e in ordered.iterrows()])
        )
    if not ours and not orderings:
        return None
    depth = max([len(ours), *(len(o) for _, o in orderings)])
    our_protocol = ours[0]["our_protocol"] if ours else ""
    data: dict[str, list[str]] = {"#": [str(i + 1) for i in range(depth)]}
    head = f"Ours · `{our_protocol}` (mean [95 % CI], n)" if ours else "Ours"
    data[head] = [_rank_text(e, metric) for e in ours] + (
        [""] * (depth - len(ours)) if ours else ["no runs yet"] + [""] * (depth - 1)
    )
    if ours:
        data["vs next"] = [_next_text(e, i == len(ours) - 1) for i, e in enumerate(ours)] + [""] * (
            depth - len(ours)
        )
    for header, entries in orderings:
        data[f"claimed by {header}"] = entries + [""] * (depth - len(entries))
    frame = pd.DataFrame(data)
    return bl.Table(frame, "r" + "l" * (len(frame.columns) - 1), caption="Who wins", name=name)


def _tip(cell: pd.Series, part: str, result: TableResult) -> str:
    metric = str(cell["metric"])
    if part == "paper":
        if not numbers.present(cell["reported"]):
            return ""
        label, protocol = cell["reported_label"], cell["reported_protocol"]
        return f"{cell['reported_source']} (row {label!r}; protocol {protocol})"
    if part == "ours":
        bits = []
        if cell["n"]:
            bits.append(f"{int(cell['n'])} seed(s)")
        interval = numbers.interval(metric, cell["ci_low"], cell["ci_high"])
        if interval != numbers.MISSING:
            bits.append(f"{result.tolerance.confidence:.0%} interval {interval}")
        for key, label in (
            ("n_pending", "pending"),
            ("n_incomplete", "incomplete"),
            ("n_failed", "failed"),
            ("n_unreadable", "unreadable"),
            ("n_standin", "stand-in"),
        ):
            if cell[key]:
                bits.append(f"{int(cell[key])} {label}")
        if cell["recipe_status"] not in ("ok", "reference") and cell["recipe_message"]:
            bits.append(str(cell["recipe_message"]))
        compute = numbers.hours(cell["gpu_hours"], cell["cpu_hours"])
        if compute != numbers.MISSING:
            bits.append(compute)
        bits.append(f"protocol {cell['our_protocol']}")
        return "; ".join(bits)
    verdict = str(cell["verdict"])
    text = verdict
    if numbers.present(cell["band"]):
        half = numbers.value(metric, cell["halfwidth"]) if numbers.present(cell["halfwidth"]) else "0"
        size, band = numbers.value(metric, abs(cell["delta"])), numbers.value(metric, cell["band"])
        text += f": |Δ| {size} vs band {band} + half-width {half}"
    return "; ".join([text, *cell["flags"]])


def delta_text(cell: pd.Series) -> tuple[str, str]:
    """(Δ cell text, CSS class)."""
    if not numbers.present(cell["delta"]):
        return "", ""
    shown = numbers.delta(str(cell["metric"]), cell["delta"])
    css = verdict_class(str(cell["verdict"]))
    if css == "nc" or not css:
        return f"{SYMBOLS['nc']}\u00a0({shown})", "nc"
    return f"{SYMBOLS[css]}\u00a0{shown}", css


def dataset_table(result: TableResult, dataset: str, bold: set[tuple[str, str]], name: str) -> bl.Table:
    """Method | per protocol: Paper | Ours (mean ± sd, n) | Δ | Source, from the tidy frame's cells."""
    table = result.table
    cells = result.cells[~result.cells["variant"].astype(bool) & (result.cells["dataset"] == dataset)]
    several = len(table.protocols) > 1
    data: dict[str, list[str]] = {}
    classes: dict[str, list[str]] = {}
    tips: dict[str, list[str]] = {}
    align = "l"
    data["Method"] = [r.label for r in table.rows]
    classes["Method"] = [""] * len(table.rows)
    tips["Method"] = [r.note or "" for r in table.rows]
    sources: list[list[str]] = [[] for _ in table.rows]
    for protocol in table.protocols:
        block = cells[cells["protocol"] == protocol]
        metric = get_protocol(protocol).metric
        header = numbers.metric_header(metric)
        our_protocols = set(block.loc[block["recipe_status"] == "ok", "our_protocol"])
        ours_header = f"Ours {header}" + (
            f" `{next(iter(our_protocols))}`" if our_protocols - {protocol} else ""
        )
        columns = {
            "paper": f"Paper {header}",
            "ours": f"{ours_header} (mean ± sd, n)",
            "delta": "Δ" + (f" {numbers.metric_name(metric)}" if several else ""),
        }
        for key in columns.values():
            data[key], classes[key], tips[key] = [], [], []
        align += "rrr"
        for i, row in enumerate(table.rows):
            match = block[(block["method"] == row.method) & (block["row"] == row.label)]
            cell = match.iloc[0]
            data[columns["paper"]].append(numbers.value(metric, cell["reported"]))
            if numbers.present(cell["mean"]) and cell["n"]:
                ours = numbers.mean_sd(metric, cell["mean"], cell["std"], int(cell["n"]))
                if (protocol, row.label) in bold:
                    ours = f"**{ours}**"
            else:
                ours = ours_state(cell)
            data[columns["ours"]].append(ours)
            delta, css = delta_text(cell)
            data[columns["delta"]].append(delta)
            classes[columns["paper"]].append(
                "nc"
                if numbers.present(cell["reported"]) and cell["reported_protocol"] != cell["our_protocol"]
                else ""
            )
            classes[columns["ours"]].append("")
            classes[columns["delta"]].append(css)
            tips[columns["paper"]].append(_tip(cell, "paper", result))
            tips[columns["ours"]].append(_tip(cell, "ours", result))
            tips[columns["delta"]].append(_tip(cell, "delta", result) if delta else "")
            if numbers.present(cell["reported"]):
                text = source_markdown(cell)
                if text not in sources[i]:
                    sources[i].append(text)
    data["Source"] = ["; ".join(s) for s in sources]
    classes["Source"] = [""] * len(table.rows)
    tips["Source"] = [""] * len(table.rows)
    align += "l"
    caption = f"{table.title}: {next(c.label for c in table.columns if c.dataset == dataset)}"
    return bl.Table(pd.DataFrame(data), align, pd.DataFrame(classes), pd.DataFrame(tips), caption, name)


def _affected(cells: pd.DataFrame, table_columns: list[str]) -> str:
    """``StyleGAN2 (all columns), FakeCLR (Obama, Panda)``."""
    parts = []
    for row, group in cells.groupby("row", sort=False):
        columns = list(dict.fromkeys(group["column"]))
        parts.append(f"{row} ({'all columns' if len(columns) == len(table_columns) else ', '.join(columns)})")
    return "; ".join(parts)


#: flags whose text differs per cell: the note lists each cell's text
_DETAILED_FLAGS = ("protocol_other", "versions", "conflict", "not_compared", "standin", "variant")


def notes(result: TableResult) -> list[bl.Block]:
    """Each flag once, with the cells it concerns; then the table's and its rows' own notes."""
    table = result.table
    main = result.cells[~result.cells["variant"].astype(bool)]
    items = []
    column_labels = [c.label for c in table.columns]
    for key, title in FLAG_TITLES.items():
        frame = result.cells if key in ("variant", "mixed") else main
        hit = frame[frame["flag_keys"].map(lambda keys, key=key: key in keys)]
        if hit.empty:
            continue
        if key in _DETAILED_FLAGS:
            details = []
            for _, cell in hit.iterrows():
                text = cell["flags"][list(cell["flag_keys"]).index(key)]
                entry = f"{cell['row']} · {cell['column']}: {text}"
                if entry not in details:
                    details.append(entry)
            items.append(f"**{title}**:\n" + "\n".join(f"  - {d}" for d in details))
        else:
            items.append(f"**{title}**: {_affected(hit.drop_duplicates(['row', 'column']), column_labels)}.")
    items += list(table.notes)
    items += [f"{r.label}: {r.note}" for r in table.rows if r.note]
    if not items:
        return []
    return [bl.Heading(2, "Notes"), bl.Text("\n".join(f"- {item}" for item in items))]


def details(result: TableResult) -> list[bl.Block]:
    """Cells with runs or a run state (never the not-run, no-recipe or reported-only ones), folded."""
    cells = result.cells
    quiet = cells["verdict"].map(base_verdict).isin(
        ["not run", "no recipe yet", "not implemented", "invalid recipe", "reported only"]
    ) & (cells["run_ids"].map(len) == 0)
    shown = cells[~quiet]
    if shown.empty:
        return []
    several = len(result.table.protocols) > 1
    rows = []
    for _, cell in shown.iterrows():
        metric = str(cell["metric"])
        label = str(cell["row"]) + (f" (recipe {str(cell['recipe_hash'])[:8]})" if cell["variant"] else "")
        row = {"Method": label, "Column": cell["column"]}
        if several:
            row["Metric"] = numbers.metric_header(metric)
        row.update(
            {
                "Ours (mean ± sd, n)": numbers.mean_sd(metric, cell["mean"], cell["std"], int(cell["n"]))
                if cell["n"] and numbers.present(cell["mean"])
                else ours_state(cell),
                f"{result.tolerance.confidence:.0%} interval": numbers.interval(
                    metric, cell["ci_low"], cell["ci_high"]
                ),
                "Paper": numbers.value(metric, cell["reported"]),
                "Δ (%)": f"{numbers.delta(metric, cell['delta'])} ({numbers.percent(cell['rel_delta'])})"
                if numbers.present(cell["delta"])
                else numbers.MISSING,
                "Band": numbers.value(metric, cell["band"]),
                "Verdict": str(cell["verdict"]),
                "Compute": numbers.hours(cell["gpu_hours"], cell["cpu_hours"]),
            }
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    align = "ll" + ("l" if several else "") + "rrrrrlr"
    return [
        bl.Details(
            f"Details: {len(frame)} cell(s) with runs or a run state",
            [bl.Table(frame, align, caption="Details", name="details")],
        )
    ]


def runs_blocks(result: TableResult, run_plots: dict[str, str]) -> list[bl.Block]:
    runs = result.runs
    if runs.empty:
        return [bl.Text("No run of this table's cells was found in the scanned run roots.")]
    rows = []
    for run_id, group in runs.sort_values(["run_id", "protocol"]).groupby("run_id", sort=False):
        first = group.iloc[0]
        values = []
        for _, r in group.drop_duplicates("protocol").iterrows():
            metric = get_protocol(str(r["protocol"])).metric
            if numbers.present(r["value"]):
                shown = f"`{r['protocol']}` {numbers.value(metric, r['value'])}"
                values.append(shown + (" (stand-in)" if r["record_state"] == "standin" else ""))
            elif isinstance(r["record_state"], str):
                values.append(f"`{r['protocol']}` {r['record_state']}")
        status = str(first["status"]) + (f": {first['status_detail']}" if first["status_detail"] else "")
        status += " (other recipe)" if first["variant"] else ""
        seed = "" if not numbers.present(first["seed"]) else str(int(first["seed"]))
        plot = f"[plot]({run_plots[str(run_id)]})" if str(run_id) in run_plots else ""
        rows.append(
            {
                "Run": f"`{run_id}`",
                "Seed": seed,
                "Status": status,
                "kimg": f"{first['kimg']:g} / {first['total_kimg']:g}",
                "Values": "; ".join(values) or numbers.MISSING,
                "Device": str(first["device"]),
                "Compute": numbers.hours(first["gpu_hours"], first["cpu_hours"]),
                "Code": str(first["code_version"])
                if isinstance(first["code_version"], str)
                else numbers.MISSING,
                "Plot": plot,
            }
        )
    frame = pd.DataFrame(rows)
    if not run_plots:
        frame = frame.drop(columns="Plot")
    out: list[bl.Block] = [
        bl.Table(frame, "lrllllrl" + ("l" if run_plots else ""), caption="Runs", name="runs")
    ]
    problems = [r for r in result.unreadable if r.run_id in set(runs["run_id"])]
    if problems:
        out.append(bl.Text("\n".join(f"- `{r.run_id}`: {r.problem}" for r in problems)))
    return [bl.Details(f"Runs: {len(frame)}", out)]


# -- a table's page ----------------------------------------------------------------------------------------
@dataclass
class PageMedia:
    """Relative links (from the page) of a table's pictures."""

    who_wins: dict[str, str] = field(default_factory=dict)  # protocol -> chart
    curves: dict[tuple[str, str], str] = field(default_factory=dict)  # (protocol, dataset) -> chart
    samples: dict[str, tuple[str, str]] = field(default_factory=dict)  # dataset -> (panel, caption)
    run_plots: dict[str, str] = field(default_factory=dict)  # run id -> figure


def our_numbers_line(result: TableResult) -> str:
    cells = result.cells[~result.cells["variant"].astype(bool) & (result.cells["recipe_status"] == "ok")]
    ours = sorted(set(cells["our_protocol"]))
    n_runs = result.runs["run_id"].nunique() if not result.runs.empty else 0
    text = (
        f"**Our numbers**: preset `{result.preset}` · checkpoint `{result.checkpoint}` · made under "
        + (", ".join(f"`{p}`" for p in ours) or "—")
        + f" · {n_runs} run(s) found."
    )
    if set(ours) - set(result.table.protocols):
        text += " Our protocol is not the paper's, so no number of ours is compared with the paper's."
    if result.other_presets:
        others = ", ".join(f"{count} under `{preset}`" for preset, count in result.other_presets.items())
        first = next(iter(result.other_presets))
        text += (
            f" **Runs of these cells exist under another preset** ({others}): "
            f"`degan-bench table {result.table.name} --preset {first}` shows them."
        )
    return text


def table_blocks(result: TableResult, media: PageMedia, *, preamble: bool = True) -> list[bl.Block]:
    """Everything one table's page says, in order (``preamble``: the glossary and the legend)."""
    table = result.table
    ranking = rank_ours(result)
    main = result.cells[~result.cells["variant"].astype(bool)]
    blocks: list[bl.Block] = [
        bl.Heading(1, table.title, anchor=table.name),
        bl.Text(table.description.strip()),
        bl.Text(our_numbers_line(result)),
    ]
    if preamble:
        papers = set(main["reported_protocol"].dropna())
        ours = set(main.loc[main["recipe_status"] == "ok", "our_protocol"])
        blocks += [bl.Heading(2, "Protocols and legend"), *glossary(ours, papers), *legend(result.tolerance)]
    if media.who_wins:
        blocks.append(bl.Heading(2, "Who wins (ours, 95 % intervals)"))
        blocks += [bl.Image(path, f"who wins: {protocol}") for protocol, path in media.who_wins.items()]
    bold = {(str(e["protocol"]), str(e["row"])) for _, e in ranking[ranking["bold"].astype(bool)].iterrows()}
    for column in table.columns:
        anchor = slug(table.name, column.dataset)
        blocks.append(bl.Heading(2, f"{column.label} (`{column.dataset}`)", anchor=anchor))
        col_bold = {
            b
            for b in bold
            if not ranking.empty
            and (
                (ranking["dataset"] == column.dataset)
                & (ranking["row"] == b[1])
                & (ranking["protocol"] == b[0])
                & ranking["bold"].astype(bool)
            ).any()
        }
        blocks.append(dataset_table(result, column.dataset, col_bold, name=f"{anchor}-table"))
        for protocol in table.protocols:
            metric = get_protocol(protocol).metric
            ranked = ranking[(ranking["dataset"] == column.dataset) & (ranking["protocol"] == protocol)]
            claims = result.claims[
                (result.claims["dataset"] == column.dataset) & (result.claims["protocol"] == protocol)
            ]
            view = who_wins(ranked, claims, metric, name=f"{anchor}-{slug(protocol)}-wins")
            if view is not None:
                title = "Who wins" + (
                    f" · {numbers.metric_header(metric)}" if len(table.protocols) > 1 else ""
                )
                blocks += [bl.Text(f"**{title}**"), view]
        if column.dataset in media.samples:
            path, caption = media.samples[column.dataset]
            blocks += [bl.Image(path, f"{column.label}: samples"), bl.Text(f"*Samples: {caption}.*")]
        for protocol in table.protocols:
            if (protocol, column.dataset) in media.curves:
                blocks.append(bl.Image(media.curves[(protocol, column.dataset)], f"{column.label}: curves"))
    blocks += notes(result)
    blocks += details(result)
    blocks += runs_blocks(result, media.run_plots)
    return blocks


# -- the index -------------------------------------------------------------------------------------------
#: index columns and the verdicts each one counts; every non-variant cell is in exactly one
INDEX_COLUMNS: dict[str, Callable[[str], bool]] = {
    "within": lambda v: v == "within",
    "outside": lambda v: v == "outside",
    "not compared": lambda v: (
        v.startswith("not comparable") or v in ("stand-in weights only", "no reported value")
    ),
    "pending / incomplete": lambda v: v in ("pending", "incomplete"),
    "failed": lambda v: v in ("failed", "unreadable", "invalid recipe"),
    "not run": lambda v: v == "not run",
    "no recipe yet": lambda v: v in ("no recipe yet", "not implemented"),
    "reported only": lambda v: v == "reported only",
}


def index_counts(result: TableResult) -> dict[str, int]:
    """Cells of one table per index column, plus ``cells`` (their total; recipe variants are extra rows,
    not cells). A verdict no column knows is an error, so the columns always add up to ``cells``."""
    cells = result.cells[~result.cells["variant"].astype(bool)]
    counts = dict.fromkeys(INDEX_COLUMNS, 0)
    for verdict in cells["verdict"].map(base_verdict):
        column = next((name for name, test in INDEX_COLUMNS.items() if test(verdict)), None)
        if column is None:
            raise ValueError(f"index: verdict {verdict!r} has no column")
        counts[column] += 1
    return {"cells": len(cells), **counts}


def best_reproduced(results: Sequence[TableResult]) -> pd.DataFrame:
    """Per (dataset, protocol of ours, preset): every method we reproduced, over all tables (a method's
    runs count once however many tables show them), ranked by the significance rule."""
    entries = []
    for result in results:
        ranking = rank_ours(result)
        for _, e in ranking.iterrows():
            entries.append(
                {
                    **e.to_dict(),
                    "preset": result.preset,
                    "runs": tuple(sorted(e["run_ids"])),
                    "tolerance": result.tolerance,
                }
            )
    if not entries:
        return pd.DataFrame()
    frame = pd.DataFrame(entries).drop_duplicates(["dataset", "our_protocol", "preset", "runs"])
    frames = []
    for (_dataset, _protocol, _preset), group in frame.groupby(
        ["dataset", "our_protocol", "preset"], sort=False
    ):
        tolerance = group["tolerance"].iloc[0]
        ranked = rank_entries(
            group.drop(columns=["rank", "p_next", "better_than_next", "bold"]).reset_index(drop=True),
            str(group["metric"].iloc[0]),
            tolerance,
        )
        frames.append(ranked)
    return pd.concat(frames, ignore_index=True)


def index_blocks(
    results: Sequence[TableResult], files: dict[str, str], heatmap: str | None = None
) -> list[bl.Block]:
    rows, classes = [], []
    for result in results:
        counts = index_counts(result)
        rows.append(
            {
                "Table": f"[{result.table.name}]({files[result.table.name]})",
                "Preset": result.preset,
                **{k: str(v) if v else "·" for k, v in counts.items()},
            }
        )
        classes.append(
            {
                "Table": "",
                "Preset": "",
                "cells": "",
                **{k: (f"heat-{k.split(' ')[0]}" if counts[k] else "") for k in INDEX_COLUMNS},
            }
        )
    frame = pd.DataFrame(rows)
    tips = pd.DataFrame(
        [{c: (r.table.title if c == "Table" else "") for c in frame.columns} for r in results]
    )
    blocks: list[bl.Block] = [
        bl.Text(
            "Reported vs reproduced numbers, one page per paper table (`degan-bench table --all`). "
            "Each row counts the table's cells by verdict (· is zero); every cell is counted once."
        ),
    ]
    if heatmap:
        blocks.append(bl.Image(heatmap, "cells per table and verdict"))
    blocks.append(
        bl.Table(
            frame,
            "ll" + "r" * (len(frame.columns) - 2),
            pd.DataFrame(classes),
            tips,
            caption="Tables",
            name="index",
        )
    )
    blocks.append(
        bl.Text(
            "*reported only*: rows we quote but never train (baselines degan-bench does not implement); "
            "*no recipe yet*: cells we mean to reproduce that have no recipe; *not compared*: numbers under "
            "another or an unknown protocol or configuration, stand-in weights, or cells without a paper "
            "number."
        )
    )
    best = best_reproduced(results)
    blocks.append(bl.Heading(2, "Best reproduced method per dataset"))
    if best.empty:
        blocks.append(bl.Text("No method has a reproduced number yet."))
        return blocks
    rows = []
    for (dataset, protocol, preset), group in best.groupby(["dataset", "our_protocol", "preset"], sort=False):
        top = group.sort_values("rank").iloc[0]
        metric = str(top["metric"])
        runner = group.sort_values("rank").iloc[1] if len(group) > 1 else None
        verdict = (
            "significantly better than every other"
            if top["bold"]
            else "not significantly better than all others"
            if runner is not None
            else "the only one"
        )
        rows.append(
            {
                "Dataset": f"`{dataset}`",
                "Protocol": f"`{protocol}`",
                "Preset": preset,
                "Best (ours)": f"**{top['row']}**" if top["bold"] else str(top["row"]),
                "Mean [95 % CI] (n)": _rank_text({**top.to_dict(), "row": "", "bold": False}, metric).strip(),
                "Methods ranked": str(len(group)),
                "Verdict": verdict,
            }
        )
    blocks.append(bl.Table(pd.DataFrame(rows), "llllrrl", caption="Best reproduced", name="best"))
    return blocks


def heatmap_picture(results: Sequence[TableResult]) -> Picture:
    from degan_bench.results.charts import heatmap_svg

    labels = [r.table.name for r in results]
    counts = [[index_counts(r)[k] for k in INDEX_COLUMNS] for r in results]
    return Picture("index-heatmap.svg", heatmap_svg(labels, list(INDEX_COLUMNS), counts), "cells per verdict")


# -- CSV / JSON --------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def to_json(result: TableResult) -> str:
    tolerance = result.tolerance
    data = {
        "table": result.table.name,
        "title": result.table.title,
        "preset": result.preset,
        "checkpoint": result.checkpoint,
        "tolerance": {
            "metrics": {
                m: {"relative": t.relative, "absolute": t.absolute}
                for m, t in sorted(tolerance.metrics.items())
            },
            "confidence": tolerance.confidence,
            "min_seeds": tolerance.min_seeds,
        },
        "cells": to_records(result.cells),
        "runs": to_records(result.runs),
        "ranking": to_records(rank_ours(result).drop(columns="run_ids")),
        "claims": to_records(result.claims),
    }
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_csv(result: TableResult) -> str:
    """The tidy frame (method × dataset × metric × source)."""
    frame = tidy_frame(result)
    frame["flags"] = frame["flags"].map(" | ".join)
    return frame.to_csv(index=False, lineterminator="\n")


# -- pages and files ---------------------------------------------------------------------------------------
@dataclass
class Page:
    """One page: ``name`` (file stem), its ``title`` and blocks. Other page kinds (e.g. claims) are pages
    too: :func:`write_leaderboards` takes them as ``extra_pages`` and links them from the index."""

    name: str
    title: str
    blocks: list[bl.Block]


STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1280px; padding: 0 1.5em; color: #1f2328; }
h1, h2 { border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
h2 { margin-top: 2em; }
.scroll { overflow-x: auto; }
table.lb { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px;
           font-variant-numeric: tabular-nums; }
table.lb th, table.lb td { border: 1px solid #d1d9e0; padding: 4px 8px; vertical-align: top; }
table.lb th { background: #f6f8fa; text-align: left; }
table.lb td.r { text-align: right; white-space: nowrap; }
td.within { color: #1a7f37; font-weight: 600; }
td.outside { color: #cf222e; font-weight: 600; }
td.nc { color: #8c959f; }
td.heat-within { background: #dafbe1; }
td.heat-outside { background: #ffebe9; }
td.heat-not { background: #eaeef2; }
td.heat-pending { background: #fff8c5; }
td.heat-failed { background: #ffcecb; }
td.heat-no { background: #ddf4ff; }
td[title] { cursor: help; }
img { max-width: 100%; }
code { background: #eff1f3; padding: .1em .3em; border-radius: 4px; font-size: 90%; }
details { margin: 1em 0; }
summary { cursor: pointer; font-weight: 600; }
""".strip()


def html_document(title: str, body: str) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{bl.html.escape(title)}</title>",
            f"<style>\n{STYLE}\n</style>",
            "</head>",
            "<body>",
            body,
            "</body>",
            "</html>",
            "",
        ]
    )


LATEX_HEADER = (
    "% degan-bench leaderboard (generated by `degan-bench table --format latex`).\n"
    "% Needs \\usepackage{booktabs} and \\usepackage[dvipsnames]{xcolor}.\n"
)


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def _fresh(target: Path, run_path: Path) -> bool:
    """Whether ``target`` was written after every file of the run directory (checkpoints aside)."""
    if not target.exists():
        return False
    newest = max((p.stat().st_mtime for p in run_path.iterdir() if p.is_file()), default=0.0)
    return target.stat().st_mtime >= newest


def build_media(
    result: TableResult, runs: list, out: Path, written: dict[str, Path], *, memorisation: bool = True
) -> PageMedia:
    """Draw a table's pictures and store each once under ``out/media`` (``written``: name -> path of what
    this invocation already wrote, shared by the tables)."""
    from degan_bench.results import media as md

    links = PageMedia()

    def store(picture: Picture) -> str:
        if picture.name not in written:
            written[picture.name] = _write(out / MEDIA_DIR / picture.name, picture.data)
        return f"{MEDIA_DIR}/{picture.name}"

    for protocol, picture in md.intervals_pictures(result, rank_ours(result)).items():
        links.who_wins[protocol] = store(picture)
    for key, picture in md.curve_pictures(result, runs).items():
        links.curves[key] = store(picture)
    for dataset, (picture, caption) in md.sample_pictures(result, runs, memorisation).items():
        links.samples[dataset] = (store(picture), caption)
    by_id = {run.run_id: run for run in runs}
    for run_id in sorted(set(result.runs["run_id"])):
        run = by_id.get(run_id)
        if run is not None and run.info is not None:
            name = f"runs/{run_id}.png"
            target = out / MEDIA_DIR / name
            if name not in written:
                # a run's figure is redrawn only when the run changed since it was drawn
                written[name] = (
                    target if _fresh(target, run.path) else _write(target, md.run_picture(run).data)
                )
            links.run_plots[run_id] = f"{MEDIA_DIR}/{name}"
    return links


def write_leaderboards(
    results: list[TableResult],
    runs: list,
    out: Path,
    *,
    fmt: str = "md",
    plots: bool = True,
    extra_pages: Sequence[Page] = (),
) -> list[Path]:
    """Write the tables under ``out``. ``md``: ``<name>.md`` per table and ``index.md`` for several;
    ``html``: one page (``<name>.html``, ``leaderboards.html`` for several) with the glossary and legend
    once; ``latex``: ``<name>.tex`` per table (tables and notes, for an appendix); ``csv``: the tidy frame
    per table; ``json``: every cell, run, ranking and claim. Pictures go to ``out/media/`` once."""
    out.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "json"):
        paths = []
        for result in results:
            text = to_csv(result) if fmt == "csv" else to_json(result)
            paths.append(_write(out / f"{result.table.name}.{fmt}", text))
        return paths
    written: dict[str, Path] = {}
    media = {
        r.table.name: build_media(r, runs, out, written) if plots and fmt != "latex" else PageMedia()
        for r in results
    }
    pages = [
        Page(r.table.name, r.table.title, table_blocks(r, media[r.table.name], preamble=fmt != "html"))
        for r in results
    ]
    pages += list(extra_pages)
    paths: list[Path] = []
    if fmt == "latex":
        for page in pages:
            paths.append(_write(out / f"{page.name}.tex", LATEX_HEADER + bl.to_latex(page.blocks)))
        return paths
    several = len(pages) > 1
    heatmap = None
    if several and plots:
        picture = heatmap_picture(results)
        written[picture.name] = _write(out / MEDIA_DIR / picture.name, picture.data)
        heatmap = f"{MEDIA_DIR}/{picture.name}"
    if fmt == "html":
        main = results[0].cells if results else pd.DataFrame()
        all_cells = pd.concat([r.cells for r in results]) if results else main
        ours = (
            set(all_cells.loc[all_cells["recipe_status"] == "ok", "our_protocol"])
            if not all_cells.empty
            else set()
        )
        papers = set(all_cells["reported_protocol"].dropna()) if not all_cells.empty else set()
        body: list[bl.Block] = []
        if several:
            anchors = {r.table.name: f"#{r.table.name}" for r in results}
            body += [bl.Heading(1, "Leaderboards"), *index_blocks(results, anchors)]  # its table is coloured
        body += [
            bl.Heading(2 if several else 1, "Protocols and legend"),
            *glossary(ours, papers),
            *legend(results[0].tolerance if results else None),
        ]
        parts = [bl.to_html(body)] + [f"<section>\n{bl.to_html(page.blocks)}\n</section>" for page in pages]
        name = f"{pages[0].name}.html" if not several else "leaderboards.html"
        title = pages[0].title if not several else "Leaderboards"
        paths.append(_write(out / name, html_document(title, "\n".join(parts))))
    else:
        for page in pages:
            paths.append(_write(out / f"{page.name}.md", bl.to_markdown(page.blocks)))
        if several:
            files = {r.table.name: f"{r.table.name}.md" for r in results}
            blocks = [bl.Heading(1, "Leaderboards"), *index_blocks(results, files, heatmap)]
            if extra_pages:
                blocks += [
                    bl.Heading(2, "Other pages"),
                    bl.Text("\n".join(f"- [{p.title}]({p.name}.md)" for p in extra_pages)),
                ]
            paths.append(_write(out / "index.md", bl.to_markdown(blocks)))
    return paths + sorted(written.values())


def to_markdown(result: TableResult, media: PageMedia | None = None) -> str:
    """One table's page as GitHub Markdown (pictures linked where ``media`` names them)."""
    return bl.to_markdown(table_blocks(result, media or PageMedia()))


def to_html(result: TableResult, media: PageMedia | None = None) -> str:
    return html_document(result.table.title, bl.to_html(table_blocks(result, media or PageMedia())))


def to_latex(result: TableResult) -> str:
    return LATEX_HEADER + bl.to_latex(table_blocks(result, PageMedia()))


def index_markdown(results: list[TableResult], files: dict[str, str]) -> str:
    return bl.to_markdown([bl.Heading(1, "Leaderboards"), *index_blocks(results, files)])
