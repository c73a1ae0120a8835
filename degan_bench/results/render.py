"""Leaderboard output: GitHub Markdown and one self-contained HTML page (paper layout, pictures, details,
runs, notes, legend), CSV and JSON.

Both page formats are rendered from one list of blocks (:func:`page_blocks`), so they say the same. They
are deterministic for a given run store (no timestamps, no absolute paths, hand-written SVG), so they can
be committed and diffed. Cells read ``reported → ours``; ``ours`` is the mean ± std over ``n`` training
seeds. Rows are shown in sections by the protocol of their reported numbers; bold marks the best reported
value among comparable numbers (see :mod:`degan_bench.results.tables`) and the best of ours per column.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from degan_bench.metrics.protocols import get_protocol
from degan_bench.results.media import CellKey, CellMedia, cell_key, cell_media, table_charts
from degan_bench.results.tables import SECTION_ORDER, TableResult

SYMBOLS: dict[str, str] = {
    "within": "✅",
    "outside": "❌",
    "not comparable (protocol)": "⚠️",
    "not comparable (mixed protocol fingerprints)": "⚠️",
    "not comparable (preset)": "⚠️",
    "not comparable (configuration)": "⚠️",
    "other recipe: not compared": "⚠️",
    "stand-in weights only": "⚠️",
    "pending": "⏳",
    "incomplete": "⏳",
    "failed": "💥",
    "unreadable": "💥",
}
LEGEND = [
    ("✅", "within tolerance"),
    ("❌", "outside tolerance"),
    (
        "⚠️",
        "not comparable: another or an unknown protocol, another configuration than the source's, "
        "non-standard Inception weights, another recipe, or a non-paper preset",
    ),
    (
        "⏳",
        "pending metric (weights were unavailable; `degan-bench eval RUN` fills it in) or a run still "
        "incomplete (running or stopped; `degan-bench sweep` resumes it)",
    ),
    ("💥", "failed or unreadable run (see the runs section)"),
    ("not run", "a recipe exists but no run of it was found"),
    (
        "no recipe yet",
        "the paper has this cell; degan-bench has no recipe for it yet (or the method is not implemented)",
    ),
    ("—", "no reported number for this cell"),
]
_N_SUFFIX = re.compile(r" \(n=\d+\)$")


def base_verdict(verdict: str) -> str:
    """The verdict without its ``(n=1)`` / ``(n=2)`` suffix."""
    return _N_SUFFIX.sub("", verdict)


def _decimals(protocol: str) -> int:
    return 4 if get_protocol(protocol).metric == "kid" else 2


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, decimals: int) -> str:
    if not _present(value):
        return "—"
    return f"{float(value):.{decimals}f}"


def _esc(text: str) -> str:
    """Markdown table cell text: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


class _Footnotes:
    """Numbers each distinct note text once, in order of first use."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def refs(self, texts: list[str]) -> str:
        numbers = []
        for text in texts:
            if text not in self.texts:
                self.texts.append(text)
            numbers.append(self.texts.index(text) + 1)
        return "".join(f" [{n}]" for n in numbers)


# -- blocks: one page model, two renderers ---------------------------------------------------------
@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass
class Para:
    text: str  # inline Markdown: **bold**, `code`, [link](href), ![alt](src)


@dataclass
class Grid:
    header: list[str]
    align: str  # one of "l" / "r" per column
    rows: list[list[str]]


@dataclass
class Items:
    items: list[str]
    ordered: bool = False


@dataclass
class Figure:
    """A picture: ``src`` for Markdown (a file beside the page), ``svg`` or ``png`` inlined in HTML."""

    alt: str
    src: str | None = None
    svg: str | None = None
    png: bytes | None = None


@dataclass
class Gallery:
    """Cells with runs: samples and the metric curve side by side."""

    entries: list[tuple[str, str, Figure | None, Figure]]  # (anchor, caption, samples, curve)


Block = Heading | Para | Grid | Items | Figure | Gallery


@dataclass
class Links:
    """Where a page's pictures are: Markdown links files, HTML links its own anchors."""

    charts: dict[str, Figure] = field(default_factory=dict)  # protocol -> reported-vs-ours chart
    run_plots: dict[str, str] = field(default_factory=dict)  # run id -> run plot file (Markdown)
    curves: dict[CellKey, str] = field(default_factory=dict)  # cell -> href of its curve
    samples: dict[CellKey, str] = field(default_factory=dict)  # cell -> href of its sample grid


