"""Protocol registry: ids, validation, derivation and comparability."""

from __future__ import annotations

import dataclasses

import pytest

from degan_bench.errors import RecipeError
from degan_bench.metrics.protocols import (
    DEFAULTS,
    PROTOCOLS,
    Protocol,
    canonical_id,
    comparable,
    fingerprint,
    get_protocol,
)


def test_registry_has_the_paper_protocols_with_their_reference_sets():
    expected = {
        "fid5k_train": ("fid", 5000, "train"),
        "fid50k_full": ("fid", 50000, "full"),
        "fid10k_test": ("fid", 10000, "test"),
        "kid5k_train": ("kid", 5000, "train"),
        "kid50k_full": ("kid", 50000, "full"),
        "is10k": ("is", 10000, None),
    }
    for pid, (metric, n_gen, reference) in expected.items():
        p = get_protocol(pid)
        assert (p.metric, p.n_gen, p.reference) == (metric, n_gen, reference)
    for pid in ("fid5k_train_clean", "fid50k_full_clean", "fid10k_test_clean"):
        p = get_protocol(pid)
        assert p.resizer == "clean_pil_bicubic" and p.implementation == "clean-fid"
        assert p.weights == "clean-fid-inception-2015-12-05"
    assert "fid50k_train" not in PROTOCOLS  # ambiguous upstream name: see UPSTREAM_NAMES


def test_every_registered_protocol_uses_the_shared_defaults_and_a_canonical_id():
    for pid, p in PROTOCOLS.items():
        assert pid == p.id == canonical_id(p.metric, p.n_gen, p.reference, p.resizer)
        assert p.registered
        for name, value in DEFAULTS.items():
            assert getattr(p, name) == value, (pid, name)
        assert p.generator == "G_ema" and p.truncation_psi == 1.0 and p.noise_mode == "random"
        assert p.ref_xflip is False


def test_record_is_complete():
    record = get_protocol("fid50k_full").record()
    for key in (
        "metric",
        "n_gen",
        "reference",
        "ref_xflip",
        "resizer",
        "feature_extractor",
        "feature_layer",
        "weights",
        "implementation",
        "eval_seed",
        "generator",
        "truncation_psi",
        "noise_mode",
        "labels",
    ):
        assert key in record
    assert record["feature_extractor"] == "torch-fidelity/inception-v3-compat"
    assert Protocol.from_record(record) == get_protocol("fid50k_full")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "fid5k_full"}, "id must be 'fid5k_train'"),
        ({"reference": None}, "reference None must be"),
        ({"truncation_psi": 0.0}, "truncation_psi"),
        ({"ref_xflip": True}, "mirrored references"),
        ({"n_gen": 1}, "n_gen 1"),
        ({"implementation": "clean-fid"}, "implementation"),
        ({"metric": "ppl"}, "metric 'ppl'"),
    ],
)
def test_invalid_protocols_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(get_protocol("fid5k_train"), **changes)


def test_clean_resizer_exists_for_fid_only():
    with pytest.raises(ValueError, match="clean resizer exists for FID only"):
        Protocol(
            "kid5k_train_clean",
            "kid",
            5000,
            "train",
            "clean_pil_bicubic",
            "x",
            "y",
            implementation="clean-fid",
        )
    with pytest.raises(ValueError, match="IS has no reference"):
        Protocol("is10k", "is", 10000, "train", "tf1_bilinear", "x", "y")


def test_unknown_and_upstream_names_give_the_protocol_to_use():
    with pytest.raises(RecipeError, match="did you mean 'fid5k_train'"):
        get_protocol("fid5k_trian")
    with pytest.raises(RecipeError, match=r"upstream metric name.*'fid50k_full'") as err:
        get_protocol("fid50k-train")
    assert "\n" not in str(err.value)
    with pytest.raises(RecipeError, match="'fid10k_test'"):
        get_protocol("fid10k")


def test_derived_protocols_carry_their_count_in_the_id():
    small = get_protocol("fid5k_train").derive(n_gen=500)
    assert small.id == "fid500_train" and not small.registered and small.n_gen == 500
    assert get_protocol("is10k").derive(n_gen=24).id == "is24"
    assert get_protocol("is10k").derive(n_gen=6).is_splits == 6
    assert get_protocol("fid50k_full_clean").derive(n_gen=2000).id == "fid2k_full_clean"
    reseeded = get_protocol("fid5k_train").derive(eval_seed=3)
    assert reseeded.id == "fid5k_train" and reseeded.eval_seed == 3 and reseeded.registered
    assert get_protocol("fid5k_train").derive() is get_protocol("fid5k_train")


def test_fingerprint_ignores_the_eval_seed_but_not_counts_or_weights():
    base = get_protocol("fid5k_train")
    same = fingerprint(base.record(), "a" * 64)
    assert fingerprint(base.derive(eval_seed=7).record(), "a" * 64) == same
    assert fingerprint(base.derive(n_gen=500).record(), "a" * 64) != same
    assert fingerprint(base.record(), "b" * 64) != same
    assert fingerprint(get_protocol("fid5k_train_clean").record(), "a" * 64) != same


def test_comparable_needs_ok_records_with_equal_fingerprints():
    a = {"status": "ok", "protocol_fingerprint": "x"}
    assert comparable(a, dict(a))
    assert not comparable(a, {"status": "ok", "protocol_fingerprint": "y"})
    assert not comparable(a, {"status": "pending", "protocol_fingerprint": "x"})
