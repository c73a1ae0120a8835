"""Maintenance the loop runs at the end of every tick, as hooks (in this order):

1. :class:`Report`: status line, ``stats.jsonl``, TensorBoard, non-finite loss warning;
2. :class:`SampleGrids`: ``fakes_<kimg>.png`` every ``image_snapshot_ticks`` ticks and at the end;
3. :class:`Evaluation`: the headline protocol every ``evaluation.interval_kimg`` (at the first tick end
   past each multiple, after tick 0 too with ``evaluation.at_first_tick``, and at the end), which may
   mark a new best;
4. :class:`Checkpointing`: a checkpoint every ``snapshot_ticks`` ticks, at a new best, at the end and
   when stopping (a stop inside a tick saves the tick in progress);
5. :class:`RunAccounting`: ``run.json`` (progress, sessions, GPU-hours).

A hook sees one :class:`Tick`. Only :class:`Checkpointing` and :class:`RunAccounting` run for a stop
inside a tick (``tick.ended`` is False): nothing is reported, drawn or evaluated for half a tick.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.distributed import barrier, broadcast_flag, gather_objects
from degan_bench.core.rundir import RunDir, RunInfo, Session
from degan_bench.data.store import PreparedDataset
from degan_bench.training.grids import render_fakes, save_grid
from degan_bench.training.state import Progress, TrainingState
from degan_bench.training.stats import TensorBoardWriter, status_line


@dataclass
class Tick:
    prog: Progress
    record: dict[str, Any] | None  # the stats.jsonl record (None for a stop inside a tick)
    done: bool
    stopping: bool
    ended: bool  # a tick boundary (False: a stop inside a tick)
    new_best: bool = False
    checkpoint: Path | None = None


class Hook:
    def on_tick(self, tick: Tick) -> None:
        raise NotImplementedError


class Report(Hook):
    def __init__(
        self,
        run: RunDir,
        tensorboard: TensorBoardWriter,
        say: Callable[[str], None],
        log: Callable[[str], None],
        is_main: bool,
    ) -> None:
        self.run, self.tensorboard, self.say, self.log, self.is_main = run, tensorboard, say, log, is_main

    def on_tick(self, tick: Tick) -> None:
        if not tick.ended or tick.record is None:
            return
        if self.is_main:
            self.say(status_line(tick.record))
            self.run.append_stats(tick.record)
            self.tensorboard.write(tick.record)
        bad = [k for k, v in tick.record["losses"].items() if not math.isfinite(v)]
        if bad:
            self.log(f"warning: non-finite losses at kimg {tick.record['kimg']:.1f}: {', '.join(bad)}")


class SampleGrids(Hook):
    def __init__(
        self, run: RunDir, G_ema: torch.nn.Module, latents: tuple[torch.Tensor, torch.Tensor], batch: int,
        grid: tuple[int, int], every_ticks: int, is_main: bool,
    ) -> None:  # fmt: skip
        self.run, self.G_ema, self.latents, self.batch = run, G_ema, latents, batch
        self.grid, self.every_ticks, self.is_main = grid, every_ticks, is_main

    def on_tick(self, tick: Tick) -> None:
        if not (self.is_main and tick.ended and (tick.done or tick.prog.cur_tick % self.every_ticks == 0)):
            return
        images = render_fakes(self.G_ema, *self.latents, self.batch)
        save_grid(images, self.run.path / f"fakes_{tick.prog.cur_nimg // 1000:06d}.png", self.grid)


class Evaluation(Hook):
    """The headline protocol during training (best-checkpoint selection) and as ``last`` at the end."""

    def __init__(self, setup: Any, G_ema: torch.nn.Module, info: RunInfo | None, log: Callable[[str], None],
                 is_main: bool, device: torch.device) -> None:  # fmt: skip
        self.setup, self.G_ema, self.info, self.log = setup, G_ema, info, log
        self.is_main, self.device = is_main, device
        recipe = setup.resolved.recipe
        self.enabled = bool(setup.evaluator and recipe.evaluation.protocols)
        self.interval = recipe.evaluation.interval_kimg
        self.at_first_tick = recipe.evaluation.at_first_tick

    def on_tick(self, tick: Tick) -> None:
        if not (self.enabled and tick.ended):
            return
        prog = tick.prog
        every = int(self.interval * 1000) if self.interval is not None else None
        due = tick.done or (
            every is not None
            and (
                prog.cur_nimg // every > prog.last_eval_nimg // every
                or (self.at_first_tick and prog.cur_tick == 0)
            )
        )
        if not due:
            return
        new_best = False
        if self.is_main:
            new_best, seconds = _evaluate_headline(
                self.setup, self.G_ema, prog, self.setup.resolved.recipe, self.log, tick.done
            )
            if self.info is not None and self.device.type == "cuda":
                self.info.eval_gpu_hours += seconds / 3600
        prog.last_eval_nimg = prog.cur_nimg
        tick.new_best = broadcast_flag(new_best, self.device)


class Checkpointing(Hook):
    def __init__(self, run: RunDir, state: TrainingState, keep: int, every_ticks: int, is_main: bool) -> None:
        self.run, self.state, self.keep, self.every_ticks, self.is_main = (
            run,
            state,
            keep,
            every_ticks,
            is_main,
        )
        self.last: Path | None = None

    def on_tick(self, tick: Tick) -> None:
        if tick.ended and not (
            tick.done or tick.stopping or tick.new_best or tick.prog.cur_tick % self.every_ticks == 0
        ):
            return
        tick.checkpoint = self.write(tick_ended=tick.ended, mark_best=tick.new_best)

    def write(self, *, tick_ended: bool, mark_best: bool) -> Path | None:
        """Collective: every process contributes its own random streams and objective state."""
        per_process = gather_objects(self.state.process_state(tick_ended=tick_ended))
        path = None
        if self.is_main:
            payload = self.state.state_dict(per_process, tick_ended=tick_ended)
            path = ckpt.save_checkpoint(self.run, payload, self.keep)
            if mark_best:
                ckpt.mark_best(self.run, path)
            self.last = path
        barrier()
        return path


class RunAccounting(Hook):
    def __init__(self, run: RunDir, info: RunInfo | None, session: Session, session_start: float) -> None:
        self.run, self.info, self.session, self.session_start = run, info, session, session_start

    def on_tick(self, tick: Tick) -> None:
        if self.info is None:
            return
        self.session.wall_seconds = time.time() - self.session_start
        self.session.end_nimg = tick.prog.cur_nimg
        account(self.info, self.session, tick.prog)
        self.run.write_info(self.info)


def account(info: RunInfo, session: Session, prog: Progress) -> None:
    info.cur_nimg = prog.cur_nimg
    gpu = sum(s.wall_seconds * s.device_count for s in info.sessions if s.device != "cpu")
    cpu = sum(s.wall_seconds for s in info.sessions if s.device == "cpu")
    info.gpu_hours = gpu / 3600
    info.cpu_hours = cpu / 3600


def save_reals_grid(run: RunDir, dataset: PreparedDataset, grid: tuple[int, int]) -> None:
    count = min(grid[0] * grid[1], len(dataset))
    order = np.random.RandomState(0).permutation(len(dataset))[:count]
    save_grid(np.stack([dataset.images[i] for i in sorted(order)]), run.path / "reals.png", grid)


@contextmanager
def _preserve_rng() -> Iterator[None]:
    """Evaluation must not perturb the training random streams (exact resume)."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(
        devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    ):
        yield
    random.setstate(py)
    np.random.set_state(np_state)