def ours_text(cell: pd.Series, decimals: int) -> str:
    """``78.13 ± 2.01 (n=3)``, or the state of the cell when there is no number."""
    if cell["n"] and _present(cell["mean"]):
        std = f" ± {_fmt(cell['std'], decimals)}" if _present(cell["std"]) else ""
        mean = _fmt(cell["mean"], decimals)
        if cell["is_best_ours"]:
            mean = f"**{mean}**"
        return f"{mean}{std} (n={int(cell['n'])})"
    if cell["n"]:
        return f"not averaged (n={int(cell['n'])})"
    return base_verdict(cell["verdict"])


def _reported_text(cell: pd.Series, decimals: int) -> str:
    if not _present(cell["reported"]):
        return "—"
    text = _fmt(cell["reported"], decimals)
    return f"**{text}**" if cell["is_best_reported"] else text


def pivot_cell(cell: pd.Series, decimals: int, notes: _Footnotes, links: Links) -> str:
    reported = _reported_text(cell, decimals)
    refs = notes.refs(list(cell["flags"]))
    if cell["reference_only"]:
        return reported + refs
    verdict = base_verdict(cell["verdict"])
    symbol = SYMBOLS.get(verdict, "")
    ours = ours_text(cell, decimals)
    if not cell["n"] and symbol:
        ours = f"{symbol} {ours}"
        symbol = ""
    key = cell_key(cell)
    media = "".join(
        f" · [{name}]({where[key]})"
        for name, where in (("curve", links.curves), ("samples", links.samples))
        if key in where
    )
    return f"{reported} → {ours}{(' ' + symbol) if symbol else ''}{refs}{media}"


def section_label(section: tuple[str, str, str]) -> str:
    kind, protocol, group = section
    text = {
        "ours": f"Reported under `{protocol}`, the protocol of our numbers: ranked and compared",
        "other": f"Reported under `{protocol}`: ranked among themselves, not compared with ours",
        "mixed": "Reported under several protocols: each number ranked only against its own protocol's",
        "unknown": "Reported under an unknown protocol: not ranked, not compared",
        "none": "No reported number",
    }[kind]
    return text + (f" · {group} (ranked within this group)" if group and kind != "none" else "")


def _sections(block: pd.DataFrame, result: TableResult) -> list[tuple[tuple[str, str, str], list[Any]]]:
    """The rows of one sub-table grouped by section, sections in :data:`SECTION_ORDER`, then by the first
    row of each; rows keep the table's order within a section."""
    sections: dict[tuple[str, str, str], list[Any]] = {}
    for row in result.table.rows:
        cells = block[(block["method"] == row.method) & (block["row"] == row.label)]
        sections.setdefault(tuple(cells["section"].iloc[0]), []).append(row)  # type: ignore[arg-type]
    order = list(sections)
    return sorted(sections.items(), key=lambda item: (SECTION_ORDER.index(item[0][0]), order.index(item[0])))


def _pivot(result: TableResult, protocol: str, notes: _Footnotes, links: Links) -> list[Block]:
    table = result.table
    decimals = _decimals(protocol)
    block = result.cells[~result.cells["variant"] & (result.cells["protocol"] == protocol)]
    direction = "lower is better" if bool(block["lower_is_better"].iloc[0]) else "higher is better"
    metric = get_protocol(protocol).metric.upper()
    blocks: list[Block] = [Heading(2, f"{metric} · `{protocol}` ({direction})")]
    if protocol in links.charts:
        blocks.append(links.charts[protocol])
    sections = _sections(block, result)
    for section, rows in sections:
        if len(sections) > 1:
            blocks.append(Heading(3, section_label(section)))
        grid = Grid(["method", *(c.label for c in table.columns)], "l" + "r" * len(table.columns), [])
        for row in rows:
            row_cells = block[(block["method"] == row.method) & (block["row"] == row.label)]
            by_dataset = {c["dataset"]: c for _, c in row_cells.iterrows()}
            rendered = [pivot_cell(by_dataset[c.dataset], decimals, notes, links) for c in table.columns]
            label = row.label + (" *(reported only)*" if row_cells["reference_only"].all() else "")
            grid.rows.append([label, *rendered])
        blocks.append(grid)
    return blocks


