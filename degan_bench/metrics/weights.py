"""Feature-extractor weights: a registry of the standard files and their verified resolution.

Resolution order for a weights file (never a silent fallback to anything else):

1. an explicit path (``weights_path=`` / ``--weights``): a file, or a folder holding the standard
   file name;
2. ``$DEGAN_BENCH_INCEPTION_WEIGHTS``: the same, for offline clusters (a folder can hold both the
   torch-fidelity and the clean-fid file);
3. the cache, ``<cache>/weights/<file name>``;
4. a download from the standard URL, verified against its sha256 and written atomically.

A local file whose sha256 is not the standard one is rejected, unless the caller declares it
non-standard by giving its sha256 (``declared_sha256=`` / ``--weights-sha256`` /
``$DEGAN_BENCH_INCEPTION_SHA256``; several hashes may be given, comma-separated, when a folder holds
two such files). Then it is used, and every record made with it carries that hash and
``standard_weights: false``, so tables refuse to compare it with standard results. Declaring a hash
vouches for the numbers' label, not for the file's safety: a declared file is only ever read as a plain
state dict with ``torch.load(weights_only=True)`` (a pickle payload is refused, never run; see
:mod:`degan_bench.metrics.features`). Tests and offline smoke runs use this route with a seeded
stand-in (:mod:`degan_bench.metrics.standin`).

The torch-fidelity file's full sha256 is not published by torch-fidelity (``torch.hub`` loads it with
``check_hash=False``). The value below is the one independent projects recorded for that release
asset (95,628,359 bytes); its first eight hex digits equal the ``6726825d`` torch.hub hash prefix in
the file name, which is the part torch-fidelity itself vouches for. A download that does not match
is rejected, and every record stores the hash of the file actually used.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from degan_bench.errors import WeightsError
from degan_bench.paths import weights_dir

WEIGHTS_ENV = "DEGAN_BENCH_INCEPTION_WEIGHTS"
SHA256_ENV = "DEGAN_BENCH_INCEPTION_SHA256"
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class WeightsSpec:
    """One standard weights file: where it comes from and how to recognise it."""

    key: str
    file_name: str
    url: str
    sha256: str
    size_bytes: int
    loader: str  # which feature extractor loads it
    provenance: str  # where the sha256 comes from


WEIGHTS: dict[str, WeightsSpec] = {
    spec.key: spec
    for spec in (
        WeightsSpec(
            key="torch-fidelity-inception-2015-12-05",
            file_name="weights-inception-2015-12-05-6726825d.pth",
            url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
            sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
            size_bytes=95_628_359,
            loader="torch-fidelity/inception-v3-compat",
            provenance=(
                "torch-fidelity publishes no checksum (torch.hub loads it with check_hash=False); the full "
                "sha256 is the one several independent projects recorded for this release file, and its "
                "first 8 hex digits match the '6726825d' torch.hub hash prefix in the file name"
            ),
        ),
        WeightsSpec(
            key="clean-fid-inception-2015-12-05",
            file_name="inception-2015-12-05.pt",
            url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
            sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
            size_bytes=95_607_719,
            loader="clean-fid/InceptionV3W",
            provenance="NVIDIA's TorchScript Inception used by stylegan2-ada-pytorch and clean-fid",
        ),
    )
}


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file ready to load: its verified hash and whether it is the standard file."""

    spec: WeightsSpec
    path: Path
    sha256: str
    standard: bool
    source: str  # argument | env | cache | download

    def record(self) -> dict[str, object]:
        return {
            "weights_key": self.spec.key,
            "weights_file": self.path.name,
            "weights_sha256": self.sha256,
            "standard_weights": self.standard,
            "weights_source": self.source,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def where_to_put(spec: WeightsSpec) -> str:
    """The fix line of every missing-weights error: file, URL, sha256 and the places looked in."""
    return (
        f"download {spec.url} (sha256 {spec.sha256}) and put it at {weights_dir() / spec.file_name}, "
        f"or set {WEIGHTS_ENV}=/path/to/{spec.file_name} (or a folder holding it), or pass --weights PATH"
    )


def _missing(spec: WeightsSpec, reason: str) -> WeightsError:
    return WeightsError(
        f"Inception weights {spec.file_name} are not available: {reason}", fix=where_to_put(spec)
    )


def _check_local(spec: WeightsSpec, path: Path, source: str, declared_sha256: str | None) -> ResolvedWeights:
    sha = file_sha256(path)
    if sha == spec.sha256:
        return ResolvedWeights(spec, path, sha, standard=True, source=source)
    if declared_sha256 is None:
        raise WeightsError(
            f"{path} has sha256 {sha}, not the standard {spec.sha256} of {spec.file_name}",
            fix=f"use the standard file ({spec.url}), or declare this one non-standard with "
            f"--weights-sha256 {sha} / {SHA256_ENV}={sha} (it must be a plain state dict, loaded without "
            "running code; its results are marked non-standard and never compared with standard ones)",
        )
    if sha not in _declared_set(declared_sha256):
        raise WeightsError(
            f"{path} has sha256 {sha}, not the declared {declared_sha256}",
            fix="declare the hash of the file you mean to use, or point to the right file",
        )
    return ResolvedWeights(spec, path, sha, standard=False, source=source)


def _declared_set(declared: str) -> set[str]:
    """Declared hashes: one, or several separated by commas (a folder may hold two stand-ins)."""
    return {part.strip().lower() for part in declared.split(",") if part.strip()}


def _explicit_file(spec: WeightsSpec, given: str, origin: str) -> Path:
    path = Path(given).expanduser()
    if path.is_dir():
        path = path / spec.file_name
    if not path.is_file():
        raise _missing(spec, f"{origin} points to {path}, which does not exist")
    return path


def _download(spec: WeightsSpec, dest: Path) -> None:
    """Stream ``spec.url`` to a temp file beside ``dest``, verify its sha256, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as f:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if digest.hexdigest() != spec.sha256:
            raise _missing(
                spec, f"the download from {spec.url} has sha256 {digest.hexdigest()}, not {spec.sha256}"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise _missing(spec, f"download from {spec.url} failed ({type(err).__name__}: {err})") from None
    finally:
        tmp.unlink(missing_ok=True)


def resolve_weights(
    key: str,
    weights_path: str | Path | None = None,
    declared_sha256: str | None = None,
    *,
    allow_download: bool = True,
) -> ResolvedWeights:
    """Find, verify and (if needed) download the weights ``key`` (see the module docstring)."""
    spec = WEIGHTS[key]
    declared = declared_sha256 or os.environ.get(SHA256_ENV) or None
    env_path = os.environ.get(WEIGHTS_ENV) or None
    if weights_path is not None:
        path = _explicit_file(spec, str(weights_path), "--weights")
        return _check_local(spec, path, "argument", declared)
    if env_path is not None:
        path = _explicit_file(spec, env_path, WEIGHTS_ENV)
        return _check_local(spec, path, "env", declared)
    if declared is not None:
        raise WeightsError(
            f"a non-standard weights sha256 ({declared}) was declared but no weights file was given",
            fix=f"pass --weights PATH or set {WEIGHTS_ENV} to the file it describes",
        )
    cached = weights_dir() / spec.file_name
    if cached.is_file():
        sha = file_sha256(cached)
        if sha != spec.sha256:
            raise WeightsError(
                f"cached {cached} has sha256 {sha}, not the standard {spec.sha256}",
                fix=f"delete it (it is corrupt or was replaced); it is downloaded again from {spec.url}",
            )
        return ResolvedWeights(spec, cached, sha, standard=True, source="cache")
    if not allow_download:
        raise _missing(spec, "not found locally and downloads are off")
    _download(spec, cached)
    return ResolvedWeights(spec, cached, spec.sha256, standard=True, source="download")


def weights_status() -> list[str]:
    """One line per feature-extractor weights file: where it would come from, and whether it verifies.
    Never downloads (``degan-bench doctor``)."""
    lines = []
    for key, spec in WEIGHTS.items():
        try:
            resolved = resolve_weights(key, allow_download=False)
        except WeightsError as err:
            if "downloads are off" not in err.problem:  # a given file is missing or does not verify
                lines.append(f"{key}: [red]unusable[/]: {err.problem}")
                continue
            lines.append(
                f"{key}: [yellow]not here yet[/]: the first evaluation downloads {spec.url} "
                f"(sha256-verified) into {weights_dir()}; offline, put the file there or set {WEIGHTS_ENV}"
            )
            continue
        kind = "standard" if resolved.standard else "[yellow]non-standard (declared)[/]"
        lines.append(f"{key}: {kind}, {resolved.source} {resolved.path} (sha256 {resolved.sha256[:12]}...)")
    return lines
