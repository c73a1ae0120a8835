"""Exponential moving average of G's weights (G_ema), by half-life in images.

``beta = 0.5 ** (batch / half_life_images)``, so the average forgets half of its past every
``ema_kimg`` thousand images whatever the batch size. Two schedules from the official code bases:

- stylegan2-ada ramp-up: ``half_life_images = min(ema_kimg * 1000, cur_nimg * ema_rampup)``;
- DiffAugment TF: G_ema just copies G (beta = 0) until ``ema_start_kimg``.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(
    *, batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None, ema_start_kimg: float
) -> float:
    if ema_kimg <= 0 or cur_nimg < ema_start_kimg * 1000:
        return 0.0
    half_life = ema_kimg * 1000.0
    if ema_rampup is not None:
        half_life = min(half_life, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(half_life, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """Parameters are averaged; buffers (e.g. the tracked mean w, noise constants) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


def fixed_decay(step: int, decay: float, start_step: int, itr_base: int = 0) -> float:
    """BigGAN's ``utils.ema.update(itr)`` for G step ``step`` (counted from 1): ``decay``, or 0 (G_ema
    copies G) when ``itr and itr < start_step`` with ``itr = step - 1 + itr_base``. ``itr_base`` 0 is the
    DiffAugment / DigGAN forks and StudioGAN (the counter increments after the step: step 1 is averaged,
    steps 2..start_step copy); 1 is upstream BigGAN-PyTorch (it increments before: steps 1..start_step - 1
    copy). Averaging continues without a break from then on in both."""
    itr = step - 1 + itr_base
    return 0.0 if itr and itr < start_step else decay


@torch.no_grad()
def update_ema_state(G_ema: nn.Module, G: nn.Module, decay: float) -> None:
    """Average every floating entry of the state dict, buffers included (spectral-norm vectors, batch-norm
    running statistics), as BigGAN-PyTorch's ema does: ``target * decay + source * (1 - decay)``."""
    target, source = G_ema.state_dict(), G.state_dict()
    for key, value in source.items():
        if value.is_floating_point():
            target[key].copy_(target[key] * decay + value.detach() * (1 - decay))
        else:
            target[key].copy_(value)
