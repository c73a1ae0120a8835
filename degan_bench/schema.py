"""Strict, typed configuration sections built from plain dicts (YAML).

A section is a dataclass whose fields are declared with :func:`param`, which carries the default,
a help line and the allowed range in one place. :func:`from_dict` builds a section from a mapping
and rejects, with a one-line :class:`~degan_bench.errors.RecipeError` naming the file and key path:

- unknown keys (with a "did you mean"),
- values of the wrong type (``bool`` is never accepted as a number, ``int`` is accepted as ``float``),
- values outside ``min``/``max`` or not among ``Literal`` choices, and non-finite numbers (``.nan``,
  ``.inf``: no setting means them, and they pass every range check),
- missing required keys,
- cross-field problems reported by an optional ``check()`` method raising ``ValueError``.

Nested dataclasses, ``list``/``tuple``/``dict`` and ``X | None`` are supported; that is all the
recipes need.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from degan_bench.errors import RecipeError

T = TypeVar("T")

_MISSING = dataclasses.MISSING


def param(
    default: Any = _MISSING,
    *,
    help: str,
    min: float | None = None,
    max: float | None = None,
    default_factory: Any = _MISSING,
) -> Any:
    """Declare a config field: default, one-line help, and inclusive numeric bounds."""
    metadata = {"help": help, "min": min, "max": max}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def did_you_mean(word: str, candidates: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fail(source: str | None, path: str, message: str, fix: str | None = None) -> RecipeError:
    where = f"{source}: " if source else ""
    key = f"{path}: " if path else ""
    return RecipeError(f"{where}{key}{message}", fix=fix)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str, source: str | None) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise _fail(source, path, "must not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path, source)
            except RecipeError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise _fail(source, path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            hint = did_you_mean(str(value), [str(c) for c in choices])
            fix = f"did you mean {hint!r}?" if hint else f"choose one of {', '.join(map(repr, choices))}"
            raise _fail(source, path, f"{value!r} is not allowed", fix)
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path=path, source=source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(source, path, f"expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _fail(source, path, f"expected {len(args)} items, got {len(value)}")
            items = [
                _convert(v, a, f"{path}[{i}]", source)
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            ]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{path}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(source, path, f"expected a mapping, got {value!r}")
        _key_tp, val_tp = get_args(tp) or (str, Any)
        return {str(k): _convert(v, val_tp, _join(path, str(k)), source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(source, path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise _fail(source, path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(source, path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(source, path, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"schema: unsupported field type {tp!r} at {path}")


def _check_range(value: Any, meta: Mapping[str, Any], path: str, source: str | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise _fail(source, path, f"{value!r} is not a finite number", "give a finite value")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        allowed = f"use a value in [{lo}, {hi}]"
    else:
        allowed = f"use a value >= {lo}" if lo is not None else f"use a value <= {hi}"
    if lo is not None and value < lo:
        raise _fail(source, path, f"{value!r} is below the minimum {lo!r}", allowed)
    if hi is not None and value > hi:
        raise _fail(source, path, f"{value!r} is above the maximum {hi!r}", allowed)


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Any, *, path: str = "", source: str | None = None) -> T:
    """Build dataclass ``cls`` from ``data``, strictly (see module docstring)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _fail(source, path, f"expected a mapping of keys, got {data!r}")
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            hint = did_you_mean(str(key), fields)
            fix = f"did you mean '{_join(path, hint)}'?" if hint else f"allowed keys: {', '.join(fields)}"
            raise _fail(source, _join(path, str(key)), "unknown key", fix)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in data:
            value = _convert(data[name], hints[name], key_path, source)
            _check_range(value, f.metadata, key_path, source)
            kwargs[name] = value
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise _fail(
                source, key_path, "is required", f"add '{key_path}: ...' ({f.metadata.get('help', '')})"
            )
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except ValueError as err:
            raise _fail(source, path, str(err)) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-friendly data from a dataclass tree (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Flattened (key path, type, default, help) rows, for docs and ``recipes schema``."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = _join(prefix, f.name)
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key))
            continue
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((key, _type_name(tp), to_dict(default), f.metadata.get("help", "")))
    return rows
