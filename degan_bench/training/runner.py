"""From ``degan-bench run`` to a running loop: run directory, resume checks, data, device.

A run directory is identified by recipe hash and seed (``<method>-<dataset>-<preset>-s<seed>-<hash8>``
under the runs dir unless ``--out`` is given), so re-running the same command finds the same run.

Resume rules (mimicry's safety check, stylegan2-ada's layout):

- the directory exists and neither ``--resume`` is given: refuse (nothing is overwritten);
- ``--resume auto``: continue the newest readable checkpoint of that directory; a complete run is
  left alone; a directory without a checkpoint starts from scratch in place;
- ``--resume PATH``: a run directory or one of its checkpoint files;
- a different resolved recipe (hash) or seed is refused with the differing keys, unless ``--force``,
  which is recorded in the run log and in the session record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.device import parse_device
from degan_bench.core.rundir import RunDir, RunInfo, utc_now
from degan_bench.errors import ResumeError
from degan_bench.paths import runs_dir
from degan_bench.recipes.loader import UNHASHED_KEYS, ResolvedRecipe, canonical_hash, diff_recipes


def run_name_prefix(resolved: ResolvedRecipe, seed: int) -> str:
    """``<method>-<dataset>[-<backbone>]-<preset>-s<seed>-``; the backbone is named where it is not the
    cell's default (``diffaugment-cifar10-10pct-stylegan2-...`` beside the BigGAN one)."""
    from degan_bench.recipes.loader import default_backbone

    arch = resolved.model.arch
    tag = "" if arch == default_backbone(resolved.method, resolved.dataset) else f"-{arch}"
    return f"{resolved.method}-{resolved.dataset}{tag}-{resolved.preset}-s{seed}-"


def default_run_name(resolved: ResolvedRecipe, seed: int) -> str:
    return run_name_prefix(resolved, seed) + resolved.short_hash[:8]


@dataclass
class RunPlan:
    run: RunDir
    resume_payload: dict[str, Any] | None
    already_complete: bool = False
    forced: bool = False
    notice: str | None = None  # one line the CLI shows before training (e.g. a resume that found nothing)
    created: bool = False  # the directory was made by this plan (removed again if the run cannot start)


def _locate(
    resume: str | None, out: Path | None, resolved: ResolvedRecipe, seed: int
) -> tuple[RunDir, Path | None]:
    """The run directory, and an explicit checkpoint file when ``--resume`` names one."""
    if resume not in (None, "auto"):
        target = Path(resume)
        if target.is_file():
            return RunDir(target.parent.parent), target
        if target.is_dir():
            return RunDir(target), None
        raise ResumeError(
            f"--resume {resume}: no such run directory or checkpoint file",
            fix="pass a run directory, a checkpoint path, or 'auto'",
        )
    return RunDir(out if out is not None else runs_dir() / default_run_name(resolved, seed)), None


def run_dir_for(resolved: ResolvedRecipe, seed: int, *, out: Path | None = None,
                resume: str | None = None) -> Path:  # fmt: skip
    """The run directory ``plan_run`` will use (the directory a lease is taken on before planning)."""
    return _locate(resume, out, resolved, seed)[0].path


def plan_run(
    resolved: ResolvedRecipe,
    seed: int,
    *,
    out: Path | None = None,
    resume: str | None = None,
    force: bool = False,
) -> RunPlan:
    """Decide where the run goes and what it resumes from; creates the directory for a fresh run."""
    run, explicit_ckpt = _locate(resume, out, resolved, seed)
    if not run.exists():
        if explicit_ckpt is not None or resume not in (None, "auto"):
            raise ResumeError(f"{run.path} is not a degan-bench run directory (no run.json)")
        notice = _other_recipes_notice(run, resolved, seed) if resume == "auto" and out is None else None
        _create(run, resolved, seed)
        if notice:
            run.log(notice)
        return RunPlan(run=run, resume_payload=None, notice=notice, created=True)
    if resume is None:
        raise ResumeError(
            f"run directory {run.path} already exists",
            fix="continue it with --resume auto, or pick another directory with --out",
        )
    info = run.read_info()
    forced = _check_same_experiment(run, info, resolved, seed, force)
    if info.status == "complete" and explicit_ckpt is None:
        return RunPlan(run=run, resume_payload=None, already_complete=True, forced=forced)
    for leftover in ckpt.clean_temp_files(run):
        run.log(f"removed {leftover.name}, a partial write of a process that was killed")
    skipped: list[str] = []
    if explicit_ckpt is not None:
        payload = ckpt.load_checkpoint(explicit_ckpt)
        source = explicit_ckpt
    else:
        found = ckpt.latest_valid_checkpoint(
            run, log=lambda message: (run.log(message), skipped.append(message))
        )
        if found is None:
            run.log("resume: no checkpoint yet; starting from scratch in place")
            return RunPlan(run=run, resume_payload=None, forced=forced, notice="; ".join(skipped) or None)
        source, payload = found
    if payload.get("seed") != seed and not force:
        raise ResumeError(
            f"{source} was trained with seed {payload.get('seed')}, not {seed}",
            fix=f"use --seed {payload.get('seed')}, or --force",
        )
    payload["_forced"] = forced
    payload["_source"] = str(source)
    run.log(f"resume from {source.name} (kimg {payload['cur_nimg'] / 1000:.3f})")
    if skipped:  # a newer checkpoint was unreadable: say so where the user looks, not only in log.txt
        skipped.append(f"resuming from {source.name} (kimg {payload['cur_nimg'] / 1000:.3f}) instead")
    return RunPlan(run=run, resume_payload=payload, forced=forced, notice="; ".join(skipped) or None)


