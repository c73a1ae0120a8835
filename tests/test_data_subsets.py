"""Subset rules reproduce each paper's selection, and the committed index files are checked."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from degan_bench.data import subsets
from degan_bench.data.subsets import (
    compute_indices,
    format_frozen,
    frozen_path,
    frozen_subsets,
    read_frozen,
    select_subset,
)
from degan_bench.errors import DataError


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.setattr(subsets, "_verified", {})


def test_np_choice_seed0_is_the_literal_diffaugment_biggan_call():
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        expected = np.random.choice(50000, 5000, replace=False)
    finally:
        np.random.set_state(saved)
    got = compute_indices("np_choice_seed0", 50000, 5000)
    assert np.array_equal(got, expected)  # same values, same (choice) order
    # Regression anchor computed once with numpy's legacy RandomState: a change here changes the data.
    assert got[:8].tolist() == [11841, 19602, 45519, 25747, 42642, 31902, 30346, 12363]
    assert np.random.get_state()[1][0] == saved[1][0]  # the global RNG is left alone


def test_committed_files_match_a_fresh_computation():
    entries = frozen_subsets()
    assert ("cifar10", "train", "np_choice_seed0", 50000, 5000) in entries
    assert ("cifar100", "train", "np_choice_seed0", 50000, 10000) in entries
    assert ("ffhq", "train", "shuffle_seed0", 70000, 2000) in entries
    for base, split, rule, base_count, size in entries:
        path = frozen_path(base, split, rule, size)
        assert path.is_file(), f"missing committed subset file {path.name}"
        header, stored = read_frozen(path)
        assert header["rule"] == rule and header["base"] == base and int(header["size"]) == size
        assert np.array_equal(stored, compute_indices(rule, base_count, size, split))
        assert path.read_text() == format_frozen(base, split, rule, base_count, stored)


def test_first_n_shuffle_seed0_and_tfds_order():
    assert compute_indices("first_n", 50000, 5).tolist() == [0, 1, 2, 3, 4]

    idx = np.arange(70000, dtype=np.int64)
    np.random.RandomState(0).shuffle(idx)
    ada = compute_indices("shuffle_seed0", 70000, 2000)
    assert np.array_equal(ada, np.sort(idx[:2000]))
    assert ada[:8].tolist() == [38, 48, 203, 216, 258, 281, 392, 468]

    tfds = compute_indices("tfds_first_n", 50000, 5000)
    key = lambda i: int(hashlib.md5(b"train" + str(i).encode()).hexdigest(), 16)  # noqa: E731
    assert key(tfds[0]) < key(tfds[1]) < key(tfds[4999])
    assert tfds[:8].tolist() == [16399, 1680, 47917, 17307, 27051, 48736, 26263, 1456]
    assert len(set(tfds.tolist())) == 5000


def test_whole_split_is_identity_and_bad_sizes_fail():
    for rule in subsets.RULES:
        assert np.array_equal(compute_indices(rule, 100, 100), np.arange(100))
    with pytest.raises(DataError, match=r"outside 1\.\.100"):
        compute_indices("first_n", 100, 101)


def test_unknown_rule_names_the_allowed_rules():
    with pytest.raises(
        DataError, match=r"unknown subset rule 'np_choice'.*np_choice_seed0.*first_n.*shuffle_seed0"
    ):
        compute_indices("np_choice", 100, 10)
    with pytest.raises(
        DataError, match="allowed rules: np_choice_seed0, first_n, shuffle_seed0, tfds_first_n"
    ):
        select_subset("cifar10", "train", "random", 50000, 5000)


def test_tampered_or_drifted_files_are_rejected(tmp_path, monkeypatch):
    source = frozen_path("cifar10", "train", "np_choice_seed0", 5000)
    monkeypatch.setattr(subsets, "SUBSETS_DIR", tmp_path)
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    selection = select_subset("cifar10", "train", "np_choice_seed0", 50000, 5000)
    assert selection.frozen_file == copy and selection.sha256 == read_frozen(copy)[0]["sha256"]

    lines = copy.read_text().splitlines()
    lines[-1], lines[-2] = lines[-2], lines[-1]  # a silent edit of the index list
    copy.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(subsets, "_verified", {})
    with pytest.raises(DataError, match="does not match its header"):
        select_subset("cifar10", "train", "np_choice_seed0", 50000, 5000)

    # A consistent file that the rule no longer reproduces (e.g. a numpy change).
    drifted = np.arange(5000, dtype=np.int64)
    copy.write_text(format_frozen("cifar10", "train", "np_choice_seed0", 50000, drifted))
    with pytest.raises(DataError, match="no longer reproduces"):
        select_subset("cifar10", "train", "np_choice_seed0", 50000, 5000)


def test_verification_runs_once_per_process(monkeypatch):
    calls = []
    real = subsets.read_frozen
    monkeypatch.setattr(subsets, "read_frozen", lambda path: calls.append(path) or real(path))
    first = select_subset("ffhq", "train", "shuffle_seed0", 70000, 1000)
    second = select_subset("ffhq", "train", "shuffle_seed0", 70000, 1000)
    assert first is second and len(calls) == 1
