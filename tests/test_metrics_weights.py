"""Weights resolution: order, sha256 verification, declared non-standard files, downloads, errors.

Most tests use small dummy files and a registry entry patched to their hash: resolution only hashes
files, so the 95 MB Inception is not needed to test it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import urllib.error

import pytest

from degan_bench.errors import WeightsError
from degan_bench.metrics import weights as weights_mod
from degan_bench.metrics.weights import WEIGHTS, resolve_weights
from degan_bench.paths import weights_dir

KEY = "torch-fidelity-inception-2015-12-05"
STANDARD = b"the standard weights"
STANDARD_SHA = hashlib.sha256(STANDARD).hexdigest()
OTHER = b"some other weights"
OTHER_SHA = hashlib.sha256(OTHER).hexdigest()


@pytest.fixture
def patched_spec(monkeypatch):
    """The registry entry with the dummy file's sha256 as the standard one."""
    spec = dataclasses.replace(WEIGHTS[KEY], sha256=STANDARD_SHA, size_bytes=len(STANDARD))
    monkeypatch.setitem(WEIGHTS, KEY, spec)
    return spec


@pytest.fixture
def offline(monkeypatch):
    calls = []

    def refuse(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", refuse)
    return calls


def serve(monkeypatch, payload: bytes) -> list[str]:
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", fake_urlopen)
    return calls


def test_real_registry_entries_are_complete():
    tf = WEIGHTS["torch-fidelity-inception-2015-12-05"]
    assert tf.sha256.startswith("6726825d") and tf.file_name.endswith("6726825d.pth")  # torch.hub prefix
    clean = WEIGHTS["clean-fid-inception-2015-12-05"]
    assert clean.sha256 == "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
    for spec in WEIGHTS.values():
        assert (
            len(spec.sha256) == 64 and spec.url.startswith("https://") and spec.url.endswith(spec.file_name)
        )


def test_missing_weights_error_names_file_url_sha_and_where_to_put_it(offline):
    with pytest.raises(WeightsError) as err:
        resolve_weights(KEY)
    message = str(err.value)
    spec = WEIGHTS[KEY]
    assert "\n" not in message
    for needed in (
        spec.file_name,
        spec.url,
        spec.sha256,
        str(weights_dir() / spec.file_name),
        "DEGAN_BENCH_INCEPTION_WEIGHTS",
        "--weights",
    ):
        assert needed in message
    assert offline == [spec.url]
    assert not weights_dir().exists() or not any(weights_dir().iterdir())  # nothing half-written


def test_standard_file_from_path_env_folder_and_cache(patched_spec, tmp_path, monkeypatch, offline):
    file = tmp_path / "w.pth"
    file.write_bytes(STANDARD)
    got = resolve_weights(KEY, weights_path=file)
    assert (got.path, got.sha256, got.standard, got.source) == (file, STANDARD_SHA, True, "argument")

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / patched_spec.file_name).write_bytes(STANDARD)
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_WEIGHTS", str(folder))
    got = resolve_weights(KEY)
    assert (got.path, got.source, got.standard) == (folder / patched_spec.file_name, "env", True)
    monkeypatch.delenv("DEGAN_BENCH_INCEPTION_WEIGHTS")

    cached = weights_dir() / patched_spec.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(STANDARD)
    got = resolve_weights(KEY)
    assert (got.path, got.source) == (cached, "cache")
    assert offline == []


def test_explicit_path_wins_and_never_falls_back(patched_spec, tmp_path, monkeypatch, offline):
    cached = weights_dir() / patched_spec.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(STANDARD)
    with pytest.raises(WeightsError, match=r"points to .*missing\.pth, which does not exist"):
        resolve_weights(KEY, weights_path=tmp_path / "missing.pth")
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_WEIGHTS", str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match="DEGAN_BENCH_INCEPTION_WEIGHTS points to"):
        resolve_weights(KEY)


def test_wrong_sha_local_file_is_rejected_with_the_declare_hint(patched_spec, tmp_path):
    file = tmp_path / "w.pth"
    file.write_bytes(OTHER)
    with pytest.raises(WeightsError) as err:
        resolve_weights(KEY, weights_path=file)
    message = str(err.value)
    assert OTHER_SHA in message and STANDARD_SHA in message and f"--weights-sha256 {OTHER_SHA}" in message


def test_declared_non_standard_file_is_accepted_and_marked(patched_spec, tmp_path, monkeypatch):
    file = tmp_path / "w.pth"
    file.write_bytes(OTHER)
    got = resolve_weights(KEY, weights_path=file, declared_sha256=OTHER_SHA)
    assert (got.sha256, got.standard) == (OTHER_SHA, False)
    assert got.record()["standard_weights"] is False and got.record()["weights_sha256"] == OTHER_SHA
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_WEIGHTS", str(file))
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_SHA256", f"{'0' * 64},{OTHER_SHA.upper()}")  # a list is allowed
    assert resolve_weights(KEY).standard is False
    with pytest.raises(WeightsError, match="not the declared"):
        resolve_weights(KEY, declared_sha256="0" * 64)


def test_declared_sha_without_a_file_is_an_error(patched_spec, monkeypatch):
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_SHA256", OTHER_SHA)
    with pytest.raises(WeightsError, match="declared but no weights file was given"):
        resolve_weights(KEY)


def test_corrupt_cache_is_reported_not_used(patched_spec, offline):
    cached = weights_dir() / patched_spec.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(OTHER)
    with pytest.raises(WeightsError, match=r"cached .* has sha256"):
        resolve_weights(KEY)
    assert offline == []


def test_download_is_verified_then_cached(patched_spec, monkeypatch):
    calls = serve(monkeypatch, STANDARD)
    got = resolve_weights(KEY)
    assert (got.source, got.standard, got.path.read_bytes()) == ("download", True, STANDARD)
    assert calls == [patched_spec.url]
    assert resolve_weights(KEY).source == "cache" and len(calls) == 1


def test_download_with_wrong_hash_leaves_nothing_behind(patched_spec, monkeypatch):
    serve(monkeypatch, OTHER)
    with pytest.raises(WeightsError, match=f"has sha256 {OTHER_SHA}"):
        resolve_weights(KEY)
    assert list(weights_dir().iterdir()) == []


def test_downloads_can_be_switched_off(patched_spec, monkeypatch):
    calls = serve(monkeypatch, STANDARD)
    with pytest.raises(WeightsError, match="downloads are off"):
        resolve_weights(KEY, allow_download=False)
    assert calls == []
