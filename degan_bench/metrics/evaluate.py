"""Evaluate a generator (or a folder of images) under named protocols; one record per protocol.

Generation follows the official evaluation code (stylegan2-ada-pytorch ``metric_utils.py``; TF
StyleGAN2/DiffAugment with ``is_validation=True``): ``G(z, c, truncation_psi=1, noise_mode="random")``
on the run's device, in batches, images quantized exactly as upstream
(``(x * 127.5 + 128).clamp(0, 255).to(uint8)``) and fed straight to the Inception (no PNG round trip).
Upstream draws z and labels from unseeded RNGs; here everything is seeded by the protocol's
``eval_seed`` so an evaluation can be repeated exactly:

- z: a CPU ``torch.Generator`` seeded with ``eval_seed``, drawn in fixed blocks of 1,024 rows, so the
  latents depend neither on the batch size nor on the device (and 5k is a prefix of 50k);
- per-layer noise (``noise_mode="random"``): the device RNG, seeded inside ``torch.random.fork_rng``,
  so training's RNG streams are untouched (exact resume). Noise is drawn per batch, so with random
  noise the images (not their distribution) depend on the batch size;
- labels of conditional models: drawn uniformly over the training images' labels (as upstream),
  with ``numpy.random.RandomState(eval_seed)``, one-hot.

TF32 is off while evaluating. FID (``fid_statistics_to_metric``), KID (``kid_features_to_metric``,
features of generated images first, as ``calculate_metrics(input1=generated, input2=reference)``)
and IS (``isc_features_to_metric``) are torch-fidelity's own functions; clean-FID differs only in
the resizer and network (:mod:`degan_bench.metrics.features`).

A record is ready for ``RunDir.append_metric``. When the standard weights cannot be had (or a given
file cannot be loaded) and the caller asked for ``on_missing_weights="pending"`` (training, demo), each
record is ``status: "pending"`` with ``value: None`` and a one-line ``reason``; ``degan-bench eval RUN``
fills it in later (:mod:`degan_bench.metrics.run_eval`).

``progress=True`` (``degan-bench eval``) shows a rich progress bar on stderr for the generated images and
the reference images whose statistics are not cached yet. Training leaves it off: its own kimg bar is
live then, and rich allows one live display at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from torch import nn

from degan_bench import __version__
from degan_bench.core.device import parse_device
from degan_bench.errors import DataError, WeightsError
from degan_bench.metrics.features import FeatureModel, feature_model, library_versions
from degan_bench.metrics.protocols import Protocol, fingerprint, get_protocol
from degan_bench.metrics.reference import (
    Reference,
    ReferenceStats,
    extract_features,
    image_batches,
    load_reference,
    reference_stats,
    training_labels,
)
from degan_bench.metrics.weights import ResolvedWeights, resolve_weights
from degan_bench.models import images_to_uint8

OnMissingWeights = Literal["raise", "pending"]
LATENT_BLOCK = 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
RANK_WARNING_N = 2048  # below this many images the 2048-d covariance is rank-deficient
Log = Callable[[str], None]


def resolve_protocols(
    protocols: Sequence[str | Protocol], *, seed: int | None = None, n_gen: int | None = None
) -> list[Protocol]:
    """Protocols by id (or as given), optionally derived with another eval seed or generated count;
    duplicates are dropped."""
    resolved = [
        (get_protocol(p) if isinstance(p, str) else p).derive(n_gen=n_gen, eval_seed=seed) for p in protocols
    ]
    return list({(p.id, p.eval_seed): p for p in resolved}.values())


def resolve_protocol_weights(
    protocols: Sequence[Protocol], weights_path: str | Path | None, weights_sha256: str | None
) -> dict[str, ResolvedWeights]:
    keys = sorted({p.weights for p in protocols})
    return {key: resolve_weights(key, weights_path, weights_sha256) for key in keys}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def pending_record(protocol: Protocol, reason: str, **context: Any) -> dict[str, Any]:
    """A placeholder result: the metric could not be computed now (e.g. weights unavailable offline)."""
    return {
        "protocol": protocol.id,
        "metric": protocol.metric,
        "value": None,
        "status": "pending",
        "reason": reason,
        "protocol_record": protocol.record(),
        "weights_sha256": None,
        "n_gen": protocol.n_gen,
        **context,
    }


# -- generated images --------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 exactly as upstream; grayscale is repeated to RGB."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"generator output must be [N, 1 or 3, H, W], got {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return images_to_uint8(images)


def latent_batches(n: int, z_dim: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """``n`` latents in batches; row ``i`` is the same whatever the batch size (fixed 1,024-row blocks)."""
    generator = torch.Generator().manual_seed(seed)
    buffer = torch.empty(0, z_dim)
    produced = 0
    while produced < n:
        want = min(batch_size, n - produced)
        while len(buffer) < want:
            buffer = torch.cat([buffer, torch.randn([LATENT_BLOCK, z_dim], generator=generator)])
        yield buffer[:want]
        buffer = buffer[want:]
        produced += want


def label_batches(
    labels: np.ndarray, c_dim: int, n: int, batch_size: int, seed: int
) -> Iterator[torch.Tensor]:
    """One-hot labels drawn uniformly over the training images' labels."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= c_dim:
        raise DataError(f"training labels must lie in [0, {c_dim}) for a generator with c_dim={c_dim}")
    picks = torch.from_numpy(labels[np.random.RandomState(seed).randint(len(labels), size=n)])
    for start in range(0, n, batch_size):
        chunk = picks[start : start + batch_size]
        yield torch.zeros(len(chunk), c_dim).scatter_(1, chunk[:, None], 1.0)


