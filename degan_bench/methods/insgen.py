"""InsGen (Yang, Shen, Xu, Zhou, NeurIPS 2021): StyleGAN2-ADA whose D also discriminates instances.

As genforce/insgen @ 52bda7c ``training/contrastive_loss.py`` computes it, on D's pooled 4x4 features
(MoCo pieces in :mod:`degan_bench.methods.contrastive`):

- D step, added to the real-logit loss (l.147-166):
  ``real_weight * CL_real(D(A(x)), D_ema(A(x)))``: two ADA views of each real; the momentum keys of the
  D_ema view are queued;
  ``fake_weight * CL_fake(D(A(G(z))), D_ema(A(G(z + delta))))`` with ``delta ~ N(0, 0.15^2)`` per latent
  dimension; ``G(z + delta)`` is made without gradient by the official ``run_G`` (its own style-mixing
  draw, w_avg updated). The fake queue receives the *momentum* projection of the online D features of
  the unperturbed view (``update_q=True``, ``contrastive_head.py:175-181``).
- G step (l.92-98): ``fake_weight_on_g * CL_fake(D(A(G(z))), D_ema(A(G(z))))``, two ADA views of the
  G-step fakes, heads frozen, nothing queued; it pushes fakes away from the queued fakes (diversity).

Queues hold ``int(0.05 * N)`` keys, doubled with x-flips (``train.py:380-385``), unless overridden
(``--rqs``/``--fqs``). The real head's Adam follows D's settings, the fake head's G's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from degan_bench.methods import register_method
from degan_bench.methods.base import DStep, MethodContext
from degan_bench.methods.contrastive import ContrastiveConfig, ContrastiveMethod
from degan_bench.schema import param


@dataclass
class InsGenConfig(ContrastiveConfig):
    real_weight: float = param(
        1.0, help="weight of the real-instance term (official lw_real_cl 1.0)", min=0.0
    )
    real_queue_size: int | None = param(
        None, help="real queue size (official --rqs); null = int(0.05 * N), doubled with mirror", min=1
    )
    fake_queue_size: int | None = param(
        None, help="fake queue size (official --fqs); null = int(0.05 * N), doubled with mirror", min=1
    )
    latent_noise_std: float = param(
        0.15, help="std of the latent perturbation delta of the fake positive pair (official 0.15)", min=0.0
    )


@register_method
class InsGenMethod(ContrastiveMethod):
    name = "insgen"
    Config = InsGenConfig
    summary = (
        "InsGen: real and fake instance discrimination with MoCo heads on StyleGAN2-ADA (Yang et al. 2021)"
    )

    def __init__(self, config: InsGenConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.add_head("real", self.queue_size(config.real_queue_size, "real_queue_size"), trains_with="D")
        self.add_head("fake", self.queue_size(config.fake_queue_size, "fake_queue_size"), trains_with="G")

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        super().d_loss_terms(step)
        terms: dict[str, torch.Tensor] = {}
        if self.config.real_weight > 0:
            reals = step.reals.detach()
            query = self.query_features(step.D, reals, step.real_c, step.real_features)
            minibatch = self.minibatch_index(step.cur_nimg)
            loss = self.contrastive_loss("real", query, reals, step.real_c, minibatch, enqueue="keys")
            terms["real_cl"] = self.config.real_weight * loss
        if self.config.fake_weight > 0:
            assert step.z is not None
            delta = torch.randn_like(step.z) * self.config.latent_noise_std
            loss = self.fake_instance_loss(step, delta, enqueue="queries")
            terms["fake_cl"] = self.config.fake_weight * loss
        return terms
