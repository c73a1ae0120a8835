"""Runs a bench suite under a time budget and assembles the report (schema: bench/report.py).

Per training case: build the recipe's real objective (:mod:`degan_bench.bench.trainer`), run the
variant's warm-up minibatches (cuDNN autotuning, allocator growth, compilation; excluded), then timed
repetitions of whole schedule cycles (as many cycles per repetition as make it at least
``min_rep_seconds`` long). With ``--official``, the paper variant of a case that has an official
counterpart is timed interleaved with the official step(s): ours, official, ours, official, ...

Budget: cases run in the suite's priority order. Before a case, its cost is estimated (set-up prior or
what the same model took so far, plus ``min_reps`` repetitions); if that does not fit in what is left,
the case is skipped with the reason. A running case stops adding repetitions when the next one would
overrun. The only things that can exceed the budget are a warm-up or a single repetition in flight.
"""

from __future__ import annotations

import contextlib
import gc
import math
import platform
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from degan_bench.bench.cases import FidCase, Suite, TrainCase
from degan_bench.bench.flops import compute_key
from degan_bench.bench.official import (
    BIGGAN_CIFAR,
    STYLEGAN2_ADA,
    CodeBase,
    OfficialBigGAN,
    OfficialStep,
    OfficialStyleGAN2,
)
from degan_bench.bench.report import SCHEMA, SCHEMA_VERSION
from degan_bench.bench.timing import Deadline, interleave, paired_ratios, spread, timed
from degan_bench.bench.trainer import BenchTrainer, build_trainer
from degan_bench.core.rundir import code_version, utc_now
from degan_bench.training.parts import configure_backends

#: assumed cost of a variant's cycle relative to the paper variant of the same model, before measuring
VARIANT_COST = {
    "paper": 1.0,
    "tf32": 0.5,
    "bf16": 0.5,
    "channels_last": 1.0,
    "compile": 0.9,
    "compile-cudagraphs": 0.9,
}


@dataclass
class Contestant:
    """Something that trains whole cycles: ours (a BenchTrainer) or an official step."""

    label: str
    reals_per_cycle: int
    run_cycle: Callable[[], int]
    warmup: Callable[[int], None]
    prepare: Callable[[], None]  # backend flags before each repetition (contestants share the process)
    peak_gib: float | None = None  # allocator peak while it ran, less what the other contestants hold
    resident_bytes: int = 0  # what it keeps allocated between repetitions (weights, optimizer state)


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            count=torch.cuda.device_count(),
        )
    else:
        info.update(
            name=f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            capability=None,
            memory_gib=None,
        )
    return info


def software_info() -> dict[str, Any]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
    }


def _ours(trainer: BenchTrainer, label: str) -> Contestant:
    perf = trainer.resolved.recipe.performance

    def warmup(minibatches: int) -> None:
        configure_backends(perf, trainer.device)
        for _ in range(minibatches):
            trainer.minibatch()

    return Contestant(
        label,
        trainer.reals_per_cycle,
        trainer.run_cycle,
        warmup,
        lambda: configure_backends(perf, trainer.device),
    )


def _official(step: OfficialStep) -> Contestant:
    return Contestant(step.label, step.reals_per_cycle, step.run_cycle, step.warmup, step.backends)