def _compute(cell: pd.Series) -> str:
    devices = ", ".join(cell["devices"]) if cell["devices"] else ""
    if cell["gpu_hours"]:
        return f"{cell['gpu_hours']:.2f} GPU-h" + (f" ({devices})" if devices else "")
    if cell["cpu_hours"]:
        return f"{cell['cpu_hours']:.3f} CPU-h"
    return "—"


def _counts(cell: pd.Series) -> str:
    parts = [f"{int(cell[key])} {label}" for key, label in (
        ("n_pending", "pending"), ("n_incomplete", "incomplete"), ("n_failed", "failed"),
        ("n_unreadable", "unreadable"), ("n_standin", "stand-in"),
    ) if cell[key]]  # fmt: skip
    return ", ".join(parts)


def _signed(value: Any, decimals: int) -> str:
    text = _fmt(value, decimals)
    return text if text == "—" or text.startswith("-") else "+" + text


def _details(result: TableResult, notes: _Footnotes) -> list[Block]:
    confidence = f"{result.tolerance.confidence:.0%}"
    grid = Grid(
        [
            "method", "dataset", "protocol", "reported", "ours", "n", f"{confidence} t-interval", "Δ", "Δ%",
            "band", "verdict", "protocol (reported → ours)", "compute", "notes",
        ],
        "lllrrrrrrrllrl",
        [],
    )  # fmt: skip
    for _, cell in result.cells.iterrows():
        if cell["reference_only"]:
            continue
        decimals = _decimals(cell["protocol"])
        label = cell["row"] + (f" (variant {str(cell['recipe_hash'])[:8]})" if cell["variant"] else "")
        ours = "—"
        if cell["n"] and _present(cell["mean"]):
            std = f" ± {_fmt(cell['std'], decimals)}" if _present(cell["std"]) else ""
            ours = _fmt(cell["mean"], decimals) + std
        interval = (
            f"[{_fmt(cell['ci_low'], decimals)}, {_fmt(cell['ci_high'], decimals)}]"
            if _present(cell["ci_low"])
            else "—"
        )
        rel = f"{cell['rel_delta']:+.1%}" if _present(cell["rel_delta"]) else "—"
        band = f"±{_fmt(cell['band'], decimals)}" if _present(cell["band"]) else "—"
        reported_protocol = cell["reported_protocol"] if _present(cell["reported_protocol"]) else "—"
        extra = [
            x for x in (_counts(cell), cell["recipe_message"] if cell["recipe_status"] != "ok" else "") if x
        ]
        note_text = notes.refs(list(cell["flags"])).strip()
        if extra:
            note_text = "; ".join(extra) + (f" {note_text}" if note_text else "")
        grid.rows.append([
            label, cell["column"], cell["protocol"], _fmt(cell["reported"], decimals), ours,
            str(int(cell["n"])), interval, _signed(cell["delta"], decimals), rel, band, cell["verdict"],
            f"{reported_protocol} → {cell['our_protocol']}", _compute(cell), note_text,
        ])  # fmt: skip
    return [Heading(2, "Details"), grid]


