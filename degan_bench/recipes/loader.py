"""Resolve ``recipes/<method>/<dataset>.yaml`` into a validated, hashed recipe.

Resolution order (later wins, dicts merge key by key, lists and scalars replace):

1. the ``extends:`` chain, base first (``extends: ../_bases/stylegan2-lowshot.yaml``, relative to the file);
2. the file itself;
3. the preset overlay: ``presets: {short: {...}, smoke: {...}}`` blocks, merged along the same chain.
   ``paper`` is the official recipe and has no overlay;
4. ``--set key.path=value`` overrides (values parsed as YAML: ``--set training.kimg=50``).

YAML is read as PyYAML's safe YAML 1.1 plus the YAML 1.2 float forms, so every float spelling a user
types is a number: ``2e-4``, ``1E-3`` and ``1.0e5`` (strings in YAML 1.1) as well as ``.5``, ``2.0e-4``
and ``1_000.5``. ``1_000`` is the integer 1000 (accepted where a float is expected).

The result is validated strictly (:mod:`degan_bench.schema`): the common sections by
:class:`~degan_bench.recipes.schema.Recipe`, ``model`` by its architecture's config, and the section
named after the method by the method's ``Config``.

The recipe hash covers what is trained and evaluated: every resolved key except the documentation
fields (``description``, ``purpose``, ``provenance``), the preset's name and ``resources`` (how many
GPUs a run is laid out on, which does not change the global batch or what is trained), and the
``performance`` keys that change neither (``cpu_threads``, ``finite_check``). It is stable across key
order, and the seed is not part of it (a run is recipe hash x seed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import yaml

from degan_bench.errors import DeganError, RecipeError
from degan_bench.methods import KNOWN_METHODS, get_method
from degan_bench.models import parse_model_config
from degan_bench.paths import recipes_dir
from degan_bench.recipes.schema import PRESETS, Recipe
from degan_bench.schema import did_you_mean, from_dict, to_dict

#: keys that document a recipe but do not change what is trained or measured
UNHASHED_KEYS = ("description", "purpose", "provenance", "preset", "resources")
#: nested keys that change how fast or how safely a run goes, not what it trains (not hashed either)
UNHASHED_PATHS = (("performance", "cpu_threads"), ("performance", "finite_check"))
#: top-level keys handled by the loader itself, never part of the resolved recipe
LOADER_KEYS = ("extends", "presets")

T = TypeVar("T")


class RecipeYamlLoader(yaml.SafeLoader):
    """Safe YAML 1.1 with YAML 1.2's float forms (``2e-4``, ``1E-3``, ``1.0e5`` are numbers)."""


RecipeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$
        |^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=RecipeYamlLoader)  # a SafeLoader subclass: no arbitrary objects


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist", fix="check the path or `extends:`") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path}:{where} malformed YAML ({problem})", fix="fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of keys, got {type(data).__name__}")
    return data


def definition_names(root: Path) -> list[str]:
    """The names (file stems) of the YAML definitions in ``root`` (recipes/tables/, recipes/claims/)."""
    return sorted(p.stem for p in root.glob("*.yaml"))


def load_definition_file(cls: type[T], path: Path) -> T:
    """One definition file as a ``cls`` (a dataclass with a ``name``, which is the file name)."""
    data = read_yaml(path)
    name = data.get("name", path.stem)
    if name != path.stem:
        raise RecipeError(f"{path}: name {name!r} differs from the file name", fix=f"use name: {path.stem}")
    return from_dict(cls, {**data, "name": path.stem}, source=str(path))


def load_definition(cls: type[T], name: str, root: Path, kind: str) -> T:
    """The ``kind`` (table, claim) ``name`` from ``root/<name>.yaml``, or from a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return load_definition_file(cls, path)
    path = root / f"{name}.yaml"
    if not path.exists():
        names = definition_names(root)
        hint = did_you_mean(name, names)
        raise RecipeError(
            f"no {kind} named {name!r}",
            fix=f"did you mean {hint!r}?" if hint else f"{kind}s: {', '.join(names) or 'none'}",
        )
    return load_definition_file(cls, path)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, Any], list[Path]]:
    """(merged body, merged preset overlays, files from base to leaf)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise RecipeError(f"circular extends: {chain}", fix="remove the cycle")
    data = read_yaml(path)
    parent = data.pop("extends", None)
    presets = data.pop("presets", None) or {}
    if not isinstance(presets, dict):
        raise RecipeError(f"{path}: presets: expected a mapping of preset name to overlay")
    for name, overlay in presets.items():
        if name not in PRESETS:
            hint = did_you_mean(str(name), PRESETS)
            fix = f"did you mean {hint!r}?" if hint else f"presets are {', '.join(PRESETS)}"
            raise RecipeError(f"{path}: presets.{name}: unknown preset", fix=fix)
        if name == "paper":
            raise RecipeError(
                f"{path}: presets.paper: 'paper' is the recipe itself and takes no overlay",
                fix="put official settings in the recipe body",
            )
        if not isinstance(overlay, dict):
            raise RecipeError(f"{path}: presets.{name}: expected a mapping")
    if parent is None:
        return data, presets, [path]
    if not isinstance(parent, str):
        raise RecipeError(f"{path}: extends: expected a relative file path string")
    base_body, base_presets, files = _load_chain(path.parent / parent, (*seen, path))
    return deep_merge(base_body, data), deep_merge(base_presets, presets), [*files, path]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed YAML value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE", fix="e.g. --set training.kimg=50")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise RecipeError(f"--set {text!r}: the value is not valid YAML", fix="quote strings") from None
    return key.split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"--set {'.'.join(path)}: '{part}' is not a section", fix="check the key path")
        node = child
    node[path[-1]] = value


