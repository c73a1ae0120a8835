"""evaluate_generator / evaluate_images: records, seeding, reference sets, caching, pending records.

These tests use KID and IS (cheap) with stand-in weights and a 75 px Inception; FID itself is
covered by the parity tests.
"""

from __future__ import annotations

import json
import urllib.error

import metrics_support
import numpy as np
import pytest
import torch
from metrics_support import FakeData, TinyGenerator, install_fake_data, smooth_images

from degan_bench.core.rundir import RunDir
from degan_bench.errors import DataError, WeightsError
from degan_bench.metrics import weights as weights_mod
from degan_bench.metrics.evaluate import (
    evaluate_generator,
    evaluate_generator_many,
    evaluate_images,
    latent_batches,
    pending_notice,
)
from degan_bench.metrics.features import TORCH_FIDELITY, feature_model
from degan_bench.metrics.reference import load_reference, reference_stats
from degan_bench.metrics.weights import resolve_weights
from degan_bench.paths import cache_dir

standins = metrics_support.standins
declared_standins = metrics_support.declared_standins
small_inception = metrics_support.small_inception
single_thread_torch = metrics_support.single_thread_torch
pytestmark = pytest.mark.usefixtures("single_thread_torch")

RES = 16


@pytest.fixture
def data(monkeypatch):
    fake = FakeData(
        splits={
            ("tiny", "train"): smooth_images(10, RES, seed=2),
            ("big", "train"): smooth_images(20, RES, seed=3),
            ("big", "test"): smooth_images(8, RES, seed=4),
        },
        bases={"big-sub": "big"},
        subset_sizes={"big-sub": 12},
    )
    return install_fake_data(monkeypatch, fake)


@pytest.fixture
def ready(data, declared_standins, small_inception):
    return data


def kid(G, **kwargs):
    options = dict(dataset="tiny", resolution=RES, n_gen=12, batch_size=5)
    options.update(kwargs)
    return evaluate_generator(G, "kid5k_train", **options)


def test_generator_record_is_complete_and_appendable(ready, tmp_path):
    G = TinyGenerator(size=RES)
    G.train()
    record = kid(G)
    assert record["status"] == "ok" and record["protocol"] == "kid12_train" and record["metric"] == "kid"
    assert isinstance(record["value"], float) and record["value_std"] >= 0
    assert record["kid_subset_size"] == 10  # min(1000, n_ref=10, n_gen=12)
    assert record["n_gen"] == 12 and record["n_ref"] == 10
    assert record["reference"]["dataset"] == "tiny" and record["reference"]["split"] == "train"
    assert record["reference"]["content_hash"] and record["reference"]["stats_cache"] == "miss"
    assert record["protocol_record"]["eval_seed"] == 0 and record["protocol_record"]["generator"] == "G_ema"
    assert record["standard_weights"] is False and len(record["protocol_fingerprint"]) == 64
    assert record["images_per_second"] > 0 and record["device"] == "cpu"
    assert any("KID subsets hold 10 images" in note for note in record["warnings"])
    assert any("non-standard" in note for note in record["warnings"])
    # sampled as the official code does, and G's mode is restored
    assert {call[:2] for call in G.calls} == {(1.0, "random")}
    assert not any(call[2] for call in G.calls) and G.training
    run = RunDir(tmp_path / "run")
    run.append_metric(json.loads(json.dumps(record)))
    assert run.read_metrics()[0]["value"] == record["value"]


def test_seeded_determinism_and_untouched_global_rng(ready):
    G = TinyGenerator(size=RES)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first, again = kid(G), kid(G)
    assert torch.equal(torch.get_rng_state(), state)  # training's RNG stream is not consumed
    assert first["value"] == again["value"]
    other = kid(G, seed=1)
    assert other["value"] != first["value"]
    assert other["protocol"] == first["protocol"] and other["protocol_record"]["eval_seed"] == 1
    assert other["protocol_fingerprint"] == first["protocol_fingerprint"]  # a repeat, comparable


def test_latents_depend_on_neither_batch_size_nor_count():
    small = torch.cat(list(latent_batches(50, 8, 7, seed=3)))
    large = torch.cat(list(latent_batches(50, 8, 50, seed=3)))
    assert small.shape == (50, 8) and torch.equal(small, large)
    assert torch.equal(torch.cat(list(latent_batches(20, 8, 6, seed=3))), small[:20])
    assert not torch.equal(torch.cat(list(latent_batches(20, 8, 6, seed=4))), small[:20])


def test_generator_batch_size_does_not_change_the_number(ready):
    G = TinyGenerator(size=RES, noise=0.0)  # per-batch noise is the only batch-dependent input
    values = [kid(G, batch_size=b)["value"] for b in (3, 12)]
    assert abs(values[0] - values[1]) <= 1e-6 * abs(values[1])


def test_reference_sets_train_full_and_test(ready):
    G = TinyGenerator(size=RES)
    records = evaluate_generator_many(
        G, ["kid5k_train", "kid50k_full", "kid10k_test"], dataset="big-sub", resolution=RES, n_gen=8
    )
    by_kind = {r["reference"]["kind"]: r for r in records}
    assert by_kind["train"]["n_ref"] == 12 and by_kind["train"]["reference"]["dataset"] == "big-sub"
    assert by_kind["full"]["n_ref"] == 20 and by_kind["full"]["reference"]["dataset"] == "big"
    assert by_kind["full"]["reference"]["subset_rule"] is None
    assert by_kind["test"]["n_ref"] == 8 and by_kind["test"]["reference"]["split"] == "test"
    assert ("big-sub", RES, "train", None) in ready.loads and ("big", RES, "test", None) in ready.loads
    with pytest.raises(DataError, match="no test split"):
        evaluate_generator(G, "kid10k_test", dataset="tiny", resolution=RES, n_gen=8)


