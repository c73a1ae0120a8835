"""Inception features of uint8 images, through torch-fidelity or clean-fid (never a reimplementation).

- ``torch-fidelity/inception-v3-compat``: torch-fidelity's ``FeatureExtractorInceptionV3`` loaded
  from the resolved weights file (``feature_extractor_weights_path``). It resizes inside with its
  TF1-compatible bilinear interpolation, as the TF Inception graph of DiffAugment and
  stylegan2-ada did, and gives ``2048`` (pool3) and ``logits_unbiased`` (IS) features.
- ``clean-fid/InceptionV3W``: clean-fid's anti-aliased PIL-bicubic resize to 299
  (``cleanfid.resize.build_resizer("clean")``) then clean-fid's wrapper of NVIDIA's TorchScript
  Inception, loaded from the resolved file without any download. Gives ``2048`` only.

Input: uint8 ``[N, 3, H, W]`` tensors. Output: CPU float32 features per layer.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from degan_bench.metrics.weights import ResolvedWeights
from degan_bench.paths import weights_dir

TORCH_FIDELITY = "torch-fidelity/inception-v3-compat"
CLEAN_FID = "clean-fid/InceptionV3W"
CLEAN_INPUT_SIZE = 299  # cleanfid.resize.build_resizer("clean") resizes to 299x299


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"torch": torch.__version__}
    for package in ("torch-fidelity", "clean-fid"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found


class FeatureModel:
    """One loaded Inception on one device: ``model(uint8 NCHW) -> {layer: float32 [N, D] on CPU}``."""

    def __init__(self, extractor: str, layers: Sequence[str], weights: ResolvedWeights, device: torch.device):
        self.extractor = extractor
        self.layers = tuple(layers)
        self.weights = weights
        self.device = device
        if extractor == TORCH_FIDELITY:
            self._net = FeatureExtractorInceptionV3(
                "inception-v3-compat", list(self.layers), feature_extractor_weights_path=str(weights.path)
            ).to(device)
        elif extractor == CLEAN_FID:
            if self.layers != ("2048",):
                raise ValueError(
                    f"clean-fid's Inception gives the 2048 pool features only, not {self.layers}"
                )
            from cleanfid.inception_torchscript import InceptionV3W
            from cleanfid.resize import build_resizer

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
                self._net = InceptionV3W(str(_clean_fid_folder(weights)), download=False, resize_inside=False)
            self._net = self._net.to(device).eval()
            self._resize = build_resizer("clean")
            self._pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))  # PIL releases the GIL
        else:
            raise ValueError(f"unknown feature extractor {extractor!r}")

    def close(self) -> None:
        """Release the resize threads (clean-fid path); the model itself is freed with the object."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    @property
    def input_size(self) -> int:
        """The square size images are resized to before the network (299 for the standard protocols)."""
        if self.extractor == TORCH_FIDELITY:
            return int(FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE)
        return CLEAN_INPUT_SIZE

    def describe(self) -> dict[str, object]:
        """What determines a layer's features (the reference-statistics cache key includes all of it)."""
        versions = library_versions()
        return {
            "feature_extractor": self.extractor,
            "weights_sha256": self.weights.sha256,
            "input_size": self.input_size,
            "implementation_version": versions[
                "torch-fidelity" if self.extractor == TORCH_FIDELITY else "clean-fid"
            ],
        }

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 [N, 3, H, W] images, got {images.dtype} {tuple(images.shape)}")
        if self.extractor == TORCH_FIDELITY:
            outputs = self._net(images.to(self.device))
            return {name: out.float().cpu() for name, out in zip(self.layers, outputs, strict=True)}
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        resized = np.stack(list(self._pool.map(self._resize, hwc)))  # float32 [N, 299, 299, 3], unquantized
        batch = torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous().to(self.device)
        return {"2048": self._net(batch).float().cpu()}


def _clean_fid_folder(weights: ResolvedWeights) -> Path:
    """A folder holding the verified file under the name clean-fid's ``InceptionV3W`` loads."""
    name = weights.spec.file_name
    if weights.path.name == name:
        return weights.path.parent
    folder = weights_dir() / "by-sha256" / weights.sha256
    target = folder / name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(weights.path.resolve())
        except OSError:  # no symlinks (some filesystems): copy instead
            from degan_bench.core.fileio import atomic_write_bytes

            atomic_write_bytes(target, weights.path.read_bytes())
    return folder


_MODELS: dict[tuple[str, ...], FeatureModel] = {}


def feature_model(
    extractor: str, layers: Sequence[str], weights: ResolvedWeights, device: torch.device
) -> FeatureModel:
    """A loaded :class:`FeatureModel`, reused across evaluations in this process (training evaluates
    every few kimg; loading 95 MB each time would dominate small evaluations)."""
    key = (extractor, *sorted(layers), str(weights.path), weights.sha256, str(device))
    if key not in _MODELS:
        if len(_MODELS) >= 2:
            _MODELS.pop(next(iter(_MODELS))).close()
        _MODELS[key] = FeatureModel(extractor, sorted(layers), weights, device)
    return _MODELS[key]