def canonical_hash(data: dict[str, Any]) -> str:
    hashed = {k: v for k, v in data.items() if k not in UNHASHED_KEYS}
    for section, key in UNHASHED_PATHS:
        if isinstance(hashed.get(section), dict) and key in hashed[section]:
            hashed[section] = {k: v for k, v in hashed[section].items() if k != key}
    blob = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


@dataclass
class ResolvedRecipe:
    """A validated recipe: typed sections plus the plain dict that is saved and hashed."""

    recipe: Recipe
    model: Any
    method_config: Any
    data: dict[str, Any]
    source: str
    files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def hash(self) -> str:
        return canonical_hash(self.data)

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    @property
    def method(self) -> str:
        return self.recipe.method

    @property
    def dataset(self) -> str:
        return self.recipe.dataset

    @property
    def preset(self) -> str:
        return self.recipe.preset

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, width=110)


def _validate(raw: dict[str, Any], source: str) -> ResolvedRecipe:
    raw = copy.deepcopy(raw)
    method_name = raw.get("method")
    if not isinstance(method_name, str):
        raise RecipeError(
            f"{source}: method: is required (a method name)", fix=f"one of {', '.join(KNOWN_METHODS)}"
        )
    method_cls = get_method(method_name)
    method_section = raw.pop(method_name, None) if method_name != "method" else None
    for other in KNOWN_METHODS:
        if other != method_name and other in raw:
            raise RecipeError(
                f"{source}: section '{other}' does not apply to method '{method_name}'",
                fix=f"remove it, or nest it under '{method_name}:' if the method composes it",
            )
    if "method_args" in raw:
        raise RecipeError(
            f"{source}: method_args: unknown key", fix=f"put method options under '{method_name}:'"
        )
    model_cfg = parse_model_config(raw.get("model") or {}, source=source)
    raw["model"] = to_dict(model_cfg)
    method_cfg = from_dict(method_cls.Config, method_section, path=method_name, source=source)
    recipe = from_dict(Recipe, raw, source=source)
    recipe.method_args = to_dict(method_cfg)
    _check_dataset(recipe.dataset, source)
    _derive_kimg_from_epochs(recipe, raw.get("training") or {}, source)
    _check_protocols(recipe.evaluation.protocols, source)
    data = to_dict(recipe)
    data.pop("method_args")
    if recipe.method_args:
        data[method_name] = recipe.method_args
    return ResolvedRecipe(recipe=recipe, model=model_cfg, method_config=method_cfg, data=data, source=source)


def _derive_kimg_from_epochs(recipe: Recipe, training: dict[str, Any], source: str) -> None:
    """BigGAN scripts give the length in epochs of the (subset) training set; kimg follows from it."""
    tcfg = recipe.training
    if tcfg.epochs is None:
        return
    if "kimg" in training:
        raise RecipeError(
            f"{source}: training.epochs and training.kimg are both given",
            fix="give one: --set training.epochs=null to train by kimg, or drop training.kimg",
        )
    from degan_bench.data.registry import get_dataset_spec

    count = get_dataset_spec(recipe.dataset).expected_counts["train"]
    count *= 2 if recipe.data.mirror == "double" else 1
    tcfg.kimg = tcfg.epochs * count / 1000


def default_backbone(method: str, dataset: str) -> str:
    """The backbone ``degan-bench run METHOD DATASET`` trains: a baseline's own, else the dataset's."""
    from degan_bench.data.registry import get_dataset_spec

    try:
        own = get_method(method).backbone
    except DeganError:  # unknown or not implemented: the caller reports it
        own = None
    if own:
        return own
    try:
        return get_dataset_spec(dataset).default_backbone
    except DeganError:
        return "stylegan2"


def _check_dataset(name: str, source: str) -> None:
    from degan_bench.data.registry import get_dataset_spec

    try:
        get_dataset_spec(name)
    except DeganError as err:
        raise RecipeError(f"{source}: dataset: {err}") from None


def _check_protocols(protocols: list[str], source: str) -> None:
    from degan_bench.metrics.protocols import get_protocol

    for protocol in protocols:
        try:
            get_protocol(protocol)
        except DeganError as err:
            raise RecipeError(f"{source}: evaluation.protocols: {err}") from None


