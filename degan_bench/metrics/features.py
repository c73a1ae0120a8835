"""Inception features of uint8 images, through torch-fidelity or clean-fid (never a reimplementation).

- ``torch-fidelity/inception-v3-compat``: torch-fidelity's ``FeatureExtractorInceptionV3`` with the
  weights of the resolved file. It resizes inside with its TF1-compatible bilinear interpolation, as
  the TF Inception graph of DiffAugment and stylegan2-ada did, and gives ``2048`` (pool3) and
  ``logits_unbiased`` (IS) features.
- ``clean-fid/InceptionV3W``: clean-fid's anti-aliased PIL-bicubic resize to 299
  (``cleanfid.resize.build_resizer("clean")``) then clean-fid's wrapper of NVIDIA's TorchScript
  Inception, loaded from the resolved file without any download. Gives ``2048`` only.

No weights file ever runs code here. Both libraries' own loaders can: torch-fidelity unpickles its file
with ``torch.load(weights_only=False)``, and clean-fid runs ``torch.jit.load``, whose archive carries
TorchScript code. So:

- a torch-fidelity-layout file (the standard ``.pth``, and every declared non-standard file, for either
  extractor) is read with ``torch.load(weights_only=True)`` -- tensors and plain containers only, a
  pickle payload is refused with a one-line :class:`WeightsError` -- and handed to torch-fidelity's
  network as an in-memory state dict we serialised ourselves, never as a path;
- NVIDIA's TorchScript file goes to clean-fid's ``InceptionV3W`` only when its sha256 is the published
  one (``ResolvedWeights.standard``). A declared non-standard file for the clean-fid protocols must be
  a state dict of torch-fidelity's Inception-v3 (the same TF 2015-12-05 graph); it runs as torch-fidelity's
  trunk (``Conv2d_1a_3x3`` .. ``AvgPool``) behind clean-fid's resizer and clean-fid's own input scaling
  ``(x - 128) / 128``, exactly what ``InceptionV3W.forward`` does with ``resize_inside=False``.

Input: uint8 ``[N, 3, H, W]`` tensors. Output: CPU float32 features per layer.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from degan_bench.errors import WeightsError
from degan_bench.metrics.weights import ResolvedWeights
from degan_bench.paths import weights_dir

TORCH_FIDELITY = "torch-fidelity/inception-v3-compat"
CLEAN_FID = "clean-fid/InceptionV3W"
CLEAN_INPUT_SIZE = 299  # cleanfid.resize.build_resizer("clean") resizes to 299x299

# FeatureExtractorInceptionV3's children from the stem to the global pool, in forward order: the network
# NVIDIA's TorchScript file calls ``layers`` (both are the TF 2015-12-05 graph).
INCEPTION_TRUNK = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "MaxPool_1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "MaxPool_2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "AvgPool",
)
STATE_DICT_FIX = (
    "a non-standard weights file must be a plain state dict of torch-fidelity's Inception-v3 "
    "(torch.save(model.state_dict(), path)); use the standard file otherwise"
)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A weights file read with ``weights_only=True``: only tensors and plain containers are rebuilt, so
    a pickle that would run code is refused (one-line :class:`WeightsError`) instead of run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about TorchScript archives before refusing them
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(
            f"{path} holds pickled objects other than tensors (they could run code); it was not loaded",
            fix=STATE_DICT_FIX,
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as err:
        text = str(err).strip()
        if "TorchScript" in text:
            reason = "a TorchScript archive (it carries code)"
        else:
            reason = f"{type(err).__name__}: {text.splitlines()[0][:160] if text else 'unreadable'}"
        raise WeightsError(
            f"{path} is not a plain state-dict file ({reason}); it was not loaded", fix=STATE_DICT_FIX
        ) from None
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise WeightsError(
            f"{path} does not hold a mapping of parameter names to tensors", fix=STATE_DICT_FIX
        )
    return dict(state)


def _serialized(state_dict: Mapping[str, Any]) -> io.BytesIO:
    """``state_dict`` as an in-memory torch file. torch-fidelity unpickles what it is given with
    ``weights_only=False``; this stream holds only what we serialised (tensors, after a weights-only
    load), never the user's file."""
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    buffer.seek(0)
    return buffer


def inception_from_state_dict(
    state_dict: Mapping[str, Any], layers: Sequence[str], origin: Path | str = "weights"
) -> FeatureExtractorInceptionV3:
    """torch-fidelity's Inception-v3 with ``state_dict`` (strict: every parameter, nothing else)."""
    try:
        return FeatureExtractorInceptionV3(
            "inception-v3-compat", list(layers), feature_extractor_weights_path=_serialized(state_dict)
        )
    except RuntimeError as err:  # load_state_dict's missing/unexpected keys or shape mismatches
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3])[:200]
        raise WeightsError(
            f"{origin} is not torch-fidelity's Inception-v3 ({detail or type(err).__name__})",
            fix=STATE_DICT_FIX,
        ) from None


class InceptionTrunk(nn.Module):
    """Inception-v3's trunk as clean-fid's ``InceptionV3W`` runs it (``resize_inside=False``): inputs
    already resized to 299 in [0, 255], scaled by ``(x - 128) / 128``, pool3 features ``[N, 2048]``."""

    def __init__(self, network: FeatureExtractorInceptionV3) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(getattr(network, name) for name in INCEPTION_TRUNK))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - 128) / 128).view(x.shape[0], 2048)


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
            state = load_state_dict_file(weights.path)
            self._net = inception_from_state_dict(state, self.layers, weights.path).to(device)
        elif extractor == CLEAN_FID:
            if self.layers != ("2048",):
                raise ValueError(
                    f"clean-fid's Inception gives the 2048 pool features only, not {self.layers}"
                )
            from cleanfid.resize import build_resizer

            if weights.standard and weights.sha256 == weights.spec.sha256:
                # NVIDIA's published TorchScript file, verified by its sha256: clean-fid's own wrapper.
                from cleanfid.inception_torchscript import InceptionV3W

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
                    self._net = InceptionV3W(
                        str(_clean_fid_folder(weights)), download=False, resize_inside=False
                    )
            else:
                state = load_state_dict_file(weights.path)
                self._net = InceptionTrunk(inception_from_state_dict(state, ["2048"], weights.path))
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
