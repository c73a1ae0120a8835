"""FakeCLR (Li, Wang, Zheng, Zhang, Li, ECCV 2022): contrastive learning on perturbed fakes only.

Built on InsGen (iceli1007/FakeCLR @ d8f0735 is a fork of it) without the real-instance head
(``train.py:377``). The fake head (MoCo pieces in :mod:`degan_bench.methods.contrastive`):

- Noise-related Latent Augmentation (``contrastive_loss.py:163-169``): the positive of ``G(z)`` is
  ``G(z + delta)``, ``delta = eps * noise_scale * clamp(|z|, 0, noise_clamp)``, ``eps ~ N(0, I)``: the
  per-dimension std grows with ``|z_i|`` (0.1 * |z_i|, at most 0.3).
- D step: ``fake_weight * CL(D(A(G(z))), D_ema(A(G(z + delta))))``; the momentum keys of the perturbed
  view are queued, tagged with the minibatch index (the official ``label_idx = batch_idx``,
  ``training_loop.py:326-330``).
- G step (``contrastive_loss.py:93-99``, on by default):
  ``fake_weight_on_g * CL(D(A(G(z))), D_ema(A(G(z))))``, head frozen, nothing queued.

``variant`` selects how the queue is used:

- ``released`` (the default, what produced the README numbers): what the released code computes. Its
  forgetting expression normalises and soft-maxes the iteration labels along a dimension of size 1
  (``contrastive_head_iteration.py:175-182``), which gives exactly 1: every negative's similarity gets
  +1. Where every stored label is 0 (minibatch 1 whenever the queue is no larger than one batch) the
  official expression is NaN; we repair it with the constant 1 it gives everywhere else. The queue is the
  whole fixed-size buffer.
- ``paper_reading`` (opt-in): *our reading* of the paper's two queue techniques, which are not in the
  released code (the paper's equations were not available to us; see the recipes' notes). *Diversity-
  aware Queue*: the loss contrasts with the ``round(d * capacity)`` newest keys (at least
  ``min_queue_size``), where ``d`` in [0, 1] is an EMA of the diversity of the queued fake keys, ``1 -
  mean pairwise cosine similarity`` of each pushed batch. *Forgetting Factor of Queue*: a negative
  queued ``a`` minibatches ago adds ``forgetting_factor ** a`` to its similarity before the temperature,
  so old negatives weigh less than new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from degan_bench.methods import register_method
from degan_bench.methods.base import DStep, MethodContext
from degan_bench.methods.contrastive import ContrastiveConfig, ContrastiveMethod
from degan_bench.schema import param


def latent_perturbation(
    z: torch.Tensor, scale: float = 0.1, clamp: float = 3.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """FakeCLR's noise: ``eps * scale * clamp(|z|, 0, clamp)``, eps ~ N(0, I), per latent dimension."""
    eps = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
    return eps * (scale * z.abs().clamp(0, clamp))


def batch_diversity(keys: torch.Tensor) -> torch.Tensor:
    """``1 - mean pairwise cosine similarity`` of L2-normalised keys [N, C], clamped to [0, 1]
    (0: all identical; about 1: unrelated directions)."""
    n = keys.shape[0]
    total = keys.sum(dim=0)
    off_diagonal = total.dot(total) - keys.square().sum()
    return (1 - off_diagonal / (n * (n - 1))).clamp(0.0, 1.0)


def forgetting_bias(steps: torch.Tensor, minibatch: int, factor: float) -> torch.Tensor:
    """``factor ** age`` per queue entry, ``age`` = minibatches since the entry was queued."""
    age = (minibatch - steps).clamp_min(0).to(torch.float32)
    return torch.pow(torch.as_tensor(factor, dtype=torch.float32, device=steps.device), age)


@dataclass
class FakeCLRConfig(ContrastiveConfig):
    variant: Literal["released", "paper_reading"] = param(
        "released",
        help="'released': what iceli1007/FakeCLR computes (fixed queue, +1 on every negative similarity; "
        "the code behind the reported numbers); 'paper_reading': our reading of the paper's "
        "Diversity-aware Queue and age-based Forgetting Factor",
    )
    queue_size: int | None = param(
        None, help="queue capacity (official --fqs); null = int(0.05 * N), doubled with mirror", min=1
    )
    noise_scale: float = param(0.1, help="latent noise std per unit of |z_i| (official 0.1)", min=0.0)
    noise_clamp: float = param(3.0, help="|z_i| is clamped to this before scaling (official 3)", min=0.0)
    forgetting_factor: float = param(
        0.99,
        help="paper: a negative queued a minibatches ago adds factor**a to its similarity",
        min=0.0,
        max=1.0,
    )
    diversity_ema: float = param(
        0.99, help="paper: EMA decay of the fake-key diversity that sizes the queue", min=0.0, max=1.0
    )
    min_queue_size: int = param(1, help="paper: the diversity-aware queue never uses fewer keys", min=1)

    def check(self) -> None:
        if self.queue_size is not None and self.min_queue_size > self.queue_size:
            raise ValueError(f"min_queue_size {self.min_queue_size} exceeds queue_size {self.queue_size}")


@register_method
class FakeCLRMethod(ContrastiveMethod):
    name = "fakeclr"
    Config = FakeCLRConfig
    summary = (
        "FakeCLR: contrastive learning on perturbed fakes, diversity-aware forgetting queue (Li et al. 2022)"
    )

    def __init__(self, config: FakeCLRConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        capacity = self.queue_size(config.queue_size, "queue_size")
        self.add_head("fake", capacity, trains_with="G")
        self.min_queue_size = min(config.min_queue_size, capacity)
        self.diversity: torch.Tensor | None = None  # EMA of batch_diversity; None before the first push

    # -- the queue techniques ----------------------------------------------------------------------
    def active_size(self) -> torch.Tensor | int:
        capacity = self.queues["fake"].capacity
        if self.config.variant == "released" or self.diversity is None:
            return capacity
        return (self.diversity * capacity).round().clamp(self.min_queue_size, capacity)

    def negatives(self, head_name: str, minibatch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        queue = self.queues[head_name]
        if self.config.variant == "released":
            return queue.keys, torch.ones(queue.capacity, device=queue.keys.device)
        bias = forgetting_bias(queue.steps, minibatch, self.config.forgetting_factor)
        # Entries beyond the diversity-aware size are left out (no host synchronisation needed).
        active = queue.recency() < self.active_size()
        return queue.keys, torch.where(active, bias, torch.full_like(bias, float("-inf")))

    def observe_queued(self, head_name: str, keys: torch.Tensor) -> None:
        if self.config.variant == "paper_reading" and keys.shape[0] > 1:
            measured = batch_diversity(keys.float())
            decay = self.config.diversity_ema
            self.diversity = measured if self.diversity is None else measured.lerp(self.diversity, decay)

    # -- loss terms --------------------------------------------------------------------------------
    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        super().d_loss_terms(step)
        if self.config.fake_weight == 0:
            return {}
        assert step.z is not None
        delta = latent_perturbation(step.z, self.config.noise_scale, self.config.noise_clamp)
        return {"fake_cl": self.config.fake_weight * self.fake_instance_loss(step, delta, enqueue="keys")}

    # -- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["diversity"] = None if self.diversity is None else self.diversity.detach().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        diversity = state["diversity"]
        self.diversity = None if diversity is None else diversity.to(self.ctx.device)

    def tick_stats(self) -> dict[str, float]:
        stats = super().tick_stats()
        if self.config.variant == "paper_reading" and self.diversity is not None:
            stats["fake_diversity"] = float(self.diversity)
            stats["queue_active"] = float(self.active_size())
        return stats
