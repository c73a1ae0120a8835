"""Everything a checkpoint holds, gathered in one object with ``state_dict()`` / ``load_state_dict()``.

Shared state (written once, by rank 0): the recipe and seed, progress counters, G, D, G_ema, the two
optimizers, the fp16 scaler, the method's modules/optimizers/state, the data sampler position and the
layout the run trained with (processes x rounds x ``batch_gpu``). Per-process state (one entry per rank,
gathered at checkpoint time): the random streams, the objective's own state (StyleGAN2's path-length
means, one per chunk) and the running statistics of an unfinished tick. Restoring all of it makes
N + M minibatches with a stop in between equal N + M straight.

Resuming with another number of processes (see :meth:`TrainingState.relayout_problem`) is exact when
the chunk size (``batch_gpu``) is unchanged and no network keeps state that every forward pass advances
(batch-norm running statistics, spectral-norm power iterations): the random streams are keyed by chunk
(:mod:`degan_bench.training.streams`), the sampler and the method state are global, and the per-chunk
objective state is redistributed. Otherwise the resume is refused in one line naming the recorded
count, unless ``--force`` (recorded in the run log and the session).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from degan_bench.core import checkpoint as ckpt
from degan_bench.errors import ResumeError
from degan_bench.methods.base import Method
from degan_bench.models.spectral_norm import SpectralNormMixin
from degan_bench.recipes.loader import ResolvedRecipe
from degan_bench.training.objectives import Objective
from degan_bench.training.sampler import RealImageSampler
from degan_bench.training.stats import StatsCollector


@dataclass
class Progress:
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    last_eval_nimg: int = 0
    best: dict[str, Any] | None = None  # {"protocol", "value", "kimg", "cur_nimg", "split"}
    train_seconds: float = 0.0  # wall time spent training (all sessions), excluding evaluation
    # A stop in the middle of a tick: the tick's training seconds so far, carried into the resumed
    # session so tick boundaries (and with them snapshot and evaluation points) do not move.
    partial_tick_seconds: float = 0.0


@dataclass(frozen=True)
class Layout:
    """How a global minibatch is laid out: ``processes`` x ``rounds`` accumulation rounds of ``batch_gpu``
    samples (one *chunk* each)."""

    processes: int = 1
    batch_gpu: int = 0
    rounds: int = 1


def forward_state_modules(*modules: nn.Module) -> list[str]:
    """Kinds of layers in ``modules`` whose buffers every training forward pass advances."""
    kinds = set()
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, _BatchNorm):
                kinds.add("batch-norm running statistics")
            elif isinstance(sub, SpectralNormMixin):
                kinds.add("spectral-norm power iterations")
    return sorted(kinds)


class TrainingState:
    def __init__(
        self,
        resolved: ResolvedRecipe,
        seed: int,
        *,
        G: nn.Module,
        D: nn.Module,
        G_ema: nn.Module,
        objective: Objective,
        method: Method,
        sampler: RealImageSampler,
        stats: StatsCollector,
        scaler: Any = None,
        layout: Layout | None = None,
    ) -> None:
        self.resolved, self.seed = resolved, seed
        self.G, self.D, self.G_ema = G, D, G_ema
        self.objective, self.method, self.sampler = objective, method, sampler
        self.stats, self.scaler = stats, scaler
        self.layout = layout or Layout()
        # first_tick full: there is no one-minibatch tick 0, the first tick ends a whole tick in as tick 1
        first = 1 if resolved.recipe.training.first_tick == "full" else 0
        self.progress = Progress(cur_tick=first)

    # -- per process ---------------------------------------------------------------------------------
    def process_state(self, *, tick_ended: bool) -> dict[str, Any]:
        return {
            "rng": ckpt.capture_rng_state(),
            "objective": self.objective.state_dict(),
            "tick_stats": None if tick_ended else self.stats.state_dict(),
        }

    # -- whole checkpoint ----------------------------------------------------------------------------
    def state_dict(self, per_process: list[dict[str, Any]], *, tick_ended: bool) -> dict[str, Any]:
        """The checkpoint payload. Written at the end of a tick, the next tick starts at ``cur_nimg``;
        written inside one (a stop mid-tick), the tick in progress is saved as it is."""
        prog = self.progress
        optimizers = self.objective.optimizers()
        method = self.method
        progress = asdict(prog)
        progress.pop("best")
        if tick_ended:
            progress.update(
                cur_tick=prog.cur_tick + 1, tick_start_nimg=prog.cur_nimg, partial_tick_seconds=0.0
            )
        return {
            "recipe": self.resolved.data,
            "recipe_hash": self.resolved.hash,
            "seed": self.seed,
            "objective_kind": self.objective.kind,
            "progress": progress,
            "cur_nimg": prog.cur_nimg,
            "best": prog.best,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": optimizers["G"].state_dict(),
            "opt_D": optimizers["D"].state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "method": {
                "name": method.name,
                "modules": {k: m.state_dict() for k, m in method.modules().items()},
                "optimizers": {k: o.state_dict() for k, o in method.optimizers().items()},
                "state": method.state_dict(),
            },
            "sampler": self.sampler.state_dict(),
            "layout": asdict(self.layout),
            # one entry per process, by rank
            "objective": [state["objective"] for state in per_process],
            "rng": [state["rng"] for state in per_process],
            "tick_stats": [state["tick_stats"] for state in per_process],
        }

    def load_state_dict(self, payload: dict[str, Any], *, rank: int, world_size: int) -> str | None:
        """Restore ``payload``; returns a line for the run log when it was written by another number of
        processes (raises :class:`ResumeError` when that is not exact and ``payload['_force']`` is unset)
        or by code before the per-chunk random streams."""
        saved_processes = len(payload["rng"])
        problem = None
        if saved_processes != world_size:
            problem = self.relayout_problem(payload, world_size)
            if problem is not None and not payload.get("_force"):
                many = "es" if saved_processes > 1 else ""
                raise ResumeError(
                    f"the checkpoint was trained with {saved_processes} process{many}, this run has "
                    f"{world_size}: {problem}",
                    fix=f"resume with --gpus {saved_processes}, or add --force to continue with {world_size} "
                    "(recorded in the run log; the numbers then differ from an uninterrupted run)",
                )
        self.G.load_state_dict(payload["G"])
        self.D.load_state_dict(payload["D"])
        self.G_ema.load_state_dict(payload["G_ema"])
        optimizers = self.objective.optimizers()
        optimizers["G"].load_state_dict(payload["opt_G"])
        optimizers["D"].load_state_dict(payload["opt_D"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        saved = payload["method"]
        if saved["name"] != self.method.name:
            raise ResumeError(
                f"the checkpoint holds method {saved['name']!r}, the recipe says {self.method.name!r}",
                fix="resume with the run's own recipe",
            )
        for name, module in self.method.modules().items():
            module.load_state_dict(saved["modules"][name])
        for name, opt in self.method.optimizers().items():
            opt.load_state_dict(saved["optimizers"][name])
        self.method.load_state_dict(saved["state"])
        self.sampler.load_state_dict(payload["sampler"])
        p = payload["progress"]
        prog = self.progress
        prog.cur_nimg, prog.cur_tick, prog.batch_idx = p["cur_nimg"], p["cur_tick"], p["batch_idx"]
        prog.tick_start_nimg, prog.last_eval_nimg = p["tick_start_nimg"], p["last_eval_nimg"]
        prog.train_seconds = p["train_seconds"]
        prog.partial_tick_seconds = p.get("partial_tick_seconds", 0.0)
        prog.best = payload.get("best")
        if saved_processes == world_size:
            ckpt.restore_rng_state(payload["rng"][rank])
            self.objective.load_state_dict(_objective_states(payload)[rank])
            self._load_tick_stats((payload.get("tick_stats") or [None] * world_size)[rank])
            if "layout" not in payload:
                return (
                    "note: the checkpoint predates the per-chunk random streams; the continuation draws "
                    "other random numbers than the code that wrote it would have"
                )
            return None
        return self._load_relayout(payload, problem, rank=rank, world_size=world_size)

    # -- another number of processes -----------------------------------------------------------------
    def relayout_problem(self, payload: dict[str, Any], world_size: int) -> str | None:
        """Why continuing ``payload`` with ``world_size`` processes would not equal the run it was cut
        from; None when it is exact."""
        saved = payload.get("layout")
        if saved is None:
            return "the checkpoint predates process-count-independent random streams"
        if saved["batch_gpu"] != self.layout.batch_gpu:
            return (
                f"the per-process chunk changes from {saved['batch_gpu']} to {self.layout.batch_gpu} samples "
                "(training.batch_gpu unset: it is training.batch / processes), and with it the random "
                "streams and per-chunk statistics"
            )
        kinds = forward_state_modules(self.G, self.D)
        if kinds:
            return (
                f"the networks keep {' and '.join(kinds)}, which advance once per forward pass on each "
                "process, so they depend on the rounds per process"
            )
        if self.objective.reshard_states(_objective_states(payload), world_size) is None:
            return f"the {self.objective.kind} objective's per-process state cannot be redistributed"
        return None

    def _load_relayout(
        self, payload: dict[str, Any], problem: str | None, *, rank: int, world_size: int
    ) -> str:
        saved_processes = len(payload["rng"])
        states = _objective_states(payload)
        resharded = self.objective.reshard_states(states, world_size)
        self.objective.load_state_dict(
            resharded[rank] if resharded is not None else states[min(rank, saved_processes - 1)]
        )
        # The random streams are reseeded from counters at every minibatch (training/streams.py), so the
        # saved per-process states are not needed. An unfinished tick's statistics are sums over all
        # processes at the tick's end (StatsCollector.means), so rank 0 carries them all.
        merged = StatsCollector.merge_states([s for s in payload.get("tick_stats") or [] if s])
        self._load_tick_stats(merged if rank == 0 else None)
        what = (
            f"continued with {world_size} process{'es' if world_size > 1 else ''} a checkpoint written by "
            f"{saved_processes}"
        )
        if problem is None:
            return f"{what}: same chunks of {self.layout.batch_gpu} samples, exact"
        return f"FORCED: {what}; {problem}"

    def _load_tick_stats(self, tick_stats: dict[str, Any] | None) -> None:
        if tick_stats:
            device = next(self.G.parameters()).device
            self.stats.load_state_dict(tick_stats, device)


def _objective_states(payload: dict[str, Any]) -> list[dict[str, Any]]:
    if "objective" in payload:
        return payload["objective"]
    # checkpoints written before objectives existed kept the path-length means under "loss"
    return [{"pl_mean": mean} for mean in payload["loss"]["pl_mean"]]
