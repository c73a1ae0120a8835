"""Leaderboard output: GitHub Markdown (paper layout, details, runs, notes, legend), CSV and JSON.

The Markdown is deterministic for a given run store (no timestamps, no absolute paths), so it can be
committed and diffed. Cells read ``reported → ours``; ``ours`` is the mean ± std over ``n`` training
seeds; bold marks the best reported and the best reproduced value of each column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from degan_bench.metrics.protocols import get_protocol
from degan_bench.results.tables import TableResult

SYMBOLS: dict[str, str] = {
    "within": "✅",
    "outside": "❌",
    "not comparable (protocol)": "⚠️",
    "not comparable (mixed protocol fingerprints)": "⚠️",
    "not comparable (preset)": "⚠️",
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
        "not comparable: another or an unknown protocol, non-standard Inception weights, another recipe, "
        "or a non-paper preset",
    ),
    (
        "⏳",
        "pending metric (weights were unavailable; `degan-bench eval RUN` fills it in) or a run still "
        "incomplete (running or stopped; `degan-bench sweep` resumes it)",
    ),
    ("💥", "failed or unreadable run (see the runs section)"),
    ("not run", "a recipe exists but no run of it was found"),
    ("no recipe yet", "the paper has this cell; degan-bench has no recipe for it yet"),
    ("—", "no reported number for this cell"),
]


def _base_verdict(verdict: str) -> str:
    return verdict.replace(" (n=1)", "")


def _decimals(protocol: str) -> int:
    return 4 if get_protocol(protocol).metric == "kid" else 2


def _fmt(value: Any, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.{decimals}f}"


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


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


def ours_text(cell: pd.Series, decimals: int) -> str:
    """``78.13 ± 2.01 (n=3)``, or the state of the cell when there is no number."""
    if cell["n"]:
        std = f" ± {_fmt(cell['std'], decimals)}" if _present(cell["std"]) else ""
        mean = _fmt(cell["mean"], decimals)
        if cell["is_best_ours"]:
            mean = f"**{mean}**"
        return f"{mean}{std} (n={int(cell['n'])})"
    return _base_verdict(cell["verdict"])


def _reported_text(cell: pd.Series, decimals: int) -> str:
    if not _present(cell["reported"]):
        return "—"
    text = _fmt(cell["reported"], decimals)
    return f"**{text}**" if cell["is_best_reported"] else text


def pivot_cell(cell: pd.Series, decimals: int, notes: _Footnotes) -> str:
    reported = _reported_text(cell, decimals)
    refs = notes.refs(list(cell["flags"]))
    if cell["reference_only"]:
        return reported + refs
    verdict = _base_verdict(cell["verdict"])
    symbol = SYMBOLS.get(verdict, "")
    ours = ours_text(cell, decimals)
    if not cell["n"] and symbol:
        ours = f"{symbol} {ours}"
        symbol = ""
    return f"{reported} → {ours}{(' ' + symbol) if symbol else ''}{refs}"


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


def to_markdown(
    result: TableResult, *, plot: str | None = None, run_plots: dict[str, str] | None = None
) -> str:
    """The table as GitHub Markdown; ``plot`` and ``run_plots`` (run id -> path) are linked when given."""
    table, cells = result.table, result.cells
    notes = _Footnotes()
    lines = [f"# {table.title}", "", table.description.strip(), ""]
    lines.append(
        f"Preset `{result.preset}` · checkpoint `{result.checkpoint}` · tolerance: within when "
        f"\\|ours − reported\\| ≤ {result.tolerance.describe()} · reported numbers: "
        "`results/reported.csv`"
    )
    lines.append("")
    if plot:
        lines += [f"![reported vs reproduced]({plot})", ""]
    main = cells[~cells["variant"]]
    for protocol in table.protocols:
        decimals = _decimals(protocol)
        block = main[main["protocol"] == protocol]
        direction = "lower is better" if bool(block["lower_is_better"].iloc[0]) else "higher is better"
        metric = get_protocol(protocol).metric.upper()
        lines += [f"## {metric} · `{protocol}` ({direction})", ""]
        lines.append("| method | " + " | ".join(_esc(c.label) for c in table.columns) + " |")
        lines.append("|:--|" + "--:|" * len(table.columns))
        for row in table.rows:
            row_cells = block[(block["method"] == row.method) & (block["row"] == row.label)]
            by_dataset = {c["dataset"]: c for _, c in row_cells.iterrows()}
            rendered = [pivot_cell(by_dataset[c.dataset], decimals, notes) for c in table.columns]
            label = row.label + (" *(reported only)*" if row_cells["reference_only"].all() else "")
            lines.append(f"| {_esc(label)} | " + " | ".join(_esc(x) for x in rendered) + " |")
        lines.append("")
    lines += _details(result, notes)
    lines += _runs_section(result, run_plots or {})
    row_notes = [f"- {r.label}: {r.note}" for r in table.rows if r.note]
    if notes.texts or table.notes or row_notes:
        lines += ["## Notes", ""]
        lines += [f"{i}. {_esc(text)}" for i, text in enumerate(notes.texts, 1)]
        lines += [f"- {note}" for note in table.notes] + row_notes
        lines.append("")
    lines += [
        "## Legend",
        "",
        "Cells read `reported → ours`; ours is the mean ± sample std over `n` training "
        "seeds (complete runs, standard weights); **bold** is the best value of a column. With n=1 only "
        "the relative part of the tolerance applies.",
        "",
    ]
    lines += [f"- {symbol}: {meaning}" for symbol, meaning in LEGEND]
    lines.append("")
    return "\n".join(lines)


def _details(result: TableResult, notes: _Footnotes) -> list[str]:
    lines = [
        "## Details",
        "",
        "| method | dataset | protocol | reported | ours | n | Δ | Δ% | verdict | protocol (reported → ours) "
        "| compute | notes |",
        "|:--|:--|:--|--:|--:|--:|--:|--:|:--|:--|--:|:--|",
    ]
    for _, cell in result.cells.iterrows():
        if cell["reference_only"]:
            continue
        decimals = _decimals(cell["protocol"])
        label = cell["row"] + (f" (variant {str(cell['recipe_hash'])[:8]})" if cell["variant"] else "")
        ours = (
            (
                f"{_fmt(cell['mean'], decimals)}"
                + (f" ± {_fmt(cell['std'], decimals)}" if _present(cell["std"]) else "")
            )
            if cell["n"]
            else "—"
        )
        delta = _fmt(cell["delta"], decimals) if _present(cell["delta"]) else "—"
        rel = f"{cell['rel_delta']:+.1%}" if _present(cell["rel_delta"]) else "—"
        if delta != "—" and not delta.startswith("-"):
            delta = "+" + delta
        reported_protocol = cell["reported_protocol"] if _present(cell["reported_protocol"]) else "—"
        protocols = f"{reported_protocol} → {cell['our_protocol']}"
        extra = [
            x for x in (_counts(cell), cell["recipe_message"] if cell["recipe_status"] != "ok" else "") if x
        ]
        note_text = notes.refs(list(cell["flags"])).strip()
        if extra:
            note_text = "; ".join(extra) + (f" {note_text}" if note_text else "")
        lines.append("| " + " | ".join(_esc(x) for x in (
            label, cell["column"], cell["protocol"], _fmt(cell["reported"], decimals), ours,
            str(int(cell["n"])),
            delta, rel, cell["verdict"], protocols, _compute(cell), note_text,
        )) + " |")  # fmt: skip
    lines.append("")
    return lines


def _runs_section(result: TableResult, run_plots: dict[str, str]) -> list[str]:
    runs = result.runs
    if runs.empty:
        return ["## Runs", "", "No run of this table's cells was found in the scanned run roots.", ""]
    lines = [
        "## Runs",
        "",
        "| run | seed | status | kimg | values | device | compute | code | plot |",
        "|:--|--:|:--|--:|:--|:--|--:|:--|:--|",
    ]
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
        plot = f"[plot]({run_plots[run_id]})" if run_id in run_plots else ""
        seed = "" if not _present(first["seed"]) else str(int(first["seed"]))
        code = str(first["code_version"]) if _present(first["code_version"]) else "—"
        lines.append("| " + " | ".join(_esc(x) for x in (
            run_id, seed, status, f"{first['kimg']:g}/{first['total_kimg']:g}", "; ".join(values) or "—",
            str(first["device"]), compute, code, plot,
        )) + " |")  # fmt: skip
    lines.append("")
    problems = [r for r in result.unreadable if r.run_id in set(runs["run_id"])]
    if problems:
        lines += [f"- `{r.run_id}`: {r.problem}" for r in problems] + [""]
    return lines


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
    data = {
        "table": result.table.name,
        "title": result.table.title,
        "preset": result.preset,
        "checkpoint": result.checkpoint,
        "tolerance": {"std_factor": result.tolerance.std_factor, "relative": result.tolerance.relative},
        "cells": to_records(result.cells),
        "runs": to_records(result.runs),
    }
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_csv(result: TableResult) -> str:
    frame = result.cells.copy()
    for column in ("flags", "run_ids", "devices", "standin_values", "selected_splits"):
        frame[column] = frame[column].map(lambda v: " | ".join(map(str, v)) if isinstance(v, list) else v)
    return frame.to_csv(index=False, lineterminator="\n")


def index_markdown(results: list[TableResult], files: dict[str, str]) -> str:
    """A short index of several leaderboards: verdict counts per table, linked."""
    lines = [
        "# Leaderboards",
        "",
        "Reported vs reproduced numbers, one page per paper table (`degan-bench table --all`).",
        "",
        "| table | preset | cells | within | outside | not comparable | pending / incomplete | not run |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        cells = result.cells[~result.cells["variant"] & ~result.cells["reference_only"]]
        verdicts = cells["verdict"].map(_base_verdict)
        counts = {
            "within": int((verdicts == "within").sum()),
            "outside": int((verdicts == "outside").sum()),
            "not comparable": int(verdicts.str.startswith("not comparable").sum()),
            "waiting": int(verdicts.isin(["pending", "incomplete"]).sum()),
            "not run": int(verdicts.isin(["not run", "no recipe yet", "not implemented"]).sum()),
        }
        link = f"[{_esc(result.table.title)}]({files[result.table.name]})"
        lines.append(
            f"| {link} | {result.preset} | {len(cells)} | "
            + " | ".join(str(v) for v in counts.values())
            + " |"
        )
    lines.append("")
    return "\n".join(lines)


def write_leaderboards(
    results: list[TableResult], runs: list, out: Path, *, fmt: str = "md", plots: bool = True
) -> list[Path]:
    """Write each table as ``<name>.md`` (with ``<name>.png`` and ``runs/<run id>.png`` linked),
    ``<name>.csv`` or ``<name>.json`` under ``out``; several Markdown tables also get ``index.md``."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
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
            plot, run_plots = None, {}
            if plots:
                from degan_bench.results.plots import plot_run, plot_table

                written.append(plot_table(result, out / f"{name}.png"))
                plot = f"{name}.png"
                for run_id in sorted(set(result.runs["run_id"])):
                    run = by_id.get(run_id)
                    if run is not None and run.info is not None:
                        written.append(plot_run(run, out / "runs" / f"{run_id}.png"))
                        run_plots[run_id] = f"runs/{run_id}.png"
            path = out / f"{name}.md"
            path.write_text(to_markdown(result, plot=plot, run_plots=run_plots), encoding="utf-8")
        written.append(path)
    if fmt == "md" and len(results) > 1:
        index = out / "index.md"
        index.write_text(
            index_markdown(results, {r.table.name: f"{r.table.name}.md" for r in results}), encoding="utf-8"
        )
        written.append(index)
    return written