def _runs(result: TableResult, links: Links) -> list[Block]:
    runs = result.runs
    if runs.empty:
        return [Heading(2, "Runs"), Para("No run of this table's cells was found in the scanned run roots.")]
    header = ["run", "seed", "status", "kimg", "values", "device", "compute", "code"]
    with_plots = bool(links.run_plots)
    grid = Grid([*header, "plot"] if with_plots else header, "lrlrlllr" + ("l" if with_plots else ""), [])
    for run_id, group in runs.sort_values(["run_id", "protocol"]).groupby("run_id", sort=False):
        first = group.iloc[0]
        values = []
        for _, r in group.drop_duplicates("protocol").iterrows():
            if _present(r["value"]):
                shown = f"{r['protocol']} {r['value']:.4g}"
                values.append(shown + (" (stand-in)" if r["record_state"] == "standin" else ""))
            elif _present(r["record_state"]):
                values.append(f"{r['protocol']} {r['record_state']}")
        status = first["status"] + (" (other recipe)" if first["variant"] else "")
        compute = (
            f"{first['gpu_hours']:.2f} GPU-h"
            if first["gpu_hours"]
            else f"{first['cpu_hours']:.3f} CPU-h"
            if first["cpu_hours"]
            else "—"
        )
        seed = "" if not _present(first["seed"]) else str(int(first["seed"]))
        code = str(first["code_version"]) if _present(first["code_version"]) else "—"
        row = [
            str(run_id), seed, status, f"{first['kimg']:g}/{first['total_kimg']:g}", "; ".join(values) or "—",
            str(first["device"]), compute, code,
        ]  # fmt: skip
        if with_plots:
            row.append(f"[plot]({links.run_plots[str(run_id)]})" if str(run_id) in links.run_plots else "")
        grid.rows.append(row)
    blocks: list[Block] = [Heading(2, "Runs"), grid]
    problems = [r for r in result.unreadable if r.run_id in set(runs["run_id"])]
    if problems:
        blocks.append(Items([f"`{r.run_id}`: {r.problem}" for r in problems]))
    return blocks


def _gallery(
    result: TableResult, media: dict[CellKey, CellMedia], links: Links, html_page: bool
) -> list[Block]:
    entries = []
    for _, cell in result.cells[~result.cells["variant"]].iterrows():
        key = cell_key(cell)
        if key not in media:
            continue
        item = media[key]
        caption = f"{cell['row']} · {cell['column']} · `{cell['protocol']}` ({item.grid_caption})"
        curve_alt = f"{cell['our_protocol']} over kimg"
        if html_page:
            samples = Figure("samples", png=item.grid) if item.grid else None
            curve = Figure(curve_alt, svg=item.curve)
        else:
            samples = Figure("samples", src=links.samples[key]) if key in links.samples else None
            curve = Figure(curve_alt, src=links.curves[key])
        entries.append((item.slug, caption, samples, curve))
    if not entries:
        return []
    return [Heading(2, "Samples and curves"), Gallery(entries)]


def page_blocks(
    result: TableResult, links: Links, media: dict[CellKey, CellMedia], *, html_page: bool = False
) -> list[Block]:
    """Everything one table's page says, in order."""
    table = result.table
    notes = _Footnotes()
    blocks: list[Block] = [
        Heading(1, table.title, anchor=table.name),
        Para(table.description.strip()),
        Para(
            f"Preset `{result.preset}` · checkpoint `{result.checkpoint}` · tolerance: "
            f"{result.tolerance.describe()} · reported numbers: `results/reported.csv`"
        ),
    ]
    for protocol in table.protocols:
        blocks += _pivot(result, protocol, notes, links)
    blocks += _gallery(result, media, links, html_page)
    blocks += _details(result, notes)
    blocks += _runs(result, links)
    row_notes = [f"{r.label}: {r.note}" for r in table.rows if r.note]
    if notes.texts or table.notes or row_notes:
        blocks.append(Heading(2, "Notes"))
        if notes.texts:
            blocks.append(Items(notes.texts, ordered=True))
        if table.notes or row_notes:
            blocks.append(Items([*table.notes, *row_notes]))
    blocks += [
        Heading(2, "Legend"),
        Para(
            "Cells read `reported → ours`; ours is the mean ± sample std over `n` training seeds (complete "
            "runs, standard weights). **Bold** reported values are the best of their column among numbers "
            "made under the same stated protocol (and row group, where the paper separates e.g. pre-trained "
            "rows), at least two of them; numbers under an unknown protocol are never ranked. **Bold** "
            "values of ours are the best of ours in the column. With fewer seeds than the t-interval needs "
            "the verdict says (n=1) or (n=2) and uses the band alone."
        ),
        Items([f"{symbol}: {meaning}" for symbol, meaning in LEGEND]),
    ]
    return blocks


