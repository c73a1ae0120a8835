"""Recipe resolution: extends, presets, --set, strict validation, hashing, and the shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from degan_bench.errors import MethodError, RecipeError
from degan_bench.recipes.loader import (
    diff_recipes,
    list_recipes,
    resolve_dict,
    resolve_file,
    resolve_recipe,
)
from degan_bench.recipes.schema import PRESETS

PROVENANCE = {
    "paper": "A paper (2020)",
    "arxiv": "2006.10738",
    "table": "Table 4",
    "upstream_repo": "owner/repo",
    "upstream_commit": "abc",
    "upstream_command": "python train.py",
    "deviations": ["none"],
}


def write(root: Path, rel: str, data: dict | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = {
        "model": {"arch": "stylegan2", "channel_base": 1024, "channel_max": 64},
        "data": {"resolution": 32},
        "training": {"kimg": 10, "batch": 8, "betas": [0.0, 0.99]},
        "evaluation": {"protocols": ["fid5k_train"]},
        "presets": {"smoke": {"training": {"kimg": 1}}, "short": {"training": {"kimg": 5}}},
    }
    write(tmp_path, "_bases/base.yaml", base)
    write(
        tmp_path,
        "stylegan2/obama-100.yaml",
        {
            "extends": "../_bases/base.yaml",
            "method": "stylegan2",
            "dataset": "obama-100",
            "provenance": PROVENANCE,
            "training": {"batch": 16},
            "presets": {"smoke": {"data": {"resolution": 16}}},
        },
    )
    return tmp_path


def test_extends_merges_sections_and_child_wins(root: Path) -> None:
    r = resolve_recipe("stylegan2", "obama-100", root=root)
    assert r.recipe.training.batch == 16  # child
    assert r.recipe.training.kimg == 10  # base
    assert r.recipe.training.betas == (0.0, 0.99)
    assert r.model.channel_base == 1024
    assert r.model.z_dim == 512  # schema default fills the rest
    assert r.data["model"]["z_dim"] == 512  # the saved recipe is fully resolved


def test_presets_merge_along_the_chain(root: Path) -> None:
    smoke = resolve_recipe("stylegan2", "obama-100", "smoke", root=root)
    assert smoke.recipe.training.kimg == 1  # from the base's smoke block
    assert smoke.recipe.data.resolution == 16  # from the leaf's smoke block
    assert smoke.recipe.preset == "smoke"
    short = resolve_recipe("stylegan2", "obama-100", "short", root=root)
    assert short.recipe.training.kimg == 5 and short.recipe.data.resolution == 32


def test_hash_is_stable_across_key_order_and_ignores_documentation(tmp_path: Path, root: Path) -> None:
    a = resolve_recipe("stylegan2", "obama-100", root=root)
    reordered = dict(reversed(list(yaml.safe_load((root / "stylegan2/obama-100.yaml").read_text()).items())))
    reordered["description"] = "different words"
    reordered["provenance"] = {**PROVENANCE, "deviations": ["another note"]}
    write(root, "stylegan2/obama-100.yaml", reordered)
    b = resolve_recipe("stylegan2", "obama-100", root=root)
    assert a.hash == b.hash
    c = resolve_recipe("stylegan2", "obama-100", overrides=["training.kimg=11"], root=root)
    assert c.hash != a.hash
    assert len(a.hash) == 64


def test_set_overrides_are_validated(root: Path) -> None:
    r = resolve_recipe(
        "stylegan2", "obama-100", overrides=["training.kimg=2.5", "loss.r1_on=augmented"], root=root
    )
    assert r.recipe.training.kimg == 2.5 and r.recipe.loss.r1_on == "augmented"
    assert r.overrides == ["training.kimg=2.5", "loss.r1_on=augmented"]
    with pytest.raises(
        RecipeError, match=r"--set training\.bacth=4: training\.bacth: unknown key.*training\.batch"
    ):
        resolve_recipe("stylegan2", "obama-100", overrides=["training.bacth=4"], root=root)
    with pytest.raises(RecipeError, match="below the minimum"):
        resolve_recipe("stylegan2", "obama-100", overrides=["training.batch=0"], root=root)
    with pytest.raises(RecipeError, match=r"expected KEY\.PATH=VALUE"):
        resolve_recipe("stylegan2", "obama-100", overrides=["training.batch"], root=root)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"training": {"bacth": 3}},
            r"obama-100\.yaml: training\.bacth: unknown key -> did you mean 'training\.batch'",
        ),
        ({"training": {"batch": "many"}}, r"training\.batch: expected an integer, got 'many'"),
        ({"training": {"batch": True}}, r"training\.batch: expected an integer, got True"),
        ({"loss": {"r1_gamma": -1}}, r"loss\.r1_gamma: -1\.0 is below the minimum 0\.0 -> use a value >= 0"),
        ({"loss": {"style_mixing_prob": 1.5}}, r"loss\.style_mixing_prob: 1\.5 is above the maximum 1"),
        (
            {"loss": {"r1_on": "augmnted"}},
            r"loss\.r1_on: 'augmnted' is not allowed -> did you mean 'augmented'",
        ),
        ({"data": {"resolution": 48}}, r"resolution 48 must be a power of two"),
        (
            {"model": {"chanel_base": 8}},
            r"model\.chanel_base: unknown key -> did you mean 'model\.channel_base'",
        ),
        ({"model": {"arch": "stylegan3"}}, r"unknown model\.arch 'stylegan3'.*did you mean 'stylegan2'"),
        ({"training": {"batch": 16, "batch_gpu": 5}}, r"batch 16 must be a multiple of batch_gpu 5"),
        ({"diffaugment": {"policy": "color"}}, r"section 'diffaugment' does not apply to method 'stylegan2'"),
        ({"provenance": None}, r"paper recipes need a 'provenance:' block"),
        ({"provenance": {"paper": "x"}}, r"provenance\.arxiv: is required"),
        ({"dataset": "obama-1000"}, r"dataset:.*obama-1000"),
    ],
)
def test_schema_errors_name_file_key_and_fix(root: Path, patch: dict, message: str) -> None:
    path = root / "stylegan2/obama-100.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "provenance":
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    write(root, "stylegan2/obama-100.yaml", data)
    with pytest.raises(RecipeError, match=message) as info:
        resolve_file(path)
    assert "\n" not in str(info.value)


def test_malformed_yaml_and_missing_files(root: Path) -> None:
    bad = write(root, "stylegan2/panda-100.yaml", "method: stylegan2\ntraining: {batch: 8\n")
    with pytest.raises(RecipeError, match=r"panda-100\.yaml: line \d+, column \d+ malformed YAML"):
        resolve_file(bad)
    orphan = write(
        root, "stylegan2/grumpy-cat-100.yaml", {"extends": "../_bases/nope.yaml", "method": "stylegan2"}
    )
    with pytest.raises(RecipeError, match=r"nope\.yaml does not exist"):
        resolve_file(orphan)
    loop = write(root, "_bases/loop.yaml", {"extends": "loop.yaml"})
    with pytest.raises(RecipeError, match="circular extends"):
        resolve_file(loop)
    with pytest.raises(RecipeError, match=r"a recipe must be a mapping"):
        resolve_file(write(root, "stylegan2/list.yaml", "- 1\n- 2\n"))


def test_unknown_names_get_did_you_mean(root: Path) -> None:
    with pytest.raises(RecipeError, match=r"no recipe for stylegan2 x obama-10 .*did you mean 'obama-100'"):
        resolve_recipe("stylegan2", "obama-10", root=root)
    with pytest.raises(MethodError, match=r"unknown method 'stylegan'.*did you mean 'stylegan2'"):
        resolve_recipe("stylegan", "obama-100", root=root)
    with pytest.raises(RecipeError, match=r"unknown preset 'smok'.*did you mean 'smoke'"):
        resolve_recipe("stylegan2", "obama-100", "smok", root=root)


def test_presets_block_is_checked(root: Path) -> None:
    write(
        root,
        "stylegan2/panda-100.yaml",
        {
            "extends": "../_bases/base.yaml",
            "method": "stylegan2",
            "dataset": "panda-100",
            "provenance": PROVENANCE,
            "presets": {"paper": {"training": {"kimg": 3}}},
        },
    )
    with pytest.raises(RecipeError, match=r"presets\.paper: 'paper' is the recipe itself"):
        resolve_recipe("stylegan2", "panda-100", root=root)
    write(
        root,
        "stylegan2/panda-100.yaml",
        {
            "extends": "../_bases/base.yaml",
            "method": "stylegan2",
            "dataset": "panda-100",
            "provenance": PROVENANCE,
            "presets": {"shrt": {}},
        },
    )
    with pytest.raises(RecipeError, match=r"presets\.shrt: unknown preset -> did you mean 'short'"):
        resolve_recipe("stylegan2", "panda-100", root=root)


def test_file_location_must_match_its_method_and_dataset(root: Path) -> None:
    write(
        root,
        "stylegan2/panda-100.yaml",
        {
            "extends": "../_bases/base.yaml",
            "method": "stylegan2",
            "dataset": "obama-100",
            "provenance": PROVENANCE,
        },
    )
    with pytest.raises(RecipeError, match="its path says 'stylegan2' x 'panda-100'"):
        resolve_recipe("stylegan2", "panda-100", root=root)


def test_resolved_dict_round_trips(root: Path) -> None:
    r = resolve_recipe("stylegan2", "obama-100", "smoke", overrides=["training.kimg=3"], root=root)
    again = resolve_dict(yaml.safe_load(r.to_yaml()))
    assert again.hash == r.hash
    assert again.data == r.data


def test_diff_recipes_names_changed_keys() -> None:
    old = {"training": {"kimg": 1, "batch": 8}, "loss": {"r1_gamma": 10.0}}
    new = {"training": {"kimg": 2, "batch": 8}, "loss": {"r1_gamma": 10.0}, "extra": 1}
    assert diff_recipes(old, new) == ["extra: '<absent>' -> 1", "training.kimg: 1 -> 2"]


def test_every_shipped_recipe_resolves_with_every_preset_it_declares() -> None:
    recipes = list_recipes()
    assert recipes, "no recipes found"
    for method, dataset, path, backbone in recipes:
        paper = resolve_recipe(method, dataset, backbone=backbone)  # also checks model.arch vs location
        assert paper.recipe.evaluation.protocols, f"{path} names no evaluation protocol"
        if paper.recipe.purpose == "paper":
            assert paper.recipe.provenance is not None and paper.recipe.provenance.deviations
        for preset in PRESETS[1:]:
            try:
                resolved = resolve_recipe(method, dataset, preset, backbone=backbone)
            except RecipeError as err:
                assert "has no" in str(err), err
                continue
            assert resolved.hash != paper.hash


def test_readme_support_table_is_generated_from_recipes() -> None:
    from degan_bench.cli.recipes import TABLE_BEGIN, TABLE_END, support_table_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    assert block == support_table_markdown().strip(), (
        "README table is stale: run `degan-bench recipes table --write README.md`"
    )