def _eval_record(setup: Any, G_ema: Any, protocol: str, seed_offset: int) -> dict[str, Any]:
    recipe = setup.resolved.recipe
    assert setup.evaluator is not None
    with _preserve_rng():
        return setup.evaluator(
            G_ema,
            protocol,
            dataset=recipe.dataset,
            resolution=recipe.data.resolution,
            subset_rule=recipe.data.subset_rule,
            device=setup.device,
            seed=seed_offset,
            on_missing_weights="pending",
        )


def _evaluate_headline(
    setup: Any, G_ema: Any, prog: Progress, recipe: Any, log: Callable[[str], None], done: bool
) -> tuple[bool, float]:
    """Evaluate the headline protocol (for best-checkpoint selection during training, and as the
    ``last`` number at the end). Returns (is a new best, seconds spent)."""
    protocol = recipe.evaluation.protocols[0]
    start = time.time()
    record = _eval_record(setup, G_ema, protocol, seed_offset=0)
    record.update(
        kimg=prog.cur_nimg / 1000,
        cur_nimg=prog.cur_nimg,
        checkpoint="last" if done else ckpt.checkpoint_name(prog.cur_nimg),
        checkpoint_file=ckpt.checkpoint_name(prog.cur_nimg),
        purpose="last" if done else "selection",
    )
    setup.run.append_metric(record)
    seconds = time.time() - start
    if record.get("status") != "ok":
        log(
            f"{protocol} left pending: {record.get('reason', 'unavailable')} -- the run is kept; "
            f"`degan-bench eval {setup.run.path}` fills it in once the weights are available"
        )
        return False, seconds
    log(f"{protocol} = {record['value']:.4f} at kimg {prog.cur_nimg / 1000:.1f}")
    if not recipe.evaluation.select_best:
        return False, seconds
    lower_is_better = record.get("lower_is_better", True)
    best = prog.best
    improved = best is None or (
        record["value"] < best["value"] if lower_is_better else record["value"] > best["value"]
    )
    if improved:
        prog.best = {
            "protocol": protocol,
            "value": record["value"],
            "kimg": prog.cur_nimg / 1000,
            "cur_nimg": prog.cur_nimg,
            "split": record.get("protocol_record", {}).get("reference_split"),
        }
    return improved, seconds


def final_evaluation(
    setup: Any, G_ema: Any, prog: Progress, recipe: Any, log: Callable[[str], None]
) -> float:
    """The other protocols on the last G_ema, and the headline on ``best`` with fresh evaluation seeds.
    Returns the seconds spent."""
    run = setup.run
    start = time.time()
    for protocol in recipe.evaluation.protocols[1:]:
        record = _eval_record(setup, G_ema, protocol, seed_offset=0)
        record.update(kimg=prog.cur_nimg / 1000, cur_nimg=prog.cur_nimg, checkpoint="last", purpose="last")
        run.append_metric(record)
    best = prog.best
    best_path = run.checkpoint_dir / ckpt.BEST_NAME
    if best is None or best["cur_nimg"] == prog.cur_nimg or not best_path.exists():
        return time.time() - start
    G_best, _recipe = ckpt.load_generator(best_path, setup.device)
    # Fresh evaluation seeds: the selection run's noise must not flatter the reported number.
    record = _eval_record(setup, G_best, best["protocol"], seed_offset=1)
    record.update(
        kimg=best["kimg"],
        cur_nimg=best["cur_nimg"],
        checkpoint="best",
        purpose="best",
        selection={
            "protocol": best["protocol"],
            "split": best.get("split"),
            "value": best["value"],
            "eval_seed": 0,
        },
    )
    run.append_metric(record)
    if record.get("status") == "ok":
        log(
            f"best ({best['protocol']} at kimg {best['kimg']:.1f}) re-evaluated with fresh seeds: "
            f"{record['value']:.4f}"
        )
    return time.time() - start
