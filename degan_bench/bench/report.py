"""The bench report: its JSON schema (versioned), a validator, and the printed table.

Schema ``degan-bench/bench`` version 1 (one JSON object):

- ``schema`` ("degan-bench/bench"), ``schema_version`` (1), ``suite`` ("gpu" | "cpu"), ``created_utc``,
  ``code_version`` (git describe of the checkout);
- ``device``: ``type`` ("cuda" | "cpu"), ``name`` (e.g. "NVIDIA H100 80GB HBM3"), ``capability``,
  ``memory_gib``, ``cpu_threads``;
- ``software``: ``python``, ``torch``, ``cuda``, ``cudnn``;
- ``settings``: ``budget_minutes``, ``reps``, ``min_reps``, ``min_rep_seconds``, ``official`` (paths),
  ``cases`` (the ids asked for, or null for all);
- ``budget``: ``seconds``, ``used_seconds``;
- ``cases``: one object per case, in run order, each with ``id`` (``<name>/<variant>``), ``name``,
  ``variant``, ``kind`` ("train" | "fid"), ``role`` ("core" | "switch" | "coverage"), ``title``,
  ``status`` ("ok" | "skipped" | "error") and ``reason`` (why skipped / the error, else null);
  ``ok`` train cases add ``recipe`` (the spec: method, dataset, backbone, base, preset, overrides),
  ``recipe_hash``, ``compute_key`` (:func:`degan_bench.bench.flops.compute_key`), ``resolved`` (the
  whole resolved recipe, so readers can rebuild it), ``performance``, ``compile_mode``, ``resolution``,
  ``batch``, ``batch_gpu``, ``objective`` (loss.kind), ``cycle_minibatches`` (one schedule cycle:
  StyleGAN2 lcm of the lazy intervals, BigGAN/SNGAN one iteration), ``cycles_per_rep``,
  ``reals_per_rep``, ``warmup_minibatches``, ``warmup_seconds``, ``seconds_per_rep`` (the timed
  repetitions), ``img_per_s``, ``sec_per_kimg``, ``minibatches_per_s`` (spreads: ``median``, ``q1``,
  ``q3``, ``iqr``, ``n``), ``peak_gpu_mem_gib`` (allocator peak; null on the CPU), ``vs_paper`` (switch
  variants: the paper variant's sec/kimg over this one's, ``median`` and a ``low``-``high`` range from
  the quartiles; sequential, not interleaved) and ``official`` (with ``--official``: a list of
  ``{label, info, seconds_per_rep, img_per_s, sec_per_kimg, peak_gpu_mem_gib, speedup_of_ours}``,
  ``speedup_of_ours`` being the spread of the per-round ratios official seconds / our seconds, rounds
  interleaved A/B/A/B; > 1 means ours is faster); ``ok`` fid cases add the fields of
  :func:`degan_bench.bench.fid.measure_fid_throughput`;
- ``compile_verdict``: from the paper256 variants: eager vs ``compile`` (and ``compile-cudagraphs``):
  ``speedup`` spreads and ``ship`` ("eager" | "compile" | "undecided" when the ranges overlap 1).
"""

from __future__ import annotations

from typing import Any

SCHEMA = "degan-bench/bench"
SCHEMA_VERSION = 1
STATUSES = ("ok", "skipped", "error")
_SPREAD_KEYS = ("median", "q1", "q3", "iqr", "n")
_TOP_KEYS = (
    "schema",
    "schema_version",
    "suite",
    "created_utc",
    "code_version",
    "device",
    "software",
    "settings",
    "budget",
    "cases",
    "compile_verdict",
)
_TRAIN_OK_KEYS = (
    "recipe",
    "recipe_hash",
    "compute_key",
    "resolved",
    "performance",
    "resolution",
    "batch",
    "batch_gpu",
    "objective",
    "cycle_minibatches",
    "cycles_per_rep",
    "reals_per_rep",
    "warmup_minibatches",
    "warmup_seconds",
    "seconds_per_rep",
    "img_per_s",
    "sec_per_kimg",
    "minibatches_per_s",
    "peak_gpu_mem_gib",
)


def _spread_problems(where: str, value: Any) -> list[str]:
    if not isinstance(value, dict) or any(k not in value for k in _SPREAD_KEYS):
        return [f"{where}: expected a spread with {', '.join(_SPREAD_KEYS)}"]
    if not value["q1"] <= value["median"] <= value["q3"]:
        return [f"{where}: quartiles out of order ({value['q1']} <= {value['median']} <= {value['q3']})"]
    return []