def resolve_file(
    path: Path, preset: str = "paper", overrides: tuple[str, ...] | list[str] = ()
) -> ResolvedRecipe:
    """Resolve one recipe file with a preset and ``--set`` overrides."""
    if preset not in PRESETS:
        hint = did_you_mean(preset, PRESETS)
        raise RecipeError(
            f"unknown preset {preset!r}", fix=f"did you mean {hint!r}?" if hint else f"use {PRESETS}"
        )
    body, presets, files = _load_chain(Path(path))
    source = str(path)
    if preset != "paper":
        if preset not in presets:
            raise RecipeError(f"{source}: has no '{preset}' preset", fix=f"add a presets.{preset} block")
        body = deep_merge(body, presets[preset])
    body["preset"] = preset
    resolved = _validate(body, source)  # errors here point at the files
    if overrides:
        for text in overrides:
            key_path, value = parse_override(text)
            apply_override(body, key_path, value)
        resolved = _validate(body, f"{source} with --set {' '.join(overrides)}")
    resolved.files = [str(f) for f in files]
    resolved.overrides = list(overrides)
    return resolved


def resolve_dict(data: dict[str, Any], source: str = "recipe.yaml") -> ResolvedRecipe:
    """Re-validate an already resolved recipe (e.g. a run directory's recipe.yaml)."""
    data = {k: v for k, v in data.items() if k not in LOADER_KEYS}
    return _validate(data, source)


def expected_recipe_path(method: str, dataset: str, root: Path, backbone: str) -> Path:
    """Where the recipe of a cell lives (whether or not it exists)."""
    if backbone == default_backbone(method, dataset):
        return root / method / f"{dataset}.yaml"
    return root / method / backbone / f"{dataset}.yaml"


def recipe_path(method: str, dataset: str, root: Path | None = None, backbone: str | None = None) -> Path:
    """``recipes/<method>/<dataset>.yaml`` for the default backbone (see :func:`default_backbone`),
    ``recipes/<method>/<backbone>/<dataset>.yaml`` for another one."""
    root = root or recipes_dir()
    if not (root / method).is_dir() or method.startswith("_"):
        get_method(method)  # unknown method -> did-you-mean error
        raise RecipeError(f"no recipes for method {method!r} yet", fix="see `degan-bench recipes list`")
    backbone = backbone or default_backbone(method, dataset)
    path = expected_recipe_path(method, dataset, root, backbone)
    if path.exists():
        return path
    others = [e.backbone for e in list_recipes(root) if (e.method, e.dataset) == (method, dataset)]
    if others:
        raise RecipeError(
            f"no {backbone} recipe for {method} x {dataset} ({path} does not exist)",
            fix=f"available backbones for this cell: {', '.join(sorted(set(others)))} (--backbone)",
        )
    available = sorted({e.dataset for e in list_recipes(root) if e.method == method})
    hint = did_you_mean(dataset, available)
    fix = f"did you mean {hint!r}?" if hint else f"recipes for {method}: {', '.join(available)}"
    raise RecipeError(f"no recipe for {method} x {dataset} ({path} does not exist)", fix=fix)


def resolve_recipe(
    method: str,
    dataset: str,
    preset: str = "paper",
    overrides: tuple[str, ...] | list[str] = (),
    root: Path | None = None,
    backbone: str | None = None,
) -> ResolvedRecipe:
    """``degan-bench run METHOD DATASET [--backbone B]``'s recipe."""
    path = recipe_path(method, dataset, root, backbone)
    resolved = resolve_file(path, preset, overrides)
    expected = backbone or default_backbone(method, dataset)
    if (resolved.method, resolved.dataset, resolved.model.arch) != (method, dataset, expected):
        raise RecipeError(
            f"{path}: declares method={resolved.method!r} dataset={resolved.dataset!r} "
            f"model.arch={resolved.model.arch!r}, but its path says {method!r} x {dataset!r} on {expected!r}",
            fix="make the file's method/dataset/model.arch match its location",
        )
    return resolved


class RecipeEntry(NamedTuple):
    method: str
    dataset: str
    path: Path
    backbone: str


def list_recipes(root: Path | None = None) -> list[RecipeEntry]:
    """Every recipe file: ``<method>/<dataset>.yaml`` (the default backbone) and
    ``<method>/<backbone>/<dataset>.yaml``; bases (``_*`` folders), tables and claims excluded."""
    root = root or recipes_dir()
    rows = []
    for path in sorted([*root.glob("*/*.yaml"), *root.glob("*/*/*.yaml")]):
        in_backbone_dir = path.parent.parent != root
        method = (path.parent.parent if in_backbone_dir else path.parent).name
        if method.startswith("_") or method in ("tables", "claims"):
            continue
        backbone = path.parent.name if in_backbone_dir else default_backbone(method, path.stem)
        rows.append(RecipeEntry(method, path.stem, path, backbone))
    return rows


def diff_recipes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted key paths whose values differ (for refusing resumes with a changed recipe)."""
    keys = sorted(set(old) | set(new))
    diffs: list[str] = []
    for key in keys:
        path = f"{prefix}.{key}" if prefix else str(key)
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.extend(diff_recipes(a, b, path))
        elif a != b:
            diffs.append(f"{path}: {a!r} -> {b!r}")
    return diffs