def generated_batches(
    G: nn.Module,
    n: int,
    *,
    batch_size: int,
    seed: int,
    truncation_psi: float,
    noise_mode: str,
    device: torch.device,
    labels: np.ndarray | None = None,
) -> Iterator[torch.Tensor]:
    """uint8 NCHW images from ``G`` on ``device`` (seeding as in the module docstring)."""
    z_dim, c_dim = int(G.z_dim), int(getattr(G, "c_dim", 0))
    if c_dim > 0 and labels is None:
        raise DataError(f"the generator is conditional (c_dim={c_dim}) but the training set has no labels")
    conditions = label_batches(labels, c_dim, n, batch_size, seed) if c_dim > 0 else None
    cuda_devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda_devices), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)  # this device only: other GPUs' streams stay untouched
        for z in latent_batches(n, z_dim, batch_size, seed):
            c = next(conditions) if conditions is not None else torch.zeros(len(z), 0)
            images = G(z.to(device), c.to(device), truncation_psi=truncation_psi, noise_mode=noise_mode)
            yield to_uint8(images)


@contextlib.contextmanager
def fp32_math() -> Iterator[None]:
    """Full-precision matmul/conv while evaluating (TF32 changes FID in the 3rd digit)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# -- metric computation ------------------------------------------------------------------------
def _score(
    protocol: Protocol, features: dict[str, torch.Tensor], stats: ReferenceStats | None
) -> dict[str, Any]:
    """Value (and std) of one protocol from generated features and reference statistics."""
    if protocol.metric == "is":
        from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

        out = isc_features_to_metric(
            features["logits_unbiased"], splits=protocol.is_splits, shuffle=True, rng_seed=protocol.eval_seed
        )
        return {"value": out[KEY_METRIC_ISC_MEAN], "value_std": out[KEY_METRIC_ISC_STD]}
    assert stats is not None
    generated = features["2048"]
    if protocol.metric == "fid":
        from torch_fidelity.metric_fid import (
            KEY_METRIC_FID,
            fid_features_to_statistics,
            fid_statistics_to_metric,
        )

        reference = {"mu": stats.mu, "sigma": stats.sigma}
        out = fid_statistics_to_metric(fid_features_to_statistics(generated), reference, verbose=False)
        return {"value": out[KEY_METRIC_FID], "value_std": None}
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    subset_size = min(protocol.kid_subset_size_max, stats.n, len(generated))
    out = kid_features_to_metric(
        generated,
        torch.from_numpy(stats.features),
        kid_subsets=protocol.kid_subsets,
        kid_subset_size=subset_size,
        rng_seed=protocol.eval_seed,
        verbose=False,
    )
    return {
        "value": out[KEY_METRIC_KID_MEAN],
        "value_std": out[KEY_METRIC_KID_STD],
        "kid_subset_size": subset_size,
    }


def _warnings(
    protocol: Protocol, weights: ResolvedWeights, n_ref: int | None, score: dict[str, Any]
) -> list[str]:
    notes = []
    if not weights.standard:
        notes.append(f"non-standard Inception weights (sha256 {weights.sha256}): not comparable with papers")
    if not protocol.registered:
        notes.append(f"derived protocol ({protocol.n_gen} generated images): not a paper protocol")
    if protocol.metric == "fid":
        for what, n in (("reference", n_ref), ("generated set", protocol.n_gen)):
            if n is not None and n < RANK_WARNING_N:
                notes.append(
                    f"{what} has {n} < {RANK_WARNING_N} images: the 2048-d feature covariance is "
                    "rank-deficient (FID is biased and noisy; compare KID too)"
                )
    if protocol.metric == "kid" and score["kid_subset_size"] < protocol.kid_subset_size_max:
        notes.append(
            f"KID subsets hold {score['kid_subset_size']} images (capped to the data, "
            f"not {protocol.kid_subset_size_max})"
        )
    return notes


def pending_notice(record: dict[str, Any]) -> str:
    """The one line to show when a metric had to be left pending (training, demo)."""
    return (
        f"{record['protocol']} left pending: {record.get('reason')} -- the run is kept; "
        "`degan-bench eval RUN_DIR` computes it once the weights are available"
    )


class _Bars:
    """Progress bars of one evaluation (no-ops unless enabled)."""

    def __init__(self, bar: RichProgress | None) -> None:
        self.bar = bar

    def counted(self, batches: Iterable[torch.Tensor], label: str, total: int) -> Iterator[torch.Tensor]:
        if self.bar is None:
            yield from batches
            return
        task = self.bar.add_task(label, total=total)
        for batch in batches:
            yield batch
            self.bar.advance(task, len(batch))

    def counting_model(self, model: FeatureModel, label: str, total: int) -> Any:
        """``model`` advancing a bar per batch (reference statistics call it batch by batch)."""
        if self.bar is None:
            return model
        bar, task = self.bar, self.bar.add_task(label, total=total)

        class _Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(model, name)

            def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
                out = model(images)
                bar.advance(task, len(images))
                return out

        return _Counting()


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[_Bars]:
    if not enabled:
        yield _Bars(None)
        return
    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bar:
        yield _Bars(bar)


def _preload_models(
    protocols: Sequence[Protocol], weights: dict[str, ResolvedWeights], device: torch.device
) -> None:
    """Load every feature model now, so a weights file that cannot be loaded fails (or leaves the
    metric pending) before any image is generated."""
    layers: dict[tuple[str, str], set[str]] = {}
    for p in protocols:
        layers.setdefault((p.feature_extractor, p.weights), set()).add(p.feature_layer)
    for (extractor, key), wanted in layers.items():
        feature_model(extractor, sorted(wanted), weights[key], device)


def evaluate_protocols(
    protocols: Sequence[Protocol],
    *,
    batches_for: Callable[[Protocol], Iterator[torch.Tensor]],
    reference_for: Callable[[str], Reference],
    weights: dict[str, ResolvedWeights],
    device: torch.device,
    batch_size: int,
    context: dict[str, Any],
    log: Log | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Shared core: one feature pass per (extractor, generated set), cached reference statistics."""
    groups: dict[tuple[Any, ...], list[Protocol]] = {}
    for p in protocols:
        key = (p.feature_extractor, p.n_gen, p.eval_seed, p.truncation_psi, p.noise_mode)
        groups.setdefault(key, []).append(p)
    references: dict[str, Reference] = {}
    stats_cache: dict[tuple[str, str], ReferenceStats] = {}
    results: dict[int, dict[str, Any]] = {}
    with fp32_math(), _progress_bars(progress) as bars:
        for group in groups.values():
            first = group[0]
            model: FeatureModel = feature_model(
                first.feature_extractor,
                sorted({p.feature_layer for p in group}),
                weights[first.weights],
                device,
            )
            if log:
                names = ", ".join(p.id for p in group)
                log(f"{names}: {first.n_gen} images -> {first.feature_extractor} on {device}")
            started = time.perf_counter()
            label = f"{first.feature_extractor.split('/')[0]}: {first.n_gen} images"
            features = extract_features(model, bars.counted(batches_for(first), label, first.n_gen))
            gen_seconds = time.perf_counter() - started
            for p in group:
                p_started = time.perf_counter()
                stats = None
                if p.reference is not None:
                    if p.reference not in references:
                        references[p.reference] = reference_for(p.reference)
                    stat_key = (p.reference, p.feature_extractor)
                    if stat_key not in stats_cache:
                        kinds = {
                            q.metric
                            for q in protocols
                            if q.reference == p.reference and q.feature_extractor == p.feature_extractor
                        }
                        reference = references[p.reference]
                        counted = bars.counting_model(
                            model,
                            f"reference {p.reference}: {len(reference.data)} images",
                            len(reference.data),
                        )
                        stats_cache[stat_key] = reference_stats(reference, counted, kinds, batch_size)
                    stats = stats_cache[stat_key]
                score = _score(p, features, stats)
                w = weights[p.weights]
                ref = references.get(p.reference) if p.reference else None
                protocol_record = {**p.record(), "inception_input_size": model.input_size}
                results[id(p)] = {
                    "protocol": p.id,
                    "metric": p.metric,
                    **score,
                    "status": "ok",
                    "protocol_record": protocol_record,
                    "protocol_fingerprint": fingerprint(protocol_record, w.sha256),
                    **w.record(),
                    "n_gen": p.n_gen,
                    "n_ref": stats.n if stats else None,
                    "reference": {**ref.description, "stats_cache": "hit" if stats.cache_hit else "miss"}
                    if ref and stats
                    else None,
                    "eval_seconds": round(gen_seconds + time.perf_counter() - p_started, 3),
                    "gen_seconds": round(gen_seconds, 3),
                    "ref_seconds": round(stats.seconds, 3) if stats else 0.0,
                    "images_per_second": round(p.n_gen / gen_seconds, 2) if gen_seconds > 0 else None,
                    "device": device_name(device),
                    "batch_size": batch_size,
                    "versions": {**library_versions(), "degan-bench": __version__},
                    "warnings": _warnings(p, w, stats.n if stats else None, score),
                    **context,
                }
    return [results[id(p)] for p in protocols]


