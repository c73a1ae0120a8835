"""Dataset registry: names, lookups, subset views and recorded checksums."""

from __future__ import annotations

import pytest

from degan_bench.data.registry import dataset_names, get_dataset_spec
from degan_bench.data.subsets import RULES
from degan_bench.errors import DataError

EXPECTED_NAMES = {
    "obama-100", "grumpy-cat-100", "panda-100", "animalface-cat", "animalface-dog",
    "cifar10", "cifar100", "cifar10-10pct", "cifar10-20pct", "cifar10-100pct",
    "cifar10-30pct", "cifar10-50pct", "cifar10-70pct", "cifar10-90pct",
    "cifar100-10pct", "cifar100-20pct", "cifar100-100pct",
    "ffhq", "ffhq-1k", "ffhq-2k", "ffhq-5k", "ffhq-10k", "ffhq-30k", "ffhq-70k",
    "afhq-cat", "afhq-dog", "afhq-wild", "shapes-100",
}  # fmt: skip


def test_registry_has_exactly_the_benchmark_datasets():
    assert set(dataset_names()) == EXPECTED_NAMES


def test_lookup_returns_spec_with_documented_facts():
    obama = get_dataset_spec("obama-100")
    assert (obama.base, obama.splits, obama.native_resolution) == ("obama-100", ("train",), 256)
    assert obama.expected_counts == {"train": 100}
    assert obama.sources[0].url == "https://data-efficient-gans.mit.edu/datasets/100-shot-obama.zip"
    assert get_dataset_spec("grumpy-cat-100").sources[0].filename == "100-shot-grumpy_cat.zip"
    assert get_dataset_spec("animalface-dog").sources[0].filename == "AnimalFace-dog.zip"
    assert get_dataset_spec("animalface-cat").expected_counts == {"train": 160}
    assert get_dataset_spec("animalface-dog").expected_counts == {"train": 389}
    assert get_dataset_spec("cifar100").expected_counts == {"train": 50000, "test": 10000}
    assert [get_dataset_spec(f"afhq-{a}").expected_counts["train"] for a in ("cat", "dog", "wild")] == [
        5153,
        4739,
        4738,
    ]
    assert get_dataset_spec("afhq-wild").native_resolution == 512


def test_unknown_name_raises_data_error_with_did_you_mean():
    with pytest.raises(DataError, match=r"unknown dataset 'cifar-10'.*did you mean 'cifar10'"):
        get_dataset_spec("cifar-10")
    with pytest.raises(DataError, match="data list"):
        get_dataset_spec("imagenet-zzz")


def test_subset_views_point_at_prepared_bases_with_valid_rules():
    for name in dataset_names():
        spec = get_dataset_spec(name)
        base = get_dataset_spec(spec.base)
        assert base.base == base.name, f"{name}: the base of a view must itself be a base dataset"
        if not spec.is_subset:
            assert spec.subset_size is None
            continue
        assert spec.default_subset_rule in RULES
        assert set(spec.paper_subset_rules) <= set(RULES)
        assert spec.expected_counts[spec.subset_split] == spec.subset_size
        assert spec.subset_size <= base.expected_counts[spec.subset_split]
        for split in spec.splits:
            if split != spec.subset_split:
                assert spec.expected_counts[split] == base.expected_counts[split]
    assert get_dataset_spec("cifar10-10pct").subset_size == 5000
    assert get_dataset_spec("cifar100-20pct").subset_size == 10000
    assert get_dataset_spec("ffhq-2k").default_subset_rule == "shuffle_seed0"
    assert get_dataset_spec("ffhq-30k").default_subset_rule == "first_n"


def test_checksums_are_only_the_published_ones():
    # CIFAR: md5s published by torchvision/datasets/cifar.py, sha256s pinned by keras/datasets; nothing
    # else publishes a checksum.
    cifar10, cifar100 = get_dataset_spec("cifar10").sources[0], get_dataset_spec("cifar100").sources[0]
    assert cifar10.md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar10.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert cifar100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert cifar100.sha256 == "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
    for name in dataset_names():
        for source in get_dataset_spec(name).sources:
            assert source.checksum_note, f"{name}: say where the checksum comes from, or that there is none"
            if not name.startswith("cifar"):
                assert source.md5 is None and source.sha256 is None, name
    assert (
        not get_dataset_spec("ffhq").sources
        and "download_ffhq.py" in get_dataset_spec("ffhq").manual_download
    )
