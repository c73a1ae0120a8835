"""Helpers for the metrics tests: stand-in weights, a fake data API and a tiny generator.

The data package (``degan_bench.data.registry`` / ``degan_bench.data.prepare``) is replaced by an
in-memory fake with the same function signatures, so these tests exercise the metrics code's one
coupling function (``degan_bench.metrics.reference.load_reference``) and nothing else of it.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from degan_bench.data.store import PreparedDataset
from degan_bench.metrics.standin import write_standin_weights
from degan_bench.metrics.weights import WEIGHTS

TF_KEY = "torch-fidelity-inception-2015-12-05"
CLEAN_KEY = "clean-fid-inception-2015-12-05"


@dataclass(frozen=True)
class StandinWeights:
    folder: Path  # holds both files under their standard names
    tf_path: Path
    clean_path: Path
    tf_sha256: str
    clean_sha256: str

    @property
    def declared(self) -> str:
        return f"{self.tf_sha256},{self.clean_sha256}"


def make_standins(folder: Path) -> StandinWeights:
    tf_path = folder / WEIGHTS[TF_KEY].file_name
    clean_path = folder / WEIGHTS[CLEAN_KEY].file_name
    return StandinWeights(
        folder,
        tf_path,
        clean_path,
        write_standin_weights(TF_KEY, tf_path),
        write_standin_weights(CLEAN_KEY, clean_path),
    )


_STANDINS: list[StandinWeights] = []


@pytest.fixture
def standins(tmp_path_factory: pytest.TempPathFactory) -> StandinWeights:
    """Both stand-in files, written once per test session (about 3 s)."""
    if not _STANDINS:
        _STANDINS.append(make_standins(tmp_path_factory.mktemp("standin-weights")))
    return _STANDINS[0]


@pytest.fixture
def declared_standins(monkeypatch: pytest.MonkeyPatch, standins: StandinWeights) -> StandinWeights:
    """The stand-ins as $DEGAN_BENCH_INCEPTION_WEIGHTS, declared non-standard by their hashes."""
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_WEIGHTS", str(standins.folder))
    monkeypatch.setenv("DEGAN_BENCH_INCEPTION_SHA256", standins.declared)
    return standins


@pytest.fixture
def small_inception(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run torch-fidelity's Inception at 75 px (its smallest input) instead of 299: same code, ~16x faster."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)


@pytest.fixture
def single_thread_torch() -> Iterator[None]:
    """One intra-op thread while a metrics test runs: batches of a few images gain nothing from two,
    and OpenMP's spin-waiting makes a shared, oversubscribed runner several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 [n, size, size, 3] images with low-frequency structure (upsampled 4x4 noise)."""
    rng = np.random.RandomState(seed)
    coarse = torch.from_numpy(rng.rand(n, 3, 4, 4).astype(np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.rand(n, 3, size, size).astype(np.float32)) * 0.1
    return ((fine * 0.9 + noise) * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_pngs(images: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


@dataclass
class FakeData:
    """In-memory stand-in for the data package: ``splits[(name, split)] = images``."""

    splits: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    labels: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    bases: dict[str, str] = field(default_factory=dict)  # subset view -> base dataset
    subset_sizes: dict[str, int] = field(default_factory=dict)
    loads: list[tuple[str, int, str, str | None]] = field(default_factory=list)

    def get_dataset_spec(self, name: str) -> types.SimpleNamespace:
        base = self.bases.get(name, name)
        splits = tuple(split for (ds, split) in self.splits if ds == base)
        return types.SimpleNamespace(
            name=name,
            base=base,
            splits=splits,
            subset_size=self.subset_sizes.get(name),
            default_subset_rule="first_n" if name in self.bases else None,
        )

    def load_prepared(
        self, name: str, resolution: int, split: str = "train", subset_rule: str | None = None
    ) -> PreparedDataset:
        self.loads.append((name, resolution, split, subset_rule))
        base = self.bases.get(name, name)
        images = self.splits[(base, split)]
        labels = self.labels.get((base, split))
        if name in self.bases:  # a subset view: the first N images
            images = images[: self.subset_sizes[name]]
            labels = None if labels is None else labels[: self.subset_sizes[name]]
        assert images.shape[1] == resolution, f"fake {name} is {images.shape[1]}px, asked {resolution}"
        return PreparedDataset(name=name, split=split, images=images, labels=labels)


def install_fake_data(monkeypatch: pytest.MonkeyPatch, fake: FakeData) -> FakeData:
    registry = types.ModuleType("degan_bench.data.registry")
    registry.get_dataset_spec = fake.get_dataset_spec
    prepare = types.ModuleType("degan_bench.data.prepare")
    prepare.load_prepared = fake.load_prepared
    monkeypatch.setitem(sys.modules, "degan_bench.data.registry", registry)
    monkeypatch.setitem(sys.modules, "degan_bench.data.prepare", prepare)
    return fake


class TinyGenerator(nn.Module):
    """Follows the model contract: ``G(z, c, truncation_psi=..., noise_mode=...)`` in [-1, 1]."""

    def __init__(
        self, z_dim: int = 8, c_dim: int = 0, size: int = 16, seed: int = 0, noise: float = 0.05
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.size, self.noise = z_dim, c_dim, size, noise
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.to_image = nn.Linear(z_dim + c_dim, 3 * 4 * 4)
        self.calls: list[tuple[float, str, bool]] = []  # (truncation_psi, noise_mode, training)
        self.labels_seen: list[torch.Tensor] = []

    def forward(
        self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "random"
    ) -> torch.Tensor:
        self.calls.append((truncation_psi, noise_mode, self.training))
        self.labels_seen.append(c)
        coarse = self.to_image(torch.cat([z, c], dim=1)).view(-1, 3, 4, 4)
        image = nn.functional.interpolate(
            coarse, size=(self.size, self.size), mode="bilinear", align_corners=False
        )
        if noise_mode == "random" and self.noise:
            image = image + self.noise * torch.randn_like(image)
        return torch.tanh(image)