def validate_report(report: Any) -> list[str]:
    """Problems of a bench report against the schema above ([] = valid)."""
    if not isinstance(report, dict):
        return ["the report is not a JSON object"]
    problems = [f"missing key {key!r}" for key in _TOP_KEYS if key not in report]
    if report.get("schema") != SCHEMA:
        problems.append(f"schema is {report.get('schema')!r}, not {SCHEMA!r}")
    if report.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"schema_version {report.get('schema_version')!r} is not {SCHEMA_VERSION}")
    for key in ("type", "name"):
        if key not in (report.get("device") or {}):
            problems.append(f"device.{key} is missing")
    for key in ("torch", "cuda"):
        if key not in (report.get("software") or {}):
            problems.append(f"software.{key} is missing")
    for i, case in enumerate(report.get("cases") or []):
        where = f"cases[{i}] ({case.get('id', '?')})"
        if case.get("status") not in STATUSES:
            problems.append(f"{where}: status {case.get('status')!r}")
            continue
        if case["status"] != "ok":
            if not case.get("reason"):
                problems.append(f"{where}: a {case['status']} case needs a reason")
            continue
        if case.get("kind") == "train":
            problems += [f"{where}: missing {key!r}" for key in _TRAIN_OK_KEYS if key not in case]
            for key in ("img_per_s", "sec_per_kimg", "minibatches_per_s"):
                problems += _spread_problems(f"{where}.{key}", case.get(key))
            if len(case.get("seconds_per_rep", [])) != (case.get("img_per_s") or {}).get("n"):
                problems.append(f"{where}: seconds_per_rep and img_per_s.n disagree")
            for j, official in enumerate(case.get("official") or []):
                problems += _spread_problems(
                    f"{where}.official[{j}].speedup_of_ours", official.get("speedup_of_ours")
                )
        elif case.get("kind") == "fid":
            for name in ("generation", "features", "generation_plus_features"):
                problems += _spread_problems(
                    f"{where}.img_per_s.{name}", (case.get("img_per_s") or {}).get(name)
                )
        else:
            problems.append(f"{where}: kind {case.get('kind')!r}")
    return problems


def _fmt(spread: dict[str, Any] | None, digits: int = 1) -> str:
    """`` median [q1-q3]`` with a leading space, so wide numbers never run into the previous column."""
    if not spread:
        return " -"
    return f" {spread['median']:.{digits}f} [{spread['q1']:.{digits}f}-{spread['q3']:.{digits}f}]"


def format_table(report: dict[str, Any]) -> str:
    """The printed summary: one line per case (median [IQR]) and the official comparisons."""
    device = report["device"]
    software = report["software"]
    lines = [
        f"degan-bench bench --suite {report['suite']}: {device['name']} | torch {software['torch']} | "
        f"CUDA {software['cuda']} | budget {report['settings']['budget_minutes']:g} min, used "
        f"{report['budget']['used_seconds'] / 60:.1f} min",
        f"{'case':<40}{'status':<8}{'img/s':>22}{'sec/kimg':>22}{'it/s':>18}{'peak GiB':>9}  note",
    ]
    for case in report["cases"]:
        if case["status"] != "ok":
            lines.append(f"{case['id']:<40}{case['status']:<8}  {case['reason']}")
            continue
        if case["kind"] == "fid":
            rates = case["img_per_s"]
            peak = case.get("peak_gpu_mem_gib")
            lines.append(
                f"{case['id']:<40}{'ok':<8}{_fmt(rates['generation_plus_features']):>22}{'':>22}{'':>18}"
                f"{('-' if peak is None else f'{peak:.1f}'):>9}  gen {_fmt(rates['generation'])}, "
                f"features {_fmt(rates['features'])} img/s; {case['n_gen']} images ~"
                f"{case['projected_seconds']['median']:.0f} s; Inception {case['inception_weights']}"
            )
            continue
        peak = case.get("peak_gpu_mem_gib")
        note = ""
        if case.get("vs_paper"):
            vs = case["vs_paper"]
            note = f"x{vs['median']:.2f} vs paper [{vs['low']:.2f}-{vs['high']:.2f}]"
        lines.append(
            f"{case['id']:<40}{'ok':<8}{_fmt(case['img_per_s']):>22}{_fmt(case['sec_per_kimg'], 2):>22}"
            f"{_fmt(case['minibatches_per_s'], 2):>18}{('-' if peak is None else f'{peak:.1f}'):>9}  {note}"
        )
        for official in case.get("official") or []:
            speed = official["speedup_of_ours"]
            lines.append(
                f"  vs {official['label']:<36}{_fmt(official['img_per_s']):>22}"
                f"{_fmt(official['sec_per_kimg'], 2):>22}  ours x{speed['median']:.2f} "
                f"[{speed['q1']:.2f}-{speed['q3']:.2f}] (official s / our s, {speed['n']} interleaved rounds)"
            )
    verdict = report.get("compile_verdict") or {}
    if verdict.get("ship"):
        lines.append(f"compile verdict: ship {verdict['ship']} ({verdict.get('why', '')})")
    return "\n".join(lines)
