"""Deterministic stand-in Inception weights, for tests and offline smoke runs.

Same architecture and file format as the standard torch-fidelity file, seeded random weights: the code
paths that load and run the real weights are exercised without a download. A stand-in is never
standard: its sha256 differs, so it loads only when declared (``--weights-sha256``), and every number
made with it is recorded as ``standard_weights: false``.

Convolutions get Kaiming-normal weights (ReLU gain) so activations keep their scale through the 90
layers; batch-norm layers keep identity statistics. A declared file is only ever a state dict (see
:mod:`degan_bench.metrics.features`), so the stand-in of both weights keys is the state dict of that
network. :func:`write_standin_torchscript` writes the same network in the shape of NVIDIA's TorchScript
``inception-2015-12-05.pt`` (``layers`` -> ``[N, 2048, 1, 1]``), for tests that run clean-fid's own
wrapper or the sha256-verified TorchScript route.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from degan_bench.core.fileio import atomic_write_bytes
from degan_bench.metrics.features import INCEPTION_TRUNK
from degan_bench.metrics.weights import WEIGHTS, file_sha256


class _Unloaded(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception with its freshly initialised weights kept (nothing loaded)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[no-untyped-def]
        return None


def standin_network(seed: int = 0) -> FeatureExtractorInceptionV3:
    """torch-fidelity's Inception-v3 with seeded random weights (the global RNG is left untouched)."""
    empty = io.BytesIO()
    torch.save({}, empty)  # the constructor insists on loading something: an empty dict of our own
    empty.seek(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _Unloaded("standin", ["2048"], feature_extractor_weights_path=empty)
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
    """Write the stand-in for weights ``key`` (see ``weights.WEIGHTS``) to ``path``: the state dict of
    :func:`standin_network`. Returns its sha256."""
    if key not in WEIGHTS:
        raise ValueError(f"no stand-in for weights {key!r}")
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(standin_network(seed).state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return file_sha256(path)


def write_standin_torchscript(path: Path | str, seed: int = 0) -> str:
    """:func:`standin_network`'s trunk as a TorchScript file shaped like NVIDIA's (tests only: loading it
    runs TorchScript, which degan-bench does only for the sha256-verified standard file)."""
    path = Path(path)
    net = standin_network(seed)
    trunk = nn.Sequential(*(getattr(net, name) for name in INCEPTION_TRUNK)).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, clean-fid needs it
        # Traced at the smallest input Inception accepts; every op is size-generic.
        traced = torch.jit.trace(trunk, torch.zeros(1, 3, 75, 75), check_trace=False)
        torch.jit.save(torch.jit.script(_CleanFidStandin(traced)), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return file_sha256(path)
