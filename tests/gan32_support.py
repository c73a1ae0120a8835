"""Contract checks shared by the 32 px CIFAR model families (BigGAN, SNGAN)."""

from __future__ import annotations

import copy

import torch
from tiny import assert_same
from torch import nn

from degan_bench.models.spectral_norm import sn_modules


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def assert_stem_body_is_forward(G: nn.Module, z: torch.Tensor, c: torch.Tensor | None) -> None:
    """``G(z, c) == G.body(*G.stem(z, c))`` bit-exactly, in eval mode and (same state) in train mode."""
    G.eval()
    assert torch.equal(G(z, c), G.body(*G.stem(z, c)))
    G.train()
    state = copy.deepcopy(G.state_dict())
    full = G(z, c)
    G.load_state_dict(state)
    assert torch.equal(full, G.body(*G.stem(z, c)))


def assert_trunk_head_is_forward(D: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> None:
    for training in (False, True):
        D.train(training)
        state = copy.deepcopy(D.state_dict())
        logits, features = D(x, c, return_features=True)
        D.load_state_dict(state)
        trunk = D.trunk(x)
        assert torch.equal(features, trunk)
        assert torch.equal(logits, D.head(trunk, c))
        assert logits.shape == (len(x), 1) and features.shape == (len(x), D.feature_dim)


def assert_sn_normalizes(net: nn.Module, iterations: int = 100) -> None:
    """After enough training-mode power iterations, every SN weight has largest singular value ~1.

    The power-iteration estimate approaches sigma_max from below, so W / sigma_est tends to 1 from above.
    """
    modules = sn_modules(net)
    assert modules
    net.train()
    with torch.no_grad():
        for m in modules:
            for _ in range(iterations):
                w = m.sn_weight()
            top = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1).double(), ord=2).item()
            assert 1 - 1e-5 < top < 1.01, (m, top)


def assert_state_restores_exactly(build: object, inputs: tuple[torch.Tensor | None, ...]) -> None:
    """SN ``u``/``v`` and BN statistics are buffers: a fresh net loading the state dict after some training
    forwards continues bit-identically, in train mode (buffers update again) and in eval mode."""
    torch.manual_seed(1)
    net = build()  # type: ignore[operator]
    net.train()
    before = copy.deepcopy(net.state_dict())
    for _ in range(2):
        net(*inputs)
    sn = sn_modules(net)
    # (a 1-row weight's u is +-1 whatever the iteration does)
    moved = [
        not torch.equal(before[k], v)
        for k, v in net.state_dict().items()
        if k.endswith(".u") and v.numel() > 1
    ]
    assert sn and moved and all(moved)
    keys = set(net.state_dict())
    for name, m in net.named_modules():
        if m in sn:
            assert {f"{name}.u", f"{name}.v"} <= keys
    state = copy.deepcopy(net.state_dict())
    torch.manual_seed(2)
    other = build()  # type: ignore[operator]
    other.load_state_dict(state)
    for training in (True, False):
        net.train(training)
        other.train(training)
        assert torch.equal(net(*inputs), other(*inputs))
    assert_same(net.state_dict(), other.state_dict())


def assert_deterministic_under_seed(build: object) -> None:
    torch.manual_seed(7)
    a = build()  # type: ignore[operator]
    torch.manual_seed(7)
    b = build()  # type: ignore[operator]
    torch.manual_seed(8)
    c = build()  # type: ignore[operator]
    assert_same(a.state_dict(), b.state_dict())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
