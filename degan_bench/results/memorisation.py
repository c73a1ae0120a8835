"""Memorisation checks for the low-shot sets (at most :data:`LOW_SHOT_MAX` training images).

For each method row of a sample panel:

- **nearest training image** of every fake shown, by pixel L2 distance at 32 px (no network involved,
  so it means the same with or without the Inception weights): a fake that is a copy of a training
  image sits above its twin;
- **precision / recall** (Kynkäänniemi et al. 2019, k = 3, torch-fidelity's ``prc`` computation) of
  all the fakes of the grid against all training images, on Inception-v3 pool features when the
  standard weights are available locally (on the GPU when there is one). Without them the features are
  the images' own pixels at 32 px (random stand-in Inception weights would give numbers no more
  meaningful, at minutes of CPU per page), and the values are labelled *stand-in*. A grid holds few
  fakes (32 by default), so these values are indicative, not a metric of the table. Results are cached
  under ``$DEGAN_BENCH_CACHE/leaderboards/prc`` by the grid's and the training set's content.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from degan_bench.errors import DeganError
from degan_bench.results.store import StoredRun

if TYPE_CHECKING:
    from degan_bench.results.media import PanelRow

#: a dataset with at most this many training images gets the memorisation rows
LOW_SHOT_MAX = 500
NEIGHBOURHOOD = 3
_PIXEL_SIZE = 32


def is_low_shot(dataset: str) -> bool:
    from degan_bench.data.registry import get_dataset_spec

    try:
        count = get_dataset_spec(dataset).expected_counts.get("train")
    except DeganError:
        return False
    return count is not None and count <= LOW_SHOT_MAX


def training_images(run: StoredRun) -> np.ndarray | None:
    """The run's training images (uint8 NHWC), or None when the dataset is not prepared here."""
    from degan_bench.data.prepare import load_prepared

    data = (run.recipe or {}).get("data", {})
    try:
        prepared = load_prepared(str(run.dataset), data.get("resolution"), "train", data.get("subset_rule"))
    except (DeganError, OSError, ValueError):
        return None
    return np.asarray(prepared.images)


def _pixels(images: list[Image.Image] | np.ndarray) -> np.ndarray:
    """Images as flat float vectors of their pixels at 32 px."""
    pictures = images if isinstance(images, list) else [Image.fromarray(x) for x in images]
    size = (_PIXEL_SIZE, _PIXEL_SIZE)
    small = [np.asarray(p.convert("RGB").resize(size, Image.Resampling.BILINEAR)) for p in pictures]
    return np.stack(small).reshape(len(small), -1).astype(np.float32) / 255.0


def nearest(fakes: list[Image.Image], reals: np.ndarray) -> list[int]:
    """Index of the nearest training image of every fake (pixel L2 at 32 px)."""
    a, b = _pixels(fakes), _pixels(reals)
    distances = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :]
    return [int(i) for i in distances.argmin(axis=1)]


class Features:
    """Inception-v3 pool features with the standard weights when they are available locally, else the
    images' pixels at 32 px (``standard`` False: the values made with them are stand-ins)."""

    def __init__(self) -> None:
        from degan_bench.metrics.weights import resolve_weights

        self.net: torch.nn.Module | None = None
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.name = "pixels-32"
        try:
            weights = resolve_weights("torch-fidelity-inception-2015-12-05", allow_download=False)
        except DeganError:
            return
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights.path)
        ).to(self.device)
        self.net.eval()
        self.name = f"inception-{weights.sha256[:12]}"

    @property
    def standard(self) -> bool:
        return self.net is not None

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        if self.net is None:
            return torch.from_numpy(_pixels(images))
        batches = []
        for start in range(0, len(images), 32):
            chunk = torch.from_numpy(np.array(images[start : start + 32])).permute(0, 3, 1, 2)
            batches.append(self.net(chunk.to(self.device))[0].float().cpu())
        return torch.cat(batches)


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


_REAL_FEATURES: dict[tuple[str, str], torch.Tensor] = {}


def precision_recall(fakes: np.ndarray, reals: np.ndarray, features: Features) -> tuple[float, float]:
    """Precision and recall of ``fakes`` against ``reals`` (cached on disk by content and features)."""
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    from degan_bench.paths import cache_dir

    real_key = (features.name, _digest(reals))
    key = f"{features.name}-{real_key[1]}-{_digest(fakes)}"
    cached = cache_dir() / "leaderboards" / "prc" / f"{key}.json"
    if cached.is_file():
        data = json.loads(cached.read_text())
        return float(data["precision"]), float(data["recall"])
    if real_key not in _REAL_FEATURES:
        _REAL_FEATURES[real_key] = features(reals)
    k = min(NEIGHBOURHOOD, len(fakes) - 1, len(reals) - 1)
    precision, recall = calculate_precision_recall_full(features(fakes), _REAL_FEATURES[real_key], k)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"precision": float(precision), "recall": float(recall)}))
    return float(precision), float(recall)


_FEATURES: list[Features] = []


def memorisation_rows(
    dataset: str, rows: list[PanelRow], runs: list[StoredRun], kimgs: list[int]
) -> tuple[list[PanelRow], str]:
    """``rows`` (real row first, then one per run) with a nearest-training-image row under every method
    row and precision / recall in its label; the caption's addition says how they were made."""
    from degan_bench.results.media import PanelRow, grid_tiles, sample_grids

    if not is_low_shot(dataset) or not runs:
        return rows, ""
    reals = training_images(runs[0])
    if reals is None:
        return rows, "; nearest training images and precision/recall: the dataset is not prepared here"
    if not _FEATURES:
        _FEATURES.append(Features())
    features = _FEATURES[0]
    out = rows[:1] if rows and rows[0].label == "real" else []
    method_rows = rows[len(out) :]
    for row, run, kimg in zip(method_rows, runs, kimgs, strict=True):
        neighbours = nearest(row.tiles, reals)
        grid_path = dict(sample_grids(run.path))[kimg]
        size = (run.recipe or {}).get("training", {}).get("grid_size") or (8, 4)
        every = grid_tiles(grid_path, (int(size[0]), int(size[1])), int(size[0]) * int(size[1]))
        fakes = np.stack([np.asarray(t.convert("RGB").resize(reals.shape[2:0:-1])) for t in every])
        precision, recall = precision_recall(fakes, reals, features)
        tag = "" if features.standard else ", stand-in"
        label = f"{row.label}\nP {precision:.2f} / R {recall:.2f}{tag}"
        out.append(PanelRow(label, row.tiles))
        out.append(PanelRow("nearest real", [Image.fromarray(reals[i]) for i in neighbours]))
    weights = (
        "Inception-v3 features"
        if features.standard
        else "stand-in features (pixels at 32 px; no Inception weights here)"
    )
    note = (
        f"; under each method its nearest training images (pixel L2 at 32 px); P / R: precision and recall "
        f"(k = {NEIGHBOURHOOD}) of the grid's fakes against the {len(reals)} training images on {weights}"
    )
    return out, note