# -- Markdown ------------------------------------------------------------------------------------
def _md_grid(grid: Grid) -> list[str]:
    lines = ["| " + " | ".join(_esc(h) for h in grid.header) + " |"]
    lines.append("|" + "".join(":--|" if a == "l" else "--:|" for a in grid.align))
    lines += ["| " + " | ".join(_esc(x) for x in row) + " |" for row in grid.rows]
    return lines


def blocks_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines.append("#" * block.level + " " + block.text)
        elif isinstance(block, Para):
            lines.append(block.text)
        elif isinstance(block, Grid):
            lines += _md_grid(block)
        elif isinstance(block, Items):
            if block.ordered:
                lines += [f"{i}. {_esc(text)}" for i, text in enumerate(block.items, 1)]
            else:
                lines += [f"- {text}" for text in block.items]
        elif isinstance(block, Figure):
            lines.append(f"![{block.alt}]({block.src})")
        elif isinstance(block, Gallery):
            lines.append("| cell | samples (newest grid) | metric over kimg |")
            lines.append("|:--|:--|:--|")
            for anchor, caption, samples, curve in block.entries:
                picture = f'<img src="{samples.src}" width="256" alt="samples">' if samples else "—"
                lines.append(
                    f'| <a id="{anchor}"></a>{_esc(caption)} | {picture} | '
                    f'<img src="{curve.src}" width="360" alt="{html.escape(curve.alt)}"> |'
                )
        lines.append("")
    return "\n".join(lines)


def to_markdown(
    result: TableResult,
    *,
    links: Links | None = None,
    media: dict[CellKey, CellMedia] | None = None,
) -> str:
    """The table as GitHub Markdown; pictures are linked where ``links`` names their files."""
    return blocks_markdown(page_blocks(result, links or Links(), media or {}))


# -- HTML ------------------------------------------------------------------------------------------
_INLINE = re.compile(
    r"\*\*(?P<b>.+?)\*\*|`(?P<c>[^`]+)`|\[(?P<t>[^\]]+)\]\((?P<h>[^)\s]+)\)|\*(?P<i>[^*]+)\*"
)


def inline_html(text: str) -> str:
    """Inline Markdown (**bold**, *italic*, `code`, [text](href)) as escaped HTML."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        if match["b"] is not None:
            out.append(f"<strong>{inline_html(match['b'])}</strong>")
        elif match["c"] is not None:
            out.append(f"<code>{html.escape(match['c'])}</code>")
        elif match["t"] is not None:
            out.append(f'<a href="{html.escape(match["h"])}">{inline_html(match["t"])}</a>')
        else:
            out.append(f"<em>{inline_html(match['i'])}</em>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _html_figure(figure: Figure) -> str:
    if figure.svg is not None:
        return figure.svg.strip()
    if figure.png is not None:
        data = base64.b64encode(figure.png).decode("ascii")
        return f'<img alt="{html.escape(figure.alt)}" src="data:image/png;base64,{data}">'
    return f"<p>{html.escape(figure.alt)}</p>"


def blocks_html(blocks: list[Block]) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            parts.append(f"<h{block.level}{anchor}>{inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            parts.append(f"<p>{inline_html(block.text)}</p>")
        elif isinstance(block, Grid):
            align = [' class="r"' if a == "r" else "" for a in block.align]
            head = "".join(f"<th>{inline_html(h)}</th>" for h in block.header)
            rows = [
                "<tr>"
                + "".join(f"<td{a}>{inline_html(x)}</td>" for a, x in zip(align, row, strict=True))
                + "</tr>"
                for row in block.rows
            ]
            parts.append("<table>\n<tr>" + head + "</tr>\n" + "\n".join(rows) + "\n</table>")
        elif isinstance(block, Items):
            tag = "ol" if block.ordered else "ul"
            items = "\n".join(f"<li>{inline_html(item)}</li>" for item in block.items)
            parts.append(f"<{tag}>\n{items}\n</{tag}>")
        elif isinstance(block, Figure):
            parts.append(f'<div class="chart">{_html_figure(block)}</div>')
        elif isinstance(block, Gallery):
            for anchor, caption, samples, curve in block.entries:
                picture = _html_figure(samples) if samples else "<p>no sample grid yet</p>"
                parts.append(
                    f'<figure id="{html.escape(anchor)}">\n{picture}\n{_html_figure(curve)}\n'
                    f"<figcaption>{inline_html(caption)}</figcaption>\n</figure>"
                )
    return parts


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }
th { background: #f3f3f3; }
td.r { text-align: right; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 512px; display: block; }
figcaption { font-size: 12px; max-width: 520px; }
code { background: #f5f5f5; padding: 0 2px; }
""".strip()


