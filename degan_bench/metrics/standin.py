"""Deterministic stand-in Inception weights, for tests and offline smoke runs.

Same architecture and file format as the standard files, seeded random weights: the code paths that
load and run the real weights are exercised without a download. A stand-in is never standard: its
sha256 differs, so it loads only when declared (``--weights-sha256``), and every number made with it
is recorded as ``standard_weights: false``.

Convolutions get Kaiming-normal weights (ReLU gain) so activations keep their scale through the 90
layers; batch-norm layers keep identity statistics. The clean-fid file is a TorchScript module whose
``layers`` run the same network (same seed), as NVIDIA's ``inception-2015-12-05.pt`` does.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from degan_bench.core.fileio import atomic_write_bytes
from degan_bench.metrics.weights import WEIGHTS, file_sha256

# FeatureExtractorInceptionV3's children from the stem to the global pool, in forward order.
_TRUNK = (
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


class _Unloaded(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception with its freshly initialised weights kept (nothing loaded)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[no-untyped-def]
        return None


def standin_network(seed: int = 0) -> FeatureExtractorInceptionV3:
    """torch-fidelity's Inception-v3 with seeded random weights (the global RNG is left untouched)."""
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng(devices=[]):
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        torch.manual_seed(seed)
        net = _Unloaded("standin", ["2048"], feature_extractor_weights_path=str(empty))
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        # Large logits, so the Inception Score of a stand-in is visibly above 1 (a useful test value).
        nn.init.normal_(net.fc.weight, std=3.0)
        nn.init.zeros_(net.fc.bias)
    return net


class _CleanFidStandin(nn.Module):
    """The shape of NVIDIA's TorchScript Inception as clean-fid uses it: ``.layers(x) -> [N, 2048, 1, 1]``."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def write_standin_weights(key: str, path: Path | str, seed: int = 0) -> str:
    """Write the stand-in for weights ``key`` (see ``weights.WEIGHTS``) to ``path``; return its sha256."""
    path = Path(path)
    net = standin_network(seed)
    loader = WEIGHTS[key].loader
    buffer = io.BytesIO()
    if loader == "torch-fidelity/inception-v3-compat":
        torch.save(net.state_dict(), buffer)
    elif loader == "clean-fid/InceptionV3W":
        trunk = nn.Sequential(*(getattr(net, name) for name in _TRUNK)).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, clean-fid needs it
            # Traced at the smallest input Inception accepts; every op is size-generic.
            traced = torch.jit.trace(trunk, torch.zeros(1, 3, 75, 75), check_trace=False)
            torch.jit.save(torch.jit.script(_CleanFidStandin(traced)), buffer)
    else:
        raise ValueError(f"no stand-in for weights loader {loader!r}")
    atomic_write_bytes(path, buffer.getvalue())
    return file_sha256(path)
