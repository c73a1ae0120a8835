"""Unstructured global magnitude pruning of conv kernels, with masks kept outside the modules.

The masks are boolean tensors keyed by parameter name; the networks keep plain ``weight`` parameters
(no ``torch.nn.utils.prune`` re-parametrization), so state dicts, G_ema copies and checkpoints look
the same with and without a ticket. The weights are masked in place (:func:`apply_masks`) wherever
they may have moved.

Which tensors are pruned: every 4-D parameter whose name ends in ``weight``, i.e. the kernels of
``nn.Conv2d`` / ``nn.ConvTranspose2d`` (BigGAN, SNGAN, including the 1x1 attention convs) and of
StyleGAN2's modulated convs. Linear, embedding, batch-norm and bias parameters are never pruned: the
official code selects modules by ``isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))``.

Two rules for "prune ``amount`` of the remaining weights with the smallest |w| across all layers":

- ``torch_l1``: ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount)`` as
  ``SNGAN/utils/utils.py`` calls it: exactly ``round(amount * remaining)`` of the still-unmasked
  entries (Python rounding, as torch's ``_compute_nparams_toprune``). Ties are broken by position
  (a stable sort); torch's ``topk`` leaves them unspecified.
- ``studiogan_threshold``: ``BigGAN and DiffAugGAN/utils/prune.py`` ``pruning_generate_sn``: sort all
  |w| (pruned ones are exactly zero), take ``threshold = sorted[zeros + int(nonzero * amount)]`` and
  keep ``|w| > threshold``. That prunes ``int(nonzero * amount) + 1`` weights when magnitudes are
  distinct (every tie with the threshold goes too), and also any unmasked weight that is exactly zero.

Two more for the lottery paper's ablations (Figure 7, Table A9):

- ``torch_l1_of_total``: as ``torch_l1``, but ``amount`` is a fraction of *all* prunable entries, so every
  IMP round removes the same number of weights: ``round(amount * total)`` (Table A9: "each time we remove
  5 % of the total weights with the smallest magnitudes", sparsities 5 %, 10 %, ..., 50 %).
- ``random``: ``round(amount * remaining)`` of the still-unmasked entries chosen uniformly at random, as
  ``SNGAN/utils/utils.py pruning_generate(..., method="random")`` does with
  ``prune.global_unstructured(..., RandomUnstructured, amount)`` in ``train_random_less_oneshot.py`` (the
  paper's random-pruning baseline: one-shot from the dense network to the target sparsity). The official
  code draws from torch's global RNG; here the draw comes from a generator seeded with the sha256 of the
  trained magnitudes, so the mask is reproducible and differs between training seeds.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import torch
from torch import nn

PruneRule = Literal["torch_l1", "studiogan_threshold", "torch_l1_of_total", "random"]
Masks = dict[str, torch.Tensor]


def conv_weights(module: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable kernels of ``module`` by parameter name, in registration order."""
    return {name: p for name, p in module.named_parameters() if name.endswith("weight") and p.ndim == 4}


def full_masks(weights: dict[str, torch.Tensor]) -> Masks:
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def count(masks: Masks) -> tuple[int, int]:
    """(remaining, total) entries."""
    remaining = sum(int(m.sum()) for m in masks.values())
    return remaining, sum(m.numel() for m in masks.values())


def remaining_fraction(masks: Masks) -> float:
    remaining, total = count(masks)
    return remaining / max(total, 1)


def prune_global(
    weights: dict[str, torch.Tensor], masks: Masks, amount: float, rule: PruneRule = "torch_l1"
) -> Masks:
    """New masks: ``masks`` with ``amount`` of the remaining entries of smallest |w| removed, ranked
    globally over all tensors. ``weights`` are the trained weights (masked entries are ignored)."""
    if not 0.0 < amount < 1.0:
        raise ValueError(f"pruning amount must lie in (0, 1), got {amount}")
    if set(weights) != set(masks):
        raise ValueError(f"weights and masks name different tensors: {sorted(set(weights) ^ set(masks))}")
    names = list(masks)
    for name in names:
        if weights[name].shape != masks[name].shape:
            raise ValueError(
                f"{name}: weight {tuple(weights[name].shape)} vs mask {tuple(masks[name].shape)}"
            )
    magnitude = torch.cat([(weights[n].detach().float().abs() * masks[n]).flatten().cpu() for n in names])
    keep = torch.cat([masks[n].flatten().cpu() for n in names])
    if rule in ("torch_l1", "torch_l1_of_total"):
        alive = keep.nonzero().flatten()
        # torch.nn.utils.prune._compute_nparams_toprune: a fraction of what it is given
        k = round(amount * (len(alive) if rule == "torch_l1" else keep.numel()))
        if k > len(alive):
            raise ValueError(f"{rule}: cannot prune {k} weights, only {len(alive)} remain")
        order = torch.sort(magnitude[alive], stable=True).indices
        new = keep.clone()
        new[alive[order[:k]]] = False
    elif rule == "random":
        alive = keep.nonzero().flatten()
        k = round(amount * len(alive))
        seed = int.from_bytes(hashlib.sha256(magnitude.numpy().tobytes()).digest()[:8], "little")
        chosen = torch.randperm(len(alive), generator=torch.Generator().manual_seed(seed))[:k]
        new = keep.clone()
        new[alive[chosen]] = False
    elif rule == "studiogan_threshold":
        total = magnitude.numel()
        nonzero = int((magnitude > 0).sum())
        index = total - nonzero + int(nonzero * amount)
        if index >= total:
            raise ValueError("studiogan_threshold: nothing left to prune (every weight is zero)")
        threshold = torch.sort(magnitude).values[index]
        new = magnitude > threshold
    else:
        raise ValueError(
            f"unknown pruning rule {rule!r}; "
            "choose torch_l1, studiogan_threshold, torch_l1_of_total or random"
        )
    out: Masks = {}
    offset = 0
    for name in names:
        size = masks[name].numel()
        out[name] = new[offset : offset + size].view_as(masks[name]).to(masks[name].device)
        offset += size
    return out


@torch.no_grad()
def apply_masks(module: nn.Module, masks: Masks) -> None:
    """Zero the pruned entries of ``module``'s kernels in place."""
    if not masks:
        return
    params = dict(module.named_parameters())
    for name, mask in masks.items():
        params[name].masked_fill_(~mask, 0.0)