def to_html(results: list[TableResult], media: dict[str, dict[CellKey, CellMedia]]) -> str:
    """One self-contained page for ``results``: inline CSS, inline SVG charts and curves, sample grids as
    base64 PNG; nothing is fetched from elsewhere. Several tables get an index at the top."""
    title = results[0].table.title if len(results) == 1 else "Leaderboards"
    body: list[str] = []
    if len(results) > 1:
        anchors = {r.table.name: f"#{r.table.name}" for r in results}
        body += blocks_html([Heading(1, "Leaderboards"), *_index_blocks(results, anchors)])
    for result in results:
        cells = media[result.table.name]
        links = Links(
            charts={
                p: Figure(f"{p}: reported vs reproduced", svg=c) for p, c in table_charts(result).items()
            },
            curves={k: f"#{m.slug}" for k, m in cells.items()},
            samples={k: f"#{m.slug}" for k, m in cells.items() if m.grid},
        )
        body += ["<section>", *blocks_html(page_blocks(result, links, cells, html_page=True)), "</section>"]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>\n{STYLE}\n</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


# -- CSV / JSON --------------------------------------------------------------------------------------
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


def _tolerance_data(result: TableResult) -> dict[str, Any]:
    tolerance = result.tolerance
    return {
        "metrics": {
            m: {"relative": t.relative, "absolute": t.absolute} for m, t in sorted(tolerance.metrics.items())
        },
        "confidence": tolerance.confidence,
        "min_seeds": tolerance.min_seeds,
    }


def to_json(result: TableResult) -> str:
    data = {
        "table": result.table.name,
        "title": result.table.title,
        "preset": result.preset,
        "checkpoint": result.checkpoint,
        "tolerance": _tolerance_data(result),
        "cells": to_records(result.cells),
        "runs": to_records(result.runs),
    }
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_csv(result: TableResult) -> str:
    frame = result.cells.copy()
    for column in ("flags", "run_ids", "devices", "standin_values", "selected_splits", "section"):
        frame[column] = frame[column].map(
            lambda v: " | ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
        )
    return frame.to_csv(index=False, lineterminator="\n")


# -- index -------------------------------------------------------------------------------------------
#: index columns and the verdicts each one counts; every non-variant cell is in exactly one
INDEX_COLUMNS: dict[str, Callable[[str], bool]] = {
    "within": lambda v: v == "within",
    "outside": lambda v: v == "outside",
    "not compared": lambda v: (
        v.startswith("not comparable") or v in ("stand-in weights only", "no reported value")
    ),
    "pending / incomplete": lambda v: v in ("pending", "incomplete"),
    "failed / invalid": lambda v: v in ("failed", "unreadable", "invalid recipe"),
    "not run": lambda v: v == "not run",
    "no recipe": lambda v: v in ("no recipe yet", "not implemented", "reference only"),
}


def index_counts(result: TableResult) -> dict[str, int]:
    """Cells of one table per index column, plus ``cells`` (their total; recipe variants are extra rows,
    not cells). A verdict no column knows is an error, so the columns always add up to ``cells``."""
    cells = result.cells[~result.cells["variant"]]
    counts = dict.fromkeys(INDEX_COLUMNS, 0)
    for verdict in cells["verdict"].map(base_verdict):
        column = next((name for name, test in INDEX_COLUMNS.items() if test(verdict)), None)
        if column is None:
            raise ValueError(f"index: verdict {verdict!r} has no column")
        counts[column] += 1
    return {"cells": len(cells), **counts}


