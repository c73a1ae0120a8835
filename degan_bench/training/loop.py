"""The generic GAN training loop, counted in real images shown to D (kimg).

The loop knows neither the backbone nor the method. Per minibatch it asks the objective of the
recipe's ``loss.kind`` (:mod:`degan_bench.training.objectives`) to run its phases, counts the real
images that consumed, then calls the method's ``end_of_minibatch``. Every ``kimg_per_tick`` kimg a tick
runs the maintenance hooks of :mod:`degan_bench.training.maintenance` (status line and ``stats.jsonl``,
sample grids, evaluation, checkpoint, ``run.json``).

Everything a checkpoint holds lives in one :class:`~degan_bench.training.state.TrainingState`.
Stopping: SIGTERM/SIGINT (or ``stop_at_nimg``/``max_seconds``) end the current minibatch, write a
checkpoint and return with status ``stopped``; a second signal is the same request (a CI cancel sends
SIGINT then SIGTERM), a third aborts at once (:class:`StopRequest`). Resuming restores every
piece of state, so N + M minibatches with a stop in between equal N + M straight (tested on CPU); the
``stats.jsonl`` ticks past the checkpoint are dropped, as they are trained again.

Divergence: every tick (``performance.finite_check: tick``, free) or every minibatch (``minibatch``, one
device sync per step) the losses and the weights of G, D and G_ema are checked for NaN/inf. A non-finite
value stops the run at once: nothing more is drawn, evaluated or checkpointed (the checkpoints kept are
the last finite ones), ``run.json`` says ``diverged`` with the kimg, and the result is ``diverged``
(``degan-bench run`` exits with ``ExitCode.FAILED``). With fp16 loss scaling a non-finite loss alone is
not divergence (the scaler skips such steps by design); non-finite weights still are.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.distributed import ProcessGroup, any_process
from degan_bench.core.rundir import RunDir, Session, utc_now
from degan_bench.data.store import PreparedDataset
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.grids import grid_latents, render_fakes, save_grid
from degan_bench.training.maintenance import (
    Checkpointing,
    Evaluation,
    Report,
    RunAccounting,
    SampleGrids,
    Tick,
    account,
    final_evaluation,
    save_reals_grid,
)
from degan_bench.training.parts import build_training_parts
from degan_bench.training.state import Layout, Progress, TrainingState
from degan_bench.training.stats import StatsCollector, TensorBoardWriter, cpu_memory_gb, gpu_peak_memory_gb

#: signature of the evaluation function the loop calls (degan_bench.metrics.evaluate.evaluate_generator)
Evaluator = Callable[..., dict[str, Any]]


@dataclass
class TrainingSetup:
    """Everything the loop needs; built by :mod:`degan_bench.training.execute`."""

    resolved: ResolvedRecipe
    seed: int
    run: RunDir
    device: torch.device
    dataset: PreparedDataset
    resume: dict[str, Any] | None = None  # a loaded checkpoint payload
    process: ProcessGroup = field(default_factory=ProcessGroup)
    console: Console | None = None
    stop_at_nimg: int | None = None
    max_seconds: float | None = None
    evaluator: Evaluator | None = None
    tensorboard: bool = True
    handle_signals: bool = True


@dataclass
class TrainResult:
    status: str  # complete | stopped | diverged
    cur_nimg: int
    checkpoint: Path | None
    ticks: list[dict[str, Any]]
    detail: str | None = None  # one line on why a run diverged


class StopRequest:
    """SIGTERM/SIGINT ask for a graceful stop: finish the minibatch, write a checkpoint, return.

    A CI cancel sends SIGINT and a few seconds later SIGTERM (GitHub: 7.5 s), and a sweep forwards the
    stop to its runs: the second signal is the same request and never abandons the checkpoint being
    written. Only a third signal aborts at once (``KeyboardInterrupt``); SIGKILL cannot be caught. A
    SIGTERM within :attr:`DUPLICATE_SECONDS` of an earlier SIGTERM is the same signal delivered twice
    (under ``srun`` + torchrun SLURM signals every process of the step and the agent forwards its own
    copy) and is not counted.
    """

    ABORT_AT = 3
    DUPLICATE_SECONDS = 2.0

    def __init__(self, enabled: bool) -> None:
        self.reason: str | None = None
        self.signals: list[str] = []
        self._last_sigterm_at: float | None = None
        self._previous: dict[int, Any] = {}
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def _handle(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGTERM:
            now = time.monotonic()
            duplicate = (
                self._last_sigterm_at is not None and now - self._last_sigterm_at < self.DUPLICATE_SECONDS
            )
            self._last_sigterm_at = now
            if duplicate:
                return
        self.signals.append(signal.Signals(signum).name)
        if len(self.signals) >= self.ABORT_AT:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            raise KeyboardInterrupt(f"aborted by a third signal ({', '.join(self.signals)})")
        if self.reason is None:
            self.reason = self.signals[0]

    @property
    def description(self) -> str | None:
        """The reason as logged: ``SIGINT``, or ``SIGINT+SIGTERM (one stop request)``."""
        if self.reason is None or len(self.signals) < 2:
            return self.reason
        return f"{'+'.join(self.signals)} (one stop request)"

    def __enter__(self) -> StopRequest:
        if self._enabled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def nonfinite_losses(values: dict[str, Any]) -> list[str]:
    """Names of the reported statistics (losses, scores) that are NaN or infinite."""
    return [key for key, value in values.items() if not math.isfinite(float(value))]


def nonfinite_networks(networks: dict[str, torch.nn.Module]) -> list[str]:
    """Names of the networks with a NaN/inf parameter or floating buffer (one device sync per network)."""
    bad = []
    for name, network in networks.items():
        flags = [torch.isfinite(t).all() for t in network.state_dict().values() if t.is_floating_point()]
        if flags and not bool(torch.stack(flags).all()):
            bad.append(name)
    return bad


def train(setup: TrainingSetup) -> TrainResult:
    resolved, run, device, proc = setup.resolved, setup.run, setup.device, setup.process
    recipe = resolved.recipe
    tcfg, perf = recipe.training, recipe.performance
    console = setup.console or Console()
    is_main = proc.is_main

    def say(message: str) -> None:
        if is_main:
            console.print(message, highlight=False, soft_wrap=True)

    def log(message: str) -> None:
        if is_main:
            run.log(message)
            say(message)

    # -- construction (deterministic from the seed, identical on every process) -------------------
    parts = build_training_parts(
        resolved,
        seed=setup.seed,
        device=device,
        dataset=setup.dataset,
        run_dir=run.path,
        process=proc,
        log=log,
    )
    G, D, G_ema, method, objective = parts.G, parts.D, parts.G_ema, parts.method, parts.objective
    sampler, scaler = parts.sampler, parts.scaler
    batch_gpu, rounds, total_nimg = parts.batch_gpu, parts.rounds, parts.total_nimg
    cuda = device.type == "cuda"
    stats = StatsCollector()
    layout = Layout(processes=proc.world_size, batch_gpu=batch_gpu, rounds=rounds)
    state = TrainingState(
        resolved, setup.seed, G=G, D=D, G_ema=G_ema, objective=objective, method=method, sampler=sampler,
        stats=stats, scaler=scaler, layout=layout,
    )  # fmt: skip
    prog = state.progress
    relayout = None
    if setup.resume is not None:
        relayout = state.load_state_dict(setup.resume, rank=proc.rank, world_size=proc.world_size)
        log(f"resumed from kimg {prog.cur_nimg / 1000:.3f} (tick {prog.cur_tick})")
        if relayout:
            log(relayout)
        if is_main and (dropped := run.drop_stats_after(prog.cur_nimg)):
            run.log(f"dropped {dropped} stats.jsonl tick(s) past the checkpoint (they are trained again)")

    grid = tuple(tcfg.grid_size)
    grid_z, grid_c = grid_latents(G, grid[0] * grid[1], device)
    if is_main and setup.resume is None:
        save_reals_grid(run, setup.dataset, grid)
        save_grid(render_fakes(G_ema, grid_z, grid_c, batch_gpu), run.path / "fakes_init.png", grid)

    info = run.read_info() if is_main else None
    session = Session(
        started_utc=utc_now(),
        start_nimg=prog.cur_nimg,
        device=_device_name(device),
        device_count=proc.world_size,
        forced=bool(setup.resume and setup.resume.get("_forced"))
        or bool(relayout and relayout.startswith("FORCED")),
    )
    if info is not None:
        info.sessions.append(session)
        info.status = "running"
        info.device, info.device_count = session.device, proc.world_size
        info.torch_version = torch.__version__
        info.total_nimg = total_nimg
        run.write_info(info)
    tensorboard = TensorBoardWriter(str(run.path), enabled=setup.tensorboard and is_main)
    session_start = time.time()
    checkpointing = Checkpointing(run, state, tcfg.keep_checkpoints, tcfg.snapshot_ticks, is_main)
    report = Report(run, tensorboard, say, log, is_main)
    hooks = [
        report,
        SampleGrids(run, G_ema, (grid_z, grid_c), batch_gpu, grid, tcfg.image_snapshot_ticks, is_main),
        Evaluation(setup, G_ema, info, log, is_main, device),
        checkpointing,
        RunAccounting(run, info, session, session_start),
    ]
    ticks: list[dict[str, Any]] = []
    tick_start_time = time.time()
    maintenance_seconds = 0.0
    status = "complete"
    reals_per_step = objective.reals_per_minibatch()
    checked_networks = {"G": G, "D": D, "G_ema": G_ema}
    check_losses = scaler is None  # fp16 loss scaling skips non-finite steps by design
    check_every_minibatch = perf.finite_check == "minibatch"
    diverged: list[str] | None = None  # what was non-finite

    def divergence(values: dict[str, Any]) -> list[str] | None:
        """What is non-finite (agreed by every process), or None."""
        bad = [f"loss {key}" for key in nonfinite_losses(values)] if check_losses else []
        bad += [f"weights of {name}" for name in nonfinite_networks(checked_networks)]
        if not any_process(bool(bad), device):
            return None
        return bad or ["values on another process"]

    log(
        f"training {recipe.method} on {recipe.dataset} ({recipe.preset}, {objective.kind}) for "
        f"{total_nimg / 1000:g} kimg, batch {tcfg.batch} ({proc.world_size} process"
        f"{'es' if proc.world_size > 1 else ''} x {rounds} x {batch_gpu}), "
        f"{reals_per_step} reals per step, seed {setup.seed}, device {session.device}"
    )

    with (
        StopRequest(setup.handle_signals) as stop,
        _progress_bar(console, is_main, prog, total_nimg) as advance,
    ):
        while prog.cur_nimg < total_nimg:
            parts.minibatch(prog, stats)
            advance(prog.cur_nimg)
            if check_every_minibatch and (diverged := divergence(stats.means())):
                break

            done = prog.cur_nimg >= total_nimg
            elapsed = time.time() - session_start
            stopping = (
                stop.reason is not None
                or (setup.stop_at_nimg is not None and prog.cur_nimg >= setup.stop_at_nimg)
                or (setup.max_seconds is not None and elapsed >= setup.max_seconds)
            )
            stopping = any_process(stopping, device)  # every process stops after the same minibatch
            tick_ends = (
                done
                or prog.cur_tick == 0
                or prog.cur_nimg >= prog.tick_start_nimg + tcfg.kimg_per_tick * 1000
            )
            if not tick_ends and not stopping:
                continue

            if not tick_ends:
                # A stop inside a tick: checkpoint the tick in progress without ending it, so the resumed
                # run keeps the straight run's tick boundaries, snapshots and evaluation points.
                prog.partial_tick_seconds += time.time() - tick_start_time
                tick = Tick(prog, None, done=False, stopping=True, ended=False)
            else:
                tick_seconds = time.time() - tick_start_time + prog.partial_tick_seconds
                prog.partial_tick_seconds = 0.0
                tick_kimg = (prog.cur_nimg - prog.tick_start_nimg) / 1000
                prog.train_seconds += tick_seconds
                record = {
                    "tick": prog.cur_tick,
                    "kimg": prog.cur_nimg / 1000,
                    "cur_nimg": prog.cur_nimg,
                    "total_seconds": prog.train_seconds,
                    "sec_per_tick": tick_seconds,
                    "sec_per_kimg": tick_seconds / max(tick_kimg, 1e-8),
                    "img_per_sec": tick_kimg * 1000 / max(tick_seconds, 1e-8),
                    "maintenance_seconds": maintenance_seconds,
                    "gpu_mem_gb": gpu_peak_memory_gb(device),
                    "cpu_mem_gb": cpu_memory_gb(),
                    "losses": stats.means(),
                    "method": {k: float(v) for k, v in method.tick_stats().items()},
                    "timestamp": utc_now(),
                }
                stats.reset()
                ticks.append(record)
                tick = Tick(prog, record, done=done, stopping=stopping, ended=True)
            # Before any hook draws, evaluates or checkpoints: a diverged state is never kept.
            if diverged := divergence(tick.record["losses"] if tick.record else stats.means()):
                if tick.record is not None:
                    report.on_tick(tick)  # stats.jsonl and the status line show the non-finite tick
                break
            maintenance_start = time.time()
            for hook in hooks:
                hook.on_tick(tick)
            if tick.ended:
                prog.cur_tick += 1
                prog.tick_start_nimg = prog.cur_nimg
            maintenance_seconds = time.time() - maintenance_start
            tick_start_time = time.time()
            if done:
                break
            if not stopping:
                continue
            status = "stopped"
            reason = stop.description or (
                "max_seconds"
                if setup.max_seconds is not None and elapsed >= setup.max_seconds
                else "stop_at_nimg"
            )
            where = "" if tick.ended else f", inside tick {prog.cur_tick}"
            log(
                f"stopped at kimg {prog.cur_nimg / 1000:.3f}{where} ({reason}); "
                f"checkpoint {checkpointing.last}"
            )
            session.end_reason = reason
            break

    detail = None
    if diverged is not None:
        status = "diverged"
        kept = ckpt.list_checkpoints(run.path).get("last") if is_main else None
        detail = f"non-finite {', '.join(diverged[:4])} at kimg {prog.cur_nimg / 1000:.3f}; " + (
            f"the last finite checkpoint is {kept.name}" if kept else "no checkpoint was written"
        )
        log(f"diverged: {detail}")
        session.end_reason = "diverged"
    sampler.close()
    tensorboard.close()
    if status == "complete":
        session.end_reason = "complete"
        if is_main and setup.evaluator is not None:
            eval_seconds = final_evaluation(setup, G_ema, prog, recipe, log)
            if info is not None and cuda:
                info.eval_gpu_hours += eval_seconds / 3600
    if info is not None:
        session.ended_utc = utc_now()
        session.end_nimg = prog.cur_nimg
        session.wall_seconds = time.time() - session_start
        info.sessions[-1] = session
        info.status = status
        info.status_detail = detail
        info.diverged_kimg = prog.cur_nimg / 1000 if diverged is not None else None
        account(info, session, prog)
        run.write_info(info)
    return TrainResult(
        status=status, cur_nimg=prog.cur_nimg, checkpoint=checkpointing.last, ticks=ticks, detail=detail
    )


@contextlib.contextmanager
def _progress_bar(
    console: Console, is_main: bool, prog: Progress, total_nimg: int
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar in kimg on interactive terminals (tick lines print above it); a no-op in logs."""
    if not (is_main and console.is_terminal):
        yield lambda _nimg: None
        return
    bar = RichProgress(
        TextColumn("[bold]kimg"),
        BarColumn(),
        TextColumn("{task.completed:.1f} / {task.total:.1f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("train", total=total_nimg / 1000, completed=prog.cur_nimg / 1000)
    with bar:
        yield lambda nimg: bar.update(task, completed=nimg / 1000)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
