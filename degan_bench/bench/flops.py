"""Training FLOPs per real image of a recipe, counted by running its real objective on the meta device.

The count is what the cost model extrapolates with (:mod:`degan_bench.dispatch.costs`): the speed of a
measured or published configuration, scaled by the ratio of training FLOPs per real image. It is taken
from one schedule cycle of the recipe's own objective (``train_minibatch``: every phase with its lazy
interval, accumulation rounds, the method's augmentation and extra loss terms), on tensors of the meta
device, so nothing is computed and a 512 px model costs seconds. Each distinct phase pattern of the cycle
(StyleGAN2 paper256: all four phases, G+Greg+D, G+D) is counted once and weighted by how often it occurs.

What is counted: the matrix multiplications and convolutions of forward, backward and double-backward
passes (``torch.utils.flop_counter``'s formulas, 2 FLOPs per multiply-add). Not counted: element-wise
work (activations, normalization, augmentation warps), optimizer steps and the G_ema update -- so the
count is a proxy for the arithmetic of the networks, not for memory traffic or kernel launches.

A method that cannot run on the meta device (it reads a previous run's artifacts, such as a lottery
ticket, or makes data-dependent Python decisions) is counted as the plain backbone (the same recipe
with the method replaced by the ``stylegan2`` / ``biggan`` baseline); :class:`FlopCount` says so in
``basis``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from degan_bench.recipes.loader import ResolvedRecipe, resolve_dict

#: bump when what is counted changes (keys of cached counts include it)
FLOPS_VERSION = 1
#: the no-op baseline method of each objective, used when a method cannot be counted
BASELINE_METHOD = {"ns_r1": "stylegan2", "hinge": "biggan"}
#: training keys that change the arithmetic per image (not batch_gpu: accumulation rounds split the same
#: work; nor the length, rates or evaluation)
_COMPUTE_TRAINING_KEYS = ("batch",)


@dataclass(frozen=True)
class FlopCount:
    flops_per_img: float  # training FLOPs per real image shown to D
    basis: str  # "recipe" or "backbone only (<why>)"


class _Counter(TorchDispatchMode):
    """Sums ``flop_registry`` formulas over every dispatched op (no module tracking, so it works with
    ``autograd.grad`` double backward, which FlopCounterMode's module hooks do not)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += int(formula(*args, **kwargs, out_val=out))
        return out


def compute_key(resolved: ResolvedRecipe) -> str:
    """Identifies the arithmetic of one training step: model, resolution, batch, loss and method (with
    its section). Two recipes with the same key cost the same FLOPs per image."""
    data = resolved.data
    training = data.get("training", {})
    method = data["method"]
    blob = {
        "version": FLOPS_VERSION,
        "model": data.get("model", {}),
        "resolution": data.get("data", {}).get("resolution"),
        "training": {k: training.get(k) for k in _COMPUTE_TRAINING_KEYS},
        "loss": data.get("loss", {}),
        "method": method,
        "method_section": data.get(method, {}),
    }
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def baseline_recipe(resolved: ResolvedRecipe) -> ResolvedRecipe:
    """The same recipe with the method replaced by the backbone's no-op baseline."""
    data = {k: v for k, v in resolved.data.items() if k != resolved.method}
    data["method"] = BASELINE_METHOD[resolved.recipe.loss.kind]
    return resolve_dict(data, source=f"{resolved.source} (backbone only)")


def count_flops(resolved: ResolvedRecipe, cache: dict[str, float] | None = None) -> FlopCount:
    """Training FLOPs per real image (see the module docstring). ``cache`` maps :func:`compute_key` to
    counts already made (the backbone count is shared by every recipe that falls back to it)."""
    from degan_bench.methods import get_method

    cache = {} if cache is None else cache
    baseline = BASELINE_METHOD[resolved.recipe.loss.kind]
    why = ""
    if resolved.method != baseline:
        if get_method(resolved.method).prerequisites(resolved.method_config):
            why = f"{resolved.method} reads an earlier run's artifacts"
        else:
            key = compute_key(resolved)
            try:
                if key not in cache:
                    cache[key] = _count(resolved)
                return FlopCount(cache[key], "recipe")
            except Exception as err:  # data-dependent code or device copies the meta device cannot run
                why = f"{resolved.method} does not run on the meta device: {type(err).__name__}"
        resolved = baseline_recipe(resolved)
    key = compute_key(resolved)
    if key not in cache:
        cache[key] = _count(resolved)
    return FlopCount(cache[key], f"backbone only ({why})" if why else "recipe")


def _count(resolved: ResolvedRecipe) -> float:
    from degan_bench.bench.trainer import build_trainer
    from degan_bench.training.objectives.base import MinibatchInfo

    meta = torch.device("meta")
    recipe = resolved.recipe
    batch, resolution = recipe.training.batch, recipe.data.resolution
    conditional = bool(getattr(resolved.model, "c_dim", 0))

    def reals() -> tuple[torch.Tensor, torch.Tensor | None]:
        labels = torch.zeros(batch, dtype=torch.long, device=meta) if conditional else None
        return torch.empty(batch, 3, resolution, resolution, device=meta), labels

    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(resolved, meta, workdir=Path(tmp))
        objective = trainer.objective
        # Optimizer steps and the method's after-step hooks are element-wise work (not counted) and some
        # read tensor values, which the meta device has none of.
        objective.step_optimizer = lambda *args, **kwargs: None  # type: ignore[method-assign]
        phases = [int(p.interval) for p in getattr(objective, "phases", [])]
        patterns: dict[tuple[bool, ...], list[int]] = {}
        for index in range(trainer.cycle):
            patterns.setdefault(tuple(index % interval == 0 for interval in phases), []).append(index)
        total_flops = 0
        total_reals = 0
        for indices in patterns.values():
            with _Counter() as counter:
                consumed = objective.train_minibatch(reals, MinibatchInfo(indices[0], 0), trainer.stats)
            total_flops += counter.flops * len(indices)
            total_reals += consumed * len(indices)
        trainer.close()
    return total_flops / total_reals
