"""Method registry. A method is one module under ``degan_bench/methods/`` defining a
:class:`~degan_bench.methods.base.Method` subclass; list its module in ``_BUILTIN`` to register it.
"""

from __future__ import annotations

import importlib

from degan_bench.errors import MethodError
from degan_bench.methods.base import Method
from degan_bench.schema import did_you_mean

#: method names of the product; those without a module yet are reported as not implemented
KNOWN_METHODS: tuple[str, ...] = (
    "stylegan2", "biggan", "ada", "diffaugment", "fakeclr", "insgen", "diggan", "lottery",
    # DigGAN's table rows besides "+ DigGAN": with DiffAugment, and the baselines as its scripts train them
    "diggan-diffaugment", "diggan-baseline", "diggan-diffaugment-baseline",
    # the comparison rows: CR-BigGAN (DiffAugment's CIFAR table) and LeCam with its augmentations
    "biggan-cr", "biggan-cr-diffaugment", "lecam", "lecam-diffaugment", "lecam-ada",
)  # fmt: skip

_BUILTIN: tuple[str, ...] = (
    "degan_bench.methods.baseline",
    "degan_bench.methods.diffaugment",
    "degan_bench.methods.ada",
    "degan_bench.methods.insgen",
    "degan_bench.methods.fakeclr",
    "degan_bench.methods.lottery",
    "degan_bench.methods.diggan",
    "degan_bench.methods.cr",
    "degan_bench.methods.lecam",
)

_REGISTRY: dict[str, type[Method]] = {}
_loaded = False


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"method {cls.name!r} registered twice ({existing.__module__}, {cls.__module__})")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN:
            importlib.import_module(module)
        _loaded = True


def available_methods() -> dict[str, type[Method]]:
    _load_builtin()
    return dict(_REGISTRY)


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    if name in methods:
        return methods[name]
    if name in KNOWN_METHODS:
        raise MethodError(
            f"method {name!r} is not implemented yet in this version",
            fix=f"available: {', '.join(sorted(methods))}",
        )
    hint = did_you_mean(name, set(methods) | set(KNOWN_METHODS))
    raise MethodError(
        f"unknown method {name!r}",
        fix=f"did you mean {hint!r}?" if hint else f"available: {', '.join(sorted(methods))}",
    )