def test_reference_stats_are_cached_by_content(ready):
    G = TinyGenerator(size=RES)
    first = kid(G)
    second = kid(G)
    assert (first["reference"]["stats_cache"], second["reference"]["stats_cache"]) == ("miss", "hit")
    assert second["ref_seconds"] == 0 and second["value"] == first["value"]
    files = sorted((cache_dir() / "metrics").glob("*.npz"))
    assert len(files) == 1
    # same name, same path, one changed pixel: a new content hash, so a cache miss and a recomputation
    changed = ready.splits[("tiny", "train")].copy()
    changed[0, 0, 0, 0] ^= 0xFF
    ready.splits[("tiny", "train")] = changed
    third = kid(G)
    assert third["reference"]["stats_cache"] == "miss"
    assert third["reference"]["content_hash"] != first["reference"]["content_hash"]
    assert len(list((cache_dir() / "metrics").glob("*.npz"))) == 2
    # The value is not compared: a 1-pixel change can vanish in the 16 -> 75 px resize and float rounding
    # (KID was bit-identical on some CPUs). A whole inverted image must change the stored features.
    before = set((cache_dir() / "metrics").glob("*.npz"))
    changed = changed.copy()
    changed[0] = 255 - changed[0]
    ready.splits[("tiny", "train")] = changed
    assert kid(G)["reference"]["stats_cache"] == "miss"
    (added,) = set((cache_dir() / "metrics").glob("*.npz")) - before
    with np.load(files[0]) as old, np.load(added) as new:
        assert old["features"].shape == new["features"].shape
        assert not np.array_equal(old["features"][0], new["features"][0])
        np.testing.assert_allclose(old["features"][1:], new["features"][1:], rtol=1e-5, atol=1e-6)


def test_fid_statistics_and_kid_features_are_stored(ready, declared_standins):
    weights = resolve_weights("torch-fidelity-inception-2015-12-05")
    model = feature_model(TORCH_FIDELITY, ["2048"], weights, torch.device("cpu"))
    reference = load_reference("tiny", RES, "train", None)
    stats = reference_stats(reference, model, {"fid", "kid"}, batch_size=4)
    assert (
        stats.mu.shape == (2048,) and stats.sigma.shape == (2048, 2048) and stats.features.shape == (10, 2048)
    )
    with np.load(cache_dir() / "metrics" / f"{stats.keys['fid']}.npz") as saved:
        assert sorted(saved.files) == ["mu", "sigma"] and np.array_equal(saved["mu"], stats.mu)
    key_fields = json.loads((cache_dir() / "metrics" / f"{stats.keys['kid']}.json").read_text())
    assert key_fields["weights_sha256"] == declared_standins.tf_sha256 and key_fields["input_size"] == 75
    assert reference_stats(reference, model, {"fid", "kid"}, batch_size=4).cache_hit


def test_missing_weights_give_a_pending_record_or_a_clear_error(data, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", offline)
    G = TinyGenerator(size=RES)
    record = evaluate_generator(
        G, "kid5k_train", dataset="tiny", resolution=RES, on_missing_weights="pending"
    )
    assert record["status"] == "pending" and record["value"] is None and record["protocol"] == "kid5k_train"
    assert "weights-inception-2015-12-05-6726825d.pth" in record["reason"] and "\n" not in record["reason"]
    assert record["protocol_record"]["n_gen"] == 5000
    json.dumps(record)
    notice = pending_notice(record)
    assert "\n" not in notice and "kid5k_train left pending" in notice and "degan-bench eval" in notice
    assert G.calls == []  # nothing was generated
    with pytest.raises(WeightsError, match="are not available"):
        evaluate_generator(G, "kid5k_train", dataset="tiny", resolution=RES)


def test_conditional_generator_draws_labels_of_the_training_images(ready):
    ready.labels[("tiny", "train")] = np.array([1, 3] * 5)
    G = TinyGenerator(c_dim=4, size=RES)
    record = evaluate_generator(G, "is10k", dataset="tiny", resolution=RES, n_gen=16, batch_size=6)
    assert record["status"] == "ok" and record["protocol"] == "is16"
    labels = torch.cat(G.labels_seen)
    assert labels.shape == (16, 4) and torch.equal(labels.sum(dim=1), torch.ones(16))
    assert set(labels.argmax(dim=1).tolist()) == {1, 3}
    del ready.labels[("tiny", "train")]
    with pytest.raises(DataError, match="conditional"):
        evaluate_generator(G, "is10k", dataset="tiny", resolution=RES, n_gen=16)


def test_too_few_images_for_the_protocol(ready):
    images = smooth_images(5, RES, seed=9)
    with pytest.raises(DataError, match="has 5 images; kid5k_train needs 5000") as err:
        evaluate_images(images, "kid5k_train", ref="tiny")
    assert "--n-gen 5" in str(err.value) and "kid5_train" in str(err.value)
    record = evaluate_images(images, "kid5k_train", ref="tiny", n_gen=5)
    assert record["protocol"] == "kid5_train" and record["source"] == "images:array"
    assert record["resolution"] == RES and record["kid_subset_size"] == 5


def test_a_generator_with_a_fixed_sampling_batch_is_sampled_in_it(ready):
    # BigGAN in training mode uses batch statistics: its sampling batch is part of the protocol.
    G = TinyGenerator(size=RES)
    sizes: list[int] = []
    G.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    G.sampling_batch = 4
    record = kid(G, batch_size=5)
    assert record["batch_size"] == 4 and sizes == [4, 4, 4]  # 12 images in batches of 4, not 5