def _other_recipes_notice(run: RunDir, resolved: ResolvedRecipe, seed: int) -> str | None:
    """``--resume auto`` found no run of this recipe hash: name the runs of the same cell and seed that
    were made with another recipe (typically a changed ``--set``), so a new run never starts silently."""
    prefix = run_name_prefix(resolved, seed)
    others = sorted(p for p in run.path.parent.glob(prefix + "*") if p != run.path and RunDir(p).exists())
    if not others:
        return None
    described = []
    for path in others[:3]:
        try:
            saved = RunDir(path).read_recipe_dict()
        except (OSError, ValueError):
            described.append(path.name)
            continue
        diffs = _recipe_diffs(saved, resolved.data)
        described.append(f"{path.name} ({'; '.join(diffs[:3])}{' ...' if len(diffs) > 3 else ''})")
    more = f" and {len(others) - 3} more" if len(others) > 3 else ""
    return (
        f"--resume auto: no run of this recipe (hash {resolved.short_hash[:8]}) yet, so a new run starts in "
        f"{run.path}; the same cell and seed has runs with another recipe: {', '.join(described)}{more}. "
        f"To continue one instead, pass --resume {others[0]} (plus --force to accept the changed recipe)"
    )


def _recipe_diffs(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two resolved recipes, documentation fields aside."""
    return diff_recipes(*({k: v for k, v in d.items() if k not in UNHASHED_KEYS} for d in (saved, new)))


def _create(run: RunDir, resolved: ResolvedRecipe, seed: int) -> None:
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_recipe_dict(resolved.data)
    info = RunInfo(
        run_id=run.path.name,
        method=resolved.method,
        dataset=resolved.dataset,
        preset=resolved.preset,
        seed=seed,
        recipe_hash=resolved.hash,
        total_nimg=round(resolved.recipe.training.kimg * 1000),
        torch_version=torch.__version__,
    )
    run.write_info(info)
    run.log(
        f"created run {run.path.name}: recipe {resolved.short_hash} from {resolved.source}"
        + (f" with --set {' '.join(resolved.overrides)}" if resolved.overrides else "")
    )


def _check_same_experiment(
    run: RunDir, info: RunInfo, resolved: ResolvedRecipe, seed: int, force: bool
) -> bool:
    """Refuse a resume whose recipe or seed differs (unless forced). Returns True when forced."""
    saved = run.read_recipe_dict()
    problems = []
    if canonical_hash(saved) != resolved.hash:
        diffs = _recipe_diffs(saved, resolved.data)
        problems.append("recipe differs: " + "; ".join(diffs[:8]) + (" ..." if len(diffs) > 8 else ""))
    if info.seed != seed:
        problems.append(f"seed differs: {info.seed} -> {seed}")
    if not problems:
        return False
    if not force:
        raise ResumeError(
            f"cannot resume {run.path}: {' | '.join(problems)}",
            fix="rerun with the run's original recipe and seed, or add --force (recorded in the run log)",
        )
    stamp = utc_now().replace(":", "")
    (run.path / f"recipe.before-{stamp}.yaml").write_text(run.recipe_path.read_text())
    run.write_recipe_dict(resolved.data)
    info.recipe_hash = resolved.hash
    info.total_nimg = round(resolved.recipe.training.kimg * 1000)
    if info.status == "complete" and info.cur_nimg < info.total_nimg:
        info.status = "stopped"
    run.write_info(info)
    run.log(f"FORCED resume despite: {' | '.join(problems)}")
    return True


def select_device(requested: str) -> torch.device:
    """``--device`` to a torch device; a one-line error for a bad or missing device."""
    return parse_device(requested)