class SuiteRunner:
    def __init__(
        self,
        suite: Suite,
        device: torch.device,
        *,
        budget_minutes: float | None = None,
        reps: int | None = None,
        official: dict[str, CodeBase] | None = None,
        only: list[str] | None = None,
        log: Callable[[str], None] = print,
        on_case: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.on_case = on_case  # called with the report so far after every case (incremental JSON)
        self.suite = suite
        self.device = device
        self.budget_minutes = suite.default_budget_minutes if budget_minutes is None else budget_minutes
        self.reps = reps or suite.reps
        self.min_reps = min(suite.min_reps, self.reps)
        self.official = official or {}
        self.only = only
        self.log = log
        self.cycle_seconds: dict[str, float] = {}  # case name -> paper-equivalent seconds per cycle
        self.seen_setup: dict[str, float] = {}
        self.cases: list[dict[str, Any]] = []
        self.deadline = Deadline(self.budget_minutes * 60)
        self.started = utc_now()

    # -- selection and budget --------------------------------------------------------------------
    def selected(self) -> list[TrainCase | FidCase]:
        cases = list(self.suite.cases)
        if self.only is not None:
            known = {c.id for c in cases} | {c.name for c in cases}
            unknown = [x for x in self.only if x not in known]
            if unknown:
                from degan_bench.errors import DeganError

                raise DeganError(
                    f"--cases {', '.join(unknown)}: unknown", fix="known: " + ", ".join(sorted(known))
                )
            cases = [c for c in cases if c.id in self.only or c.name in self.only]
        return cases

    def _estimate(self, case: TrainCase | FidCase, contestants: int) -> float:
        compiled = isinstance(case, TrainCase) and case.variant.name.startswith("compile")
        setup = (
            self.suite.compile_prior_seconds
            if compiled
            else self.seen_setup.get(case.name, self.suite.setup_prior_seconds)
        )
        cycle = self.cycle_seconds.get(case.name)
        if cycle is None:
            return setup
        factor = VARIANT_COST.get(case.variant.name, 1.0) if isinstance(case, TrainCase) else 1.0
        rep = max(cycle * factor, self.suite.min_rep_seconds)
        return setup + self.min_reps * rep * contestants

    # -- running ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        for case in self.selected():
            entry: dict[str, Any] = {
                "id": case.id,
                "name": case.name,
                "role": case.role,
                "title": case.title,
                "kind": "fid" if isinstance(case, FidCase) else "train",
                "variant": case.variant.name if isinstance(case, TrainCase) else "throughput",
            }
            reason = self._skip_reason(case)
            if reason is not None:
                entry.update(status="skipped", reason=reason)
                self.log(f"{case.id}: skipped ({reason})")
                self.cases.append(entry)
                if self.on_case is not None:
                    self.on_case(self.report())
                continue
            self.log(f"{case.id}: running ({self.deadline.left():.0f} s of the budget left)")
            try:
                if isinstance(case, FidCase):
                    entry.update(self._run_fid(case))
                else:
                    entry.update(self._run_train(case))
                entry.setdefault("status", "ok")
                entry.setdefault("reason", None)
            except Exception as err:  # one broken case must not lose the others
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                entry.update(
                    status="error",
                    reason=f"{type(err).__name__}: {first}"[:500],
                    traceback=traceback.format_exc(limit=6),
                )
                self.log(f"{case.id}: error ({entry['reason']})")
            finally:
                self._free()
            self.cases.append(entry)
            if self.on_case is not None:
                self.on_case(self.report())
        return self.report()

    def _skip_reason(self, case: TrainCase | FidCase) -> str | None:
        if isinstance(case, TrainCase) and case.variant.cuda_only and self.device.type != "cuda":
            return f"{case.variant.name} applies to CUDA only"
        contestants = 1 + len(self._official_for(case))
        need, left = self._estimate(case, contestants), self.deadline.left()
        if need > left:
            return f"does not fit the budget: needs ~{need:.0f} s, {max(left, 0):.0f} s left"
        return None

    def _official_for(self, case: TrainCase | FidCase) -> list[tuple[str, dict[str, Any]]]:
        """(code base, adapter options) of the official steps this case is compared with."""
        if (
            not isinstance(case, TrainCase)
            or case.variant.name != "paper"
            or case.official not in self.official
        ):
            return []
        cuda = self.device.type == "cuda"
        if case.official == STYLEGAN2_ADA:
            return [(STYLEGAN2_ADA, {"fp16_res": 0}), *([(STYLEGAN2_ADA, {"fp16_res": 4})] if cuda else [])]
        return [(BIGGAN_CIFAR, {}), *([(BIGGAN_CIFAR, {"torch_default_tf32": True})] if cuda else [])]

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        with contextlib.suppress(Exception):  # dynamo unavailable: nothing was compiled
            torch._dynamo.reset()

    def _reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _warm(self, contestant: Contestant, minibatches: int, others_bytes: int) -> float:
        contestant.prepare()
        self._reset_peak()
        seconds = timed(lambda: contestant.warmup(minibatches), self.device)
        self._record_peak(contestant, others_bytes)
        return seconds

    def _record_peak(self, contestant: Contestant, others_bytes: int) -> None:
        if self.device.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(self.device) - others_bytes) / 2**30
            contestant.peak_gib = max(contestant.peak_gib or 0.0, peak)

    def _rep(self, contestant: Contestant, cycles: int) -> Callable[[], float]:
        def rep() -> float:
            contestant.prepare()
            others = self._allocated() - contestant.resident_bytes
            self._reset_peak()
            seconds = timed(lambda: [contestant.run_cycle() for _ in range(cycles)], self.device)
            self._record_peak(contestant, others)
            return seconds

        return rep

    def _run_train(self, case: TrainCase) -> dict[str, Any]:
        variant = case.variant
        resolved = case.spec.resolve(variant.overrides)
        recipe = resolved.recipe
        warm = variant.warmup_minibatches
        official_errors: list[dict[str, str]] = []
        with tempfile.TemporaryDirectory() as tmp:
            before = self._allocated()
            trainer = build_trainer(
                resolved, self.device, workdir=Path(tmp), compile_mode=variant.compile_mode
            )
            ours = _ours(trainer, "degan-bench")
            warmup_seconds = self._warm(ours, warm, before)
            ours.resident_bytes = self._allocated() - before
            self.seen_setup[case.name] = warmup_seconds
            # a cycle's time from one more minibatch (minibatch 0 ran the lazy phases too: not typical)
            cycle_estimate = timed(trainer.minibatch, self.device) * trainer.cycle
            if variant.name == "paper" or case.name not in self.cycle_seconds:
                self.cycle_seconds[case.name] = cycle_estimate / VARIANT_COST.get(variant.name, 1.0)
            contestants = {"ours": ours}
            steps: dict[str, tuple[OfficialStep, float]] = {}
            for i, (name, options) in enumerate(self._official_for(case)):
                before = self._allocated()
                try:
                    step = self._build_official(name, resolved, options)
                    key = f"official{i}"
                    contestants[key] = _official(step)
                    steps[key] = (step, self._warm(contestants[key], warm, before))
                    contestants[key].resident_bytes = self._allocated() - before
                except Exception as err:  # the official code failed: keep our measurement
                    official_errors.append(
                        {
                            "code": name,
                            "options": str(options),
                            "error": f"{type(err).__name__}: {str(err).strip()[:300]}",
                        }
                    )
                    self.log(f"{case.id}: official {name} {options} failed ({official_errors[-1]['error']})")
            # any run of `cycle` consecutive minibatches holds each phase as often as a whole cycle
            cycles = max(1, math.ceil(self.suite.min_rep_seconds / max(cycle_estimate, 1e-6)))
            rep_seconds = cycle_estimate * cycles * len(contestants)
            affordable = int(max(self.deadline.left(), 0) // max(rep_seconds, 1e-6))
            reps = max(1, min(self.reps, affordable))
            samples = interleave(
                {k: self._rep(c, cycles) for k, c in contestants.items()}, reps, self.deadline
            )
            trainer.close()
        peaks = {k: None if c.peak_gib is None else round(c.peak_gib, 2) for k, c in contestants.items()}
        reals = trainer.reals_per_cycle * cycles
        seconds = samples["ours"]
        entry = {
            "recipe": case.spec.to_dict(),
            "recipe_hash": resolved.hash,
            "compute_key": compute_key(resolved),
            "resolved": resolved.data,
            "performance": resolved.data["performance"],
            "compile_mode": variant.compile_mode,
            "variant_description": variant.description,
            "resolution": recipe.data.resolution,
            "batch": recipe.training.batch,
            "batch_gpu": min(recipe.training.batch_gpu or recipe.training.batch, recipe.training.batch),
            "objective": recipe.loss.kind,
            "phases": [[p.name, p.interval] for p in getattr(trainer.objective, "phases", [])] or None,
            "cycle_minibatches": trainer.cycle,
            "cycles_per_rep": cycles,
            "reals_per_rep": reals,
            "warmup_minibatches": warm,
            "warmup_seconds": round(warmup_seconds, 3),
            "seconds_per_rep": [round(s, 5) for s in seconds],
            **self._rates(seconds, reals, trainer.cycle * cycles),
            "peak_gpu_mem_gib": peaks["ours"],
        }
        if len(seconds) < self.min_reps:
            entry["note"] = (
                f"only {len(seconds)} repetition(s) fitted the budget: the spread is not meaningful"
            )
        if steps or official_errors:
            entry["official"] = []
            for key, (step, warm_s) in steps.items():
                theirs = samples[key]
                entry["official"].append(
                    {
                        "label": step.label,
                        "info": step.info,
                        "warmup_seconds": round(warm_s, 3),
                        "seconds_per_rep": [round(s, 5) for s in theirs],
                        **self._rates(theirs, step.reals_per_cycle * cycles, step.cycle * cycles),
                        "peak_gpu_mem_gib": peaks[key],
                        "speedup_of_ours": spread(paired_ratios(theirs, seconds)).to_dict(4),
                    }
                )
            if official_errors:
                entry["official_errors"] = official_errors
        return entry

    def _allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0

    def _build_official(self, name: str, resolved: Any, options: dict[str, Any]) -> OfficialStep:
        codebase = self.official[name]
        if name == STYLEGAN2_ADA:
            return OfficialStyleGAN2(codebase, resolved, self.device, **options)
        return OfficialBigGAN(codebase, resolved, self.device, **options)

    @staticmethod
    def _rates(seconds: list[float], reals: int, minibatches: int) -> dict[str, Any]:
        per_rep = spread(seconds)
        return {
            "img_per_s": per_rep.scaled(reals).to_dict(3),
            "sec_per_kimg": {
                **per_rep.to_dict(),
                **{k: round(getattr(per_rep, k) * 1000 / reals, 5) for k in ("median", "q1", "q3")},
                "iqr": round(per_rep.iqr * 1000 / reals, 5),
            },
            "minibatches_per_s": per_rep.scaled(minibatches).to_dict(4),
        }

    def _run_fid(self, case: FidCase) -> dict[str, Any]:
        from degan_bench.bench.fid import measure_fid_throughput

        resolved = case.spec.resolve()
        return measure_fid_throughput(
            resolved,
            self.device,
            images=case.images,
            batch_size=case.batch_size,
            reps=self.reps,
            deadline=self.deadline,
        )

    # -- the report ---------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        by_id = {c["id"]: c for c in self.cases}
        for case in self.cases:
            paper = by_id.get(f"{case['name']}/paper")
            if (
                case["kind"] == "train"
                and case["variant"] != "paper"
                and case["status"] == "ok"
                and paper
                and paper["status"] == "ok"
            ):
                a, b = paper["sec_per_kimg"], case["sec_per_kimg"]
                case["vs_paper"] = {
                    "median": round(a["median"] / b["median"], 4),
                    "low": round(a["q1"] / b["q3"], 4),
                    "high": round(a["q3"] / b["q1"], 4),
                }
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "suite": self.suite.name,
            "created_utc": self.started,
            "code_version": code_version(),
            "device": device_info(self.device),
            "software": software_info(),
            "settings": {
                "budget_minutes": self.budget_minutes,
                "reps": self.reps,
                "min_reps": self.min_reps,
                "min_rep_seconds": self.suite.min_rep_seconds,
                "official": {name: str(cb.root) for name, cb in self.official.items()},
                "cases": self.only,
                "notes": self.suite.notes,
            },
            "budget": {
                "seconds": round(self.deadline.seconds, 1),
                "used_seconds": round(self.deadline.used(), 1),
            },
            "cases": self.cases,
            "compile_verdict": compile_verdict(by_id, self.min_reps),
        }


