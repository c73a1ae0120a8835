"""Evaluate a run directory's checkpoints, and fill in its pending metric records.

``metrics.jsonl`` is append-only. A ``pending`` record (the weights were unavailable when training
or the demo wanted the number) stays; ``degan-bench eval RUN`` evaluates the checkpoint it names under
the protocol it recorded (same generated count and eval seed, rebuilt from its ``protocol_record``)
and appends an ``ok`` record carrying ``fills_pending`` (the pending record's timestamp). A pending
record is open while no later ``ok`` record has the same protocol and checkpoint file.

Checkpoints come from ``degan_bench.core.checkpoint``: ``list_checkpoints(run_dir)``
(``{"last": path, "best": path, "<file name>": path}``) and ``load_generator(path, device)``
(``(G_ema, resolved recipe dict)``). The recipe gives the dataset, resolution and subset rule.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from degan_bench.core.checkpoint import CKPT_RE
from degan_bench.core.rundir import RunDir
from degan_bench.errors import ResumeError
from degan_bench.metrics.evaluate import Log, default_device, evaluate_generator_many, resolve_protocols
from degan_bench.metrics.protocols import Protocol


def checkpoint_kimg(path: Path) -> float | None:
    """kimg from a ``ckpt-<cur_nimg:010d>.pt`` name (None for ``best.pt``)."""
    match = CKPT_RE.match(path.name)
    return int(match.group(1)) / 1000 if match else None


def _checkpoint_of(record: dict[str, Any]) -> str:
    return str(record.get("checkpoint_file") or record.get("checkpoint") or "last")


def open_pending(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pending records not yet followed by an ``ok`` record of the same protocol and checkpoint."""
    pending: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (str(record.get("protocol")), _checkpoint_of(record))
        if record.get("status") == "ok":
            pending.pop(key, None)
        elif record.get("status") == "pending":
            pending[key] = record
    return list(pending.values())


def _selected_checkpoints(which: str, available: dict[str, Path]) -> list[str]:
    if which == "all":
        numbered = sorted(name for name in available if CKPT_RE.match(name))
        return numbered + (["best"] if "best" in available else [])
    if which not in available:
        names = ", ".join(sorted(available)) or "none"
        raise ResumeError(
            f"checkpoint {which!r} not found (available: {names})",
            fix="use --checkpoint last|best|all or a checkpoint file name",
        )
    return [which]


def evaluate_run(
    run_dir: str | Path,
    *,
    protocols: Sequence[str] | None = None,
    checkpoint: str = "last",
    device: str | torch.device | None = None,
    batch_size: int = 64,
    weights_path: str | Path | None = None,
    weights_sha256: str | None = None,
    seed: int | None = None,
    n_gen: int | None = None,
    log: Log | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Fill the run's open pending records, then evaluate ``protocols`` (default: the recipe's
    ``evaluation.protocols`` when nothing is pending) on ``checkpoint``; append and return the records."""
    from degan_bench.core.checkpoint import list_checkpoints, load_generator

    run = RunDir(run_dir)
    if not run.exists():
        raise ResumeError(
            f"{run.path} is not a run directory (no run.json)", fix="pass a directory under runs/"
        )
    run.read_info()  # a run.json of the wrong shape is a one-line error here, not a traceback later
    available = list_checkpoints(run.path)
    eval_device = default_device(device)

    # (checkpoint key) -> {(protocol id, eval seed): (protocol, pending record or None)}
    jobs: dict[str, dict[tuple[str, int], tuple[Protocol, dict[str, Any] | None]]] = {}
    pending = open_pending(run.read_metrics())
    for record in pending:
        protocol = Protocol.from_record(record["protocol_record"])
        jobs.setdefault(_checkpoint_of(record), {})[(protocol.id, protocol.eval_seed)] = (protocol, record)
    wanted = list(protocols or [])
    if not wanted and not pending:
        wanted = list(run.read_recipe_dict().get("evaluation", {}).get("protocols", []))
        if not wanted:
            raise ResumeError(
                f"{run.path}: nothing pending and the recipe names no protocols",
                fix="pass --protocol, e.g. --protocol fid5k_train",
            )
    if wanted:
        for key in _selected_checkpoints(checkpoint, available):
            for protocol in resolve_protocols(wanted, seed=seed, n_gen=n_gen):
                jobs.setdefault(key, {}).setdefault((protocol.id, protocol.eval_seed), (protocol, None))

    records: list[dict[str, Any]] = []
    for key, items in jobs.items():
        path = available.get(key)
        if path is None:
            if log:
                log(
                    f"skipped {', '.join(p.id for p, _ in items.values())}: checkpoint {key} no longer exists"
                )
            continue
        started = time.perf_counter()
        G, recipe = load_generator(path, eval_device)
        data = recipe.get("data", {})
        results = evaluate_generator_many(
            G,
            [protocol for protocol, _ in items.values()],
            dataset=recipe["dataset"],
            resolution=int(data["resolution"]),
            subset_rule=data.get("subset_rule"),
            device=eval_device,
            batch_size=batch_size,
            weights_path=weights_path,
            weights_sha256=weights_sha256,
            log=log,
            progress=progress,
        )
        for result, (_protocol, pending_record) in zip(results, items.values(), strict=True):
            result.update(checkpoint=key, checkpoint_file=path.name, kimg=checkpoint_kimg(path))
            if pending_record is not None:
                # Keep what the pending record stood for (last / best / selection) so tables find it.
                for label in ("checkpoint", "purpose", "selection", "cur_nimg"):
                    if label in pending_record:
                        result[label] = pending_record[label]
                result["fills_pending"] = pending_record.get("timestamp")
                if result["kimg"] is None:
                    result["kimg"] = pending_record.get("kimg")
            run.append_metric(result)
            records.append(result)
        if eval_device.type == "cuda":
            info = run.read_info()
            info.eval_gpu_hours += (time.perf_counter() - started) / 3600
            run.write_info(info)
    return records