def _index_blocks(results: list[TableResult], files: dict[str, str]) -> list[Block]:
    grid = Grid(["table", "preset", "cells", *INDEX_COLUMNS], "ll" + "r" * (1 + len(INDEX_COLUMNS)), [])
    for result in results:
        counts = index_counts(result)
        link = f"[{result.table.title}]({files[result.table.name]})"
        grid.rows.append([link, result.preset, *(str(v) for v in counts.values())])
    return [
        Para("Reported vs reproduced numbers, one page per paper table (`degan-bench table --all`)."),
        grid,
        Para(
            "Every cell of a table is counted once: *no recipe* covers reported-only baselines, methods "
            "not implemented yet and cells without a recipe file; *not compared* covers numbers under "
            "another or an unknown protocol or configuration, stand-in weights and cells with no reported "
            "number."
        ),
    ]


def index_markdown(results: list[TableResult], files: dict[str, str]) -> str:
    """A short index of several leaderboards: cell counts per verdict, linked."""
    return blocks_markdown([Heading(1, "Leaderboards"), *_index_blocks(results, files)])


# -- files ------------------------------------------------------------------------------------------
def write_leaderboards(
    results: list[TableResult], runs: list, out: Path, *, fmt: str = "md", plots: bool = True
) -> list[Path]:
    """Write the tables under ``out``: ``md``: ``<name>.md`` with its pictures beside it
    (``<name>/<protocol>.svg``, ``<name>/cells/*``, ``runs/<run id>.png``) and ``index.md`` for several;
    ``html``: one self-contained ``<name>.html`` (``leaderboards.html`` for several); ``csv`` / ``json``:
    ``<name>.csv`` / ``<name>.json``."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if fmt == "html":
        media = {r.table.name: cell_media(r, runs) if plots else {} for r in results}
        path = out / (f"{results[0].table.name}.html" if len(results) == 1 else "leaderboards.html")
        path.write_text(to_html(results, media), encoding="utf-8")
        return [path]
    by_id = {run.run_id: run for run in runs}
    for result in results:
        name = result.table.name
        if fmt == "csv":
            path = out / f"{name}.csv"
            path.write_text(to_csv(result), encoding="utf-8")
        elif fmt == "json":
            path = out / f"{name}.json"
            path.write_text(to_json(result), encoding="utf-8")
        else:
            links, media = Links(), {}
            if plots:
                links, media, pictures = _write_pictures(result, runs, by_id, out)
                written += pictures
            path = out / f"{name}.md"
            path.write_text(to_markdown(result, links=links, media=media), encoding="utf-8")
        written.append(path)
    if fmt == "md" and len(results) > 1:
        index = out / "index.md"
        index.write_text(
            index_markdown(results, {r.table.name: f"{r.table.name}.md" for r in results}), encoding="utf-8"
        )
        written.append(index)
    return written


def _write_pictures(
    result: TableResult, runs: list, by_id: dict[str, Any], out: Path
) -> tuple[Links, dict[CellKey, CellMedia], list[Path]]:
    from degan_bench.results.plots import plot_run

    name = result.table.name
    links, written = Links(), []
    (out / name).mkdir(parents=True, exist_ok=True)
    for protocol, chart in table_charts(result).items():
        path = out / name / f"{protocol}.svg"
        path.write_text(chart, encoding="utf-8")
        links.charts[protocol] = Figure("reported vs reproduced", src=f"{name}/{protocol}.svg")
        written.append(path)
    media = cell_media(result, runs)
    if media:
        (out / name / "cells").mkdir(exist_ok=True)
    for key, item in media.items():
        curve = out / name / "cells" / f"{item.slug}.svg"
        curve.write_text(item.curve, encoding="utf-8")
        links.curves[key] = f"{name}/cells/{curve.name}"
        written.append(curve)
        if item.grid:
            grid = out / name / "cells" / f"{item.slug}-samples.png"
            grid.write_bytes(item.grid)
            links.samples[key] = f"{name}/cells/{grid.name}"
            written.append(grid)
    for run_id in sorted(set(result.runs["run_id"])):
        run = by_id.get(run_id)
        if run is not None and run.info is not None:
            written.append(plot_run(run, out / "runs" / f"{run_id}.png"))
            links.run_plots[run_id] = f"runs/{run_id}.png"
    return links, media, written