# -- public entry points -----------------------------------------------------------------------
def _module_device(G: nn.Module, device: str | torch.device | None) -> torch.device:
    tensors = [*G.parameters(), *G.buffers()]
    own = tensors[0].device if tensors else torch.device("cpu")
    if device is None:
        return own
    device = torch.device(device)
    if tensors and (own.type, own.index or 0) != (device.type, device.index or 0):
        raise ValueError(f"G lives on {own} but evaluation was asked on {device}; move G first")
    return device


def evaluate_generator_many(
    G: nn.Module,
    protocols: Sequence[str | Protocol],
    *,
    dataset: str,
    resolution: int,
    subset_rule: str | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    weights_path: str | Path | None = None,
    weights_sha256: str | None = None,
    seed: int | None = None,
    n_gen: int | None = None,
    on_missing_weights: OnMissingWeights = "raise",
    log: Log | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One record per distinct protocol, in order. Protocols that generate the same set (e.g.
    ``fid5k_train`` and ``kid5k_train``) share the generated images and their features."""
    resolved = resolve_protocols(protocols, seed=seed, n_gen=n_gen)
    eval_device = _module_device(G, device)
    context = {
        "source": "generator",
        "dataset": dataset,
        "resolution": resolution,
        "subset_rule": subset_rule,
    }
    try:
        weights = resolve_protocol_weights(resolved, weights_path, weights_sha256)
        _preload_models(resolved, weights, eval_device)
    except WeightsError as err:
        if on_missing_weights != "pending":
            raise
        return [pending_record(p, str(err), device=device_name(eval_device), **context) for p in resolved]
    labels = training_labels(dataset, resolution, subset_rule) if int(getattr(G, "c_dim", 0)) > 0 else None
    # A generator that samples with batch statistics (BigGAN-PyTorch in training mode) fixes its batch.
    batch_size = int(getattr(G, "sampling_batch", None) or batch_size)

    def batches_for(p: Protocol) -> Iterator[torch.Tensor]:
        return generated_batches(
            G,
            p.n_gen,
            batch_size=batch_size,
            seed=p.eval_seed,
            truncation_psi=p.truncation_psi,
            noise_mode=p.noise_mode,
            device=eval_device,
            labels=labels,
        )

    was_training = G.training
    G.eval()
    try:
        return evaluate_protocols(
            resolved,
            batches_for=batches_for,
            reference_for=lambda kind: load_reference(dataset, resolution, kind, subset_rule),
            weights=weights,
            device=eval_device,
            batch_size=batch_size,
            context=context,
            log=log,
            progress=progress,
        )
    finally:
        G.train(was_training)


def evaluate_generator(G: nn.Module, protocol_id: str, **kwargs: Any) -> dict[str, Any]:
    """Evaluate ``G`` under one protocol; see :func:`evaluate_generator_many` for the arguments."""
    return evaluate_generator_many(G, [protocol_id], **kwargs)[0]


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of images", fix="pass --images DIR with .png/.jpg files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for corrupt or truncated files
        raise DataError(
            f"{path}: cannot decode the image ({type(err).__name__})",
            fix="the file is corrupt or not an image: replace or delete it, then run again",
        ) from None


def _folder_batches(files: Sequence[Path], batch_size: int) -> Iterator[torch.Tensor]:
    shape = None
    for start in range(0, len(files), batch_size):
        arrays = []
        for path in files[start : start + batch_size]:
            array = _read_rgb(path)
            shape = shape or array.shape
            if array.shape != shape:
                raise DataError(
                    f"{path} is {array.shape[1]}x{array.shape[0]}, the first image {shape[1]}x{shape[0]}",
                    fix="all images of a set must have one size",
                )
            arrays.append(array)
        yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def default_device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
    return parse_device(device or "auto")


def evaluate_images_many(
    images: str | Path | np.ndarray,
    protocols: Sequence[str | Protocol],
    *,
    ref: str | None,
    resolution: int | None = None,
    subset_rule: str | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    weights_path: str | Path | None = None,
    weights_sha256: str | None = None,
    seed: int | None = None,
    n_gen: int | None = None,
    log: Log | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Evaluate a folder of images (or a uint8 NHWC array) against dataset ``ref``'s reference sets.

    The first ``n_gen`` images (sorted by file name) are used, where ``n_gen`` is each protocol's
    count unless given (a different count derives a non-registered protocol, e.g. ``fid500_train``).
    ``resolution`` (of the prepared reference) defaults to the images' size."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
        available, size, origin = len(images), images.shape[1], "array"
    else:
        files = image_files(Path(images))
        available, size, origin = len(files), _read_rgb(files[0]).shape[0], str(images)
    resolved = resolve_protocols(protocols, seed=seed, n_gen=n_gen)
    for protocol in resolved:
        if available < protocol.n_gen:
            raise DataError(
                f"{origin} has {available} images; {protocol.id} needs {protocol.n_gen}",
                fix=f"provide {protocol.n_gen} images, or pass --n-gen {available} (recorded as the "
                f"non-paper protocol {protocol.derive(n_gen=available).id})",
            )
        if protocol.reference is not None and ref is None:
            raise DataError(f"{protocol.id} compares with a reference dataset", fix="pass --ref DATASET")
    resolution = resolution or int(size)
    weights = resolve_protocol_weights(resolved, weights_path, weights_sha256)
    eval_device = default_device(device)
    _preload_models(resolved, weights, eval_device)

    def batches_for(p: Protocol) -> Iterator[torch.Tensor]:
        if isinstance(images, np.ndarray):
            return image_batches(images[: p.n_gen], batch_size)
        return _folder_batches(files[: p.n_gen], batch_size)

    context = {
        "source": f"images:{origin}",
        "n_available": available,
        "dataset": ref,
        "resolution": resolution,
        "subset_rule": subset_rule,
    }
    return evaluate_protocols(
        resolved,
        batches_for=batches_for,
        reference_for=lambda kind: load_reference(str(ref), resolution, kind, subset_rule),
        weights=weights,
        device=eval_device,
        batch_size=batch_size,
        context=context,
        log=log,
        progress=progress,
    )


def evaluate_images(images: str | Path | np.ndarray, protocol_id: str, **kwargs: Any) -> dict[str, Any]:
    """Evaluate images under one protocol; see :func:`evaluate_images_many` for the arguments."""
    return evaluate_images_many(images, [protocol_id], **kwargs)[0]