def compile_verdict(by_id: dict[str, dict[str, Any]], min_reps: int = 3) -> dict[str, Any]:
    """Eager or compiled by default: the compiled variants' speed-up over eager paper numerics, decided
    only when the whole quartile range is on one side of 1."""
    out: dict[str, Any] = {}
    paper = by_id.get("stylegan2-paper256/paper") or {}
    enough = (paper.get("img_per_s") or {}).get("n", 0) >= min_reps
    for variant in ("compile", "compile-cudagraphs"):
        case = by_id.get(f"stylegan2-paper256/{variant}")
        if case and case.get("vs_paper") and enough and case["img_per_s"]["n"] >= min_reps:
            out[variant] = case["vs_paper"]
    if not out:
        return {
            "ship": None,
            "why": f"no compiled variant measured with {min_reps}+ repetitions beside eager",
        }
    best_name, best = max(out.items(), key=lambda kv: kv[1]["median"])
    if best["low"] > 1.0:
        ship, why = (
            "compile",
            f"{best_name} is faster over its whole range (x{best['low']:.2f}-{best['high']:.2f})",
        )
    elif best["high"] < 1.0:
        ship, why = "eager", f"every compiled variant is slower (best {best_name} x{best['median']:.2f})"
    else:
        ship, why = (
            "undecided",
            f"{best_name} x{best['median']:.2f}, range [{best['low']:.2f}-{best['high']:.2f}] spans 1",
        )
    return {**out, "ship": ship, "why": why}
