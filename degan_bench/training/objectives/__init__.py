"""Objectives: one per backbone family, selected by the recipe's ``loss.kind``.

- ``ns_r1`` (:mod:`.stylegan2`): non-saturating logistic loss, R1 and path length, phases
  G [Greg] D [Dreg] with lazy intervals, G_ema per minibatch by half-life.
- ``hinge`` (:mod:`.hinge`): BigGAN's hinge loss, k D steps per G step, each on its own reals,
  G_ema per G step with a fixed decay from a start iteration.
"""

from __future__ import annotations

import importlib

from degan_bench.errors import RecipeError
from degan_bench.schema import did_you_mean
from degan_bench.training.objectives.base import Objective, ObjectiveContext

_BUILTIN = ("degan_bench.training.objectives.stylegan2", "degan_bench.training.objectives.hinge")
_REGISTRY: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"objective {cls.kind!r} registered twice")
    _REGISTRY[cls.kind] = cls
    return cls


def get_objective(kind: str) -> type[Objective]:
    for module in _BUILTIN:
        importlib.import_module(module)
    if kind not in _REGISTRY:
        hint = did_you_mean(kind, _REGISTRY)
        raise RecipeError(
            f"unknown loss.kind {kind!r}",
            fix=f"did you mean {hint!r}?" if hint else f"choose one of {', '.join(sorted(_REGISTRY))}",
        )
    return _REGISTRY[kind]


__all__ = ["Objective", "ObjectiveContext", "get_objective", "register_objective"]
