"""The StyleGAN2 objective (``loss.kind: ns_r1``): non-saturating logistic loss, R1 and path length.

:class:`StyleGAN2Objective` owns the schedule. Per global minibatch: the phases ``G`` [``Greg``] ``D``
[``Dreg``] (lazy regularization as in StyleGAN2: a regularizer with interval k > 1 runs every k
minibatches with its loss scaled by k, and the optimizer's lr and betas are rescaled by k/(k+1)), then
the G_ema update by half-life.

:class:`StyleGAN2Loss` computes one phase for one accumulation round, calls ``backward`` itself (with
the round's share ``gain`` of the minibatch, so accumulated gradients equal a full-batch mean), and
returns detached scalars for the statistics. The method's hooks are called at the documented points.

- ``G`` phase: ``softplus(-D(A(G(z))))`` + method G terms.
- ``Greg`` phase: path-length penalty ``(|J^T y| - a)^2`` with ``a`` a running mean (StyleGAN2 Eq. 4).
- ``D`` phase: ``softplus(D(A(G(z)))) + softplus(-D(A(x)))`` + method D terms (+ R1 when not lazy).
- ``Dreg`` phase: R1 ``gamma/2 * |grad D|^2`` w.r.t. the un-augmented reals (``r1_on: raw``; the
  gradient flows back through the augmentation, as in stylegan2-ada and DiffAugment's low-shot loss)
  or w.r.t. the augmented reals (``r1_on: augmented``; DiffAugment's CIFAR/FFHQ loss).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from degan_bench.errors import RecipeError
from degan_bench.methods.base import DStep, GStep, Method
from degan_bench.recipes.schema import LossConfig
from degan_bench.training.ema import ema_beta, update_ema
from degan_bench.training.objectives import register_objective
from degan_bench.training.objectives.base import (
    MinibatchInfo,
    Objective,
    ObjectiveContext,
    RealSource,
    dataset_label_sampler,
    lazy_ratio,
    make_optimizer,
)
from degan_bench.training.stats import StatsCollector


@dataclass
class PhaseResult:
    """Detached statistics of one round (0-d tensors, so the GPU is not synchronized per step), and the
    step the method's ``after_*`` hook receives."""

    stats: dict[str, torch.Tensor]
    step: GStep | DStep | None = None


@dataclass
class Networks:
    """The modules a phase may call. ``synthesis_fast``/``D_fast`` may be ``torch.compile`` d views of
    ``G.synthesis``/``D`` (same parameters); double-backward passes (R1, path length) use the eager ones."""

    G: nn.Module
    D: nn.Module
    synthesis_fast: nn.Module
    D_fast: nn.Module


class StyleGAN2Loss:
    def __init__(
        self,
        nets: Networks,
        method: Method,
        cfg: LossConfig,
        autocast: Any = contextlib.nullcontext,
        scale: Any = None,
        chunks: int = 1,
    ) -> None:
        self.nets = nets
        self.method = method
        self.cfg = cfg
        self.autocast = autocast  # context-manager factory: autocast for the forward passes, or nullcontext
        self.scale = scale or (lambda loss: loss)  # fp16: GradScaler.scale
        device = next(nets.G.parameters()).device
        # One running path-length mean per accumulation round of this process, as stylegan2-ada keeps one
        # per GPU: a round is one chunk of the global batch, so the means do not depend on the layout.
        self.pl_mean = torch.zeros([chunks], device=device)

    # -- helpers ---------------------------------------------------------------------------------
    def generate(
        self, z: torch.Tensor, c: torch.Tensor, *, fast: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G(z) with style mixing, updating G's tracked mean w (both official code bases do this in
        every training pass). Returns (images, ws)."""
        G = self.nets.G
        mapping = G.mapping
        ws = mapping(z, c, update_w_avg=True)
        num_ws = ws.shape[1]
        if self.cfg.style_mixing == "per_sample" and self.cfg.style_mixing_prob > 0 and num_ws > 1:
            # DiffAugment's TF G_main (networks_stylegan2.py:225-229): each sample mixes with probability
            # p at its own cutoff in [1, num_ws); the second latents are always drawn and mapped.
            ws2 = mapping(torch.randn_like(z), c, update_w_avg=False)
            n = ws.shape[0]
            mixes = torch.rand(n, device=ws.device) < self.cfg.style_mixing_prob
            cutoffs = torch.randint(1, num_ws, (n,), device=ws.device)
            cutoffs = torch.where(mixes, cutoffs, torch.full_like(cutoffs, num_ws))
            keep_first = torch.arange(num_ws, device=ws.device)[None, :, None] < cutoffs[:, None, None]
            ws = torch.where(keep_first, ws, ws2)
        elif self.cfg.style_mixing == "minibatch":
            # stylegan2-ada (loss.py style_mix): one decision and one cutoff for the whole round. Both
            # random numbers are drawn every time so the RNG stream does not depend on the outcome.
            cutoff = int(torch.randint(1, num_ws, [], device="cpu")) if num_ws > 1 else num_ws
            mix = float(torch.rand([])) < self.cfg.style_mixing_prob
            if mix and num_ws > 1:
                ws2 = mapping(torch.randn_like(z), c, update_w_avg=False)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        synthesis = self.nets.synthesis_fast if fast else G.synthesis
        return synthesis(ws), ws

    def run_D(self, images: torch.Tensor, c: torch.Tensor, *, fast: bool = True) -> tuple[torch.Tensor, Any]:
        D = self.nets.D_fast if fast else self.nets.D
        if self.method.needs_d_features:
            return D(images, c, return_features=True)
        return D(images, c), None

    # -- phases ----------------------------------------------------------------------------------
    def g_main(self, z: torch.Tensor, c: torch.Tensor, gain: float, cur_nimg: int) -> PhaseResult:
        with self.autocast():
            fakes, ws = self.generate(z, c)
            fakes_aug = self.method.augment(fakes)
            logits, features = self.run_D(fakes_aug, c)
            loss = F.softplus(-logits.float()).mean()
        step = GStep(
            z=z,
            c=c,
            fakes=fakes,
            fakes_aug=fakes_aug,
            fake_logits=logits,
            fake_features=features,
            G=self.nets.G,
            D=self.nets.D,
            cur_nimg=cur_nimg,
            ws=ws,
        )
        terms = self.method.g_loss_terms(step)
        weight = self.method.clean_loss_weight("G")
        clean = loss if weight == 1.0 else loss * weight
        total = clean + sum(terms.values(), torch.zeros([], device=loss.device))
        self.scale(total.mul(gain)).backward()
        stats = {"Loss/G/loss": loss.detach(), "Scores/fake": logits.detach().float().mean()}
        stats.update({f"Loss/G/{name}": value.detach() for name, value in terms.items()})
        return PhaseResult(stats, step)

    def g_path_length(self, z: torch.Tensor, c: torch.Tensor, gain: float, chunk: int = 0) -> PhaseResult:
        fakes, ws = self.generate(z, c, fast=False)
        noise = torch.randn_like(fakes) / np.sqrt(fakes.shape[2] * fakes.shape[3])
        (grads,) = torch.autograd.grad((fakes * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        # The target keeps its gradient through this batch's mean, as in stylegan2-ada (loss.py); only the
        # stored running value is detached.
        pl_mean = self.pl_mean[chunk].lerp(lengths.mean(), self.cfg.pl_decay)
        self.pl_mean[chunk].copy_(pl_mean.detach())
        penalty = (lengths - pl_mean).square()
        loss = penalty.mean() * self.cfg.pl_weight
        # Touch the image so every synthesis parameter takes part in the graph, as the official code does.
        self.scale((fakes[:, 0, 0, 0] * 0 + loss).mean().mul(gain)).backward()
        return PhaseResult(
            {
                "Loss/Greg/pl_penalty": penalty.detach().mean(),
                "Loss/Greg/pl_mean": pl_mean.detach().clone(),
            }
        )

    def d_main(
        self,
        reals: torch.Tensor,
        real_c: torch.Tensor,
        z: torch.Tensor,
        c: torch.Tensor,
        gain: float,
        cur_nimg: int,
        *,
        with_r1: bool,
        r1_gain: float,
    ) -> PhaseResult:
        with torch.no_grad(), self.autocast():
            fakes, _ws = self.generate(z, c)
        input_grad = self.method.needs_d_input_grad
        if input_grad:
            # A penalty on grad_x D (DigGAN) needs double backward: like R1, the pass runs eagerly in full
            # precision, on a leaf that D consumes as it is.
            fakes_aug = self.method.augment(fakes).detach().requires_grad_(True)
            fake_logits, fake_features = self.run_D(fakes_aug, c, fast=False)
            loss_fake = F.softplus(fake_logits.float()).mean()
        else:
            with self.autocast():
                fakes_aug = self.method.augment(fakes)
                fake_logits, fake_features = self.run_D(fakes_aug, c)
                loss_fake = F.softplus(fake_logits.float()).mean()
        reals_aug, real_logits, real_features, r1_target = self._real_pass(
            reals, real_c, with_r1, input_grad=input_grad
        )
        loss_real = F.softplus(-real_logits.float()).mean()
        step = DStep(
            reals=reals,
            reals_aug=reals_aug,
            real_logits=real_logits,
            real_features=real_features,
            G=self.nets.G,
            D=self.nets.D,
            cur_nimg=cur_nimg,
            phase="main",
            z=z,
            c=c,
            real_c=real_c,
            fakes=fakes,
            fakes_aug=fakes_aug,
            fake_logits=fake_logits,
            fake_features=fake_features,
            extra_logits=self._extra_pass(reals, reals_aug, real_c),
        )
        terms = self.method.d_loss_terms(step)
        weight = self.method.clean_loss_weight("D")
        clean = loss_fake + loss_real if weight == 1.0 else (loss_fake + loss_real) * weight
        total = clean + sum(terms.values(), torch.zeros([], device=loss_fake.device))
        stats = {
            "Loss/D/loss": (loss_fake + loss_real).detach(),
            "Scores/real": real_logits.detach().float().mean(),
            "Scores/fake_d": fake_logits.detach().float().mean(),
        }
        if with_r1:
            r1_loss, r1_penalty = self._r1(real_logits, r1_target, r1_gain)
            total = total + r1_loss
            stats["Loss/Dreg/r1_penalty"] = r1_penalty
        self.scale(total.mul(gain)).backward()
        stats.update({f"Loss/D/{name}": value.detach() for name, value in terms.items()})
        return PhaseResult(stats, step)

    def d_r1(
        self, reals: torch.Tensor, real_c: torch.Tensor, gain: float, r1_gain: float, cur_nimg: int
    ) -> PhaseResult:
        reals_aug, real_logits, real_features, r1_target = self._real_pass(reals, real_c, True)
        r1_loss, r1_penalty = self._r1(real_logits, r1_target, r1_gain)
        self.scale((real_logits.float() * 0 + r1_loss).mean().mul(gain)).backward()
        step = DStep(
            reals=reals,
            reals_aug=reals_aug,
            real_logits=real_logits,
            real_features=real_features,
            G=self.nets.G,
            D=self.nets.D,
            cur_nimg=cur_nimg,
            phase="reg",
            real_c=real_c,
        )
        return PhaseResult({"Loss/Dreg/r1_penalty": r1_penalty}, step)

    # -- pieces ----------------------------------------------------------------------------------
    def _extra_pass(
        self, reals: torch.Tensor, reals_aug: torch.Tensor, real_c: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """D's logits of the method's extra images, in one pass of their own (none: no pass)."""
        extras = self.method.extra_d_inputs(reals, reals_aug, real_c)
        if not extras:
            return {}
        pairs = list(extras.values())
        with self.autocast():
            logits, _features = self.run_D(torch.cat([x for x, _ in pairs]), torch.cat([c for _, c in pairs]))
        return dict(zip(extras, logits.split([len(x) for x, _ in pairs]), strict=True))

    def _real_pass(
        self, reals: torch.Tensor, real_c: torch.Tensor, with_r1: bool, *, input_grad: bool = False
    ):
        """D on the augmented reals. ``input_grad``: ``reals_aug`` requires grad for the method's penalty
        (a leaf, except under R1 on the raw reals, where it is the augmented image of R1's leaf)."""
        raw_target = with_r1 and self.cfg.r1_on == "raw"
        reals_in = reals.detach().requires_grad_(raw_target)
        # R1 needs double backward; compiled graphs do not support it, so R1 passes run eagerly.
        double_backward = with_r1 or input_grad
        fast = not double_backward
        ctx = contextlib.nullcontext() if double_backward else self.autocast()
        with ctx:
            reals_aug = self.method.augment(reals_in)
            augmented_r1 = with_r1 and self.cfg.r1_on == "augmented"
            if augmented_r1 or (input_grad and not reals_aug.requires_grad):
                reals_aug = reals_aug.detach().requires_grad_(True)
            real_logits, real_features = self.run_D(reals_aug, real_c, fast=fast)
        r1_target = reals_in if raw_target else reals_aug
        return reals_aug, real_logits, real_features, r1_target

    def _r1(
        self, real_logits: torch.Tensor, target: torch.Tensor, r1_gain: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        (grads,) = torch.autograd.grad(real_logits.float().sum(), target, create_graph=True)
        penalty = grads.square().sum(dim=[1, 2, 3])
        loss = penalty.mean() * (self.cfg.r1_gamma / 2) * r1_gain
        return loss, penalty.detach().mean()


# -- the schedule ------------------------------------------------------------------------------------
@dataclass
class _Phase:
    name: str
    module: nn.Module
    opt: torch.optim.Optimizer
    interval: int


@register_objective
class StyleGAN2Objective(Objective):
    kind = "ns_r1"
    summary = "StyleGAN2: non-saturating logistic loss, lazy R1 and path length, G_ema by half-life"

    def __init__(self, ctx: ObjectiveContext) -> None:
        super().__init__(ctx)
        recipe = ctx.recipe
        self.lcfg, self.tcfg, perf = recipe.loss, recipe.training, recipe.performance
        G, D = ctx.G, ctx.D
        mbstd = getattr(D, "mbstd_group", 0)
        if mbstd and ctx.batch_gpu % min(mbstd, ctx.batch_gpu):
            raise RecipeError(
                f"the per-device batch {ctx.batch_gpu} is not divisible by model.mbstd_group {mbstd}",
                fix=f"use training.batch_gpu that is a multiple of {mbstd} (or smaller than it)",
            )
        lcfg, tcfg = self.lcfg, self.tcfg
        if lcfg.d_steps != 1 or tcfg.ema_decay is not None:
            raise RecipeError(
                "loss.kind=ns_r1 (StyleGAN2) runs one D phase per minibatch and G_ema by half-life; "
                "loss.d_steps / training.ema_decay belong to loss.kind=hinge",
                fix="set loss.d_steps=1 and training.ema_decay=null (or use loss.kind=hinge)",
            )
        self.use_pl = lcfg.pl_weight > 0
        self.use_r1 = lcfg.r1_gamma > 0
        g_ratio = lazy_ratio(lcfg.pl_interval, self.use_pl)
        d_ratio = lazy_ratio(lcfg.r1_interval, self.use_r1)
        self.opt_G = make_optimizer(G.parameters(), tcfg.g_lr, tcfg.betas, tcfg.eps, g_ratio)
        self.opt_D = make_optimizer(D.parameters(), tcfg.d_lr, tcfg.betas, tcfg.eps, d_ratio)
        synthesis_fast, D_fast = G.synthesis, D
        if perf.compile:
            # Only the single-backward passes use the compiled views; R1/path length run eagerly.
            synthesis_fast, D_fast = torch.compile(G.synthesis), torch.compile(D)
        self.loss = StyleGAN2Loss(
            Networks(G, D, synthesis_fast, D_fast),
            ctx.method,
            lcfg,
            ctx.autocast,
            scale=ctx.scaler.scale if ctx.scaler is not None else None,
            chunks=ctx.rounds,
        )
        self.draw_c = dataset_label_sampler(ctx.labels, getattr(G, "c_dim", 0), ctx.device)
        self.phases = [_Phase("G", G, self.opt_G, 1)]
        if self.use_pl and lcfg.pl_interval > 1:
            self.phases.append(_Phase("Greg", G, self.opt_G, lcfg.pl_interval))
        self.phases.append(_Phase("D", D, self.opt_D, 1))
        if self.use_r1 and lcfg.r1_interval > 1:
            self.phases.append(_Phase("Dreg", D, self.opt_D, lcfg.r1_interval))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def state_dict(self) -> dict[str, Any]:
        return {"pl_mean": self.loss.pl_mean.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = torch.as_tensor(state["pl_mean"]).reshape(-1)
        own = self.loss.pl_mean
        if saved.numel() != own.numel():
            # One mean per process (checkpoints before per-chunk means), or another chunk layout accepted
            # with --force: every chunk continues from their average.
            saved = saved.mean().expand(own.numel())
        own.copy_(saved)

    @classmethod
    def reshard_states(cls, states: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]] | None:
        means = torch.cat([torch.as_tensor(state["pl_mean"]).reshape(-1) for state in states])
        if means.numel() % world_size:
            return None
        # rank order, then round order: the global chunk order, which any process count shares
        return [{"pl_mean": part.clone()} for part in means.chunk(world_size)]

    def train_minibatch(self, next_reals: RealSource, info: MinibatchInfo, stats: StatsCollector) -> int:
        reals, labels = next_reals()
        real_c = self.one_hot(labels, len(reals))
        for phase in self.phases:
            if info.batch_idx % phase.interval == 0:
                self._run_phase(phase, reals, real_c, info.cur_nimg, stats)
        tcfg = self.tcfg
        beta = ema_beta(
            batch=tcfg.batch,
            cur_nimg=info.cur_nimg,
            ema_kimg=tcfg.ema_kimg,
            ema_rampup=tcfg.ema_rampup,
            ema_start_kimg=tcfg.ema_start_kimg,
        )
        update_ema(self.ctx.G_ema, self.ctx.G, beta)
        return tcfg.batch

    def _run_phase(
        self, phase: _Phase, reals: torch.Tensor, real_c: torch.Tensor, cur_nimg: int, stats: StatsCollector
    ) -> None:
        """Rounds of forward/backward, then one optimizer step and the method's hook."""
        G, D, lcfg, loss = self.ctx.G, self.ctx.D, self.lcfg, self.loss
        G.requires_grad_(phase.module is G)
        D.requires_grad_(phase.module is D)
        phase.opt.zero_grad(set_to_none=True)
        device, batch_gpu, rounds = reals.device, self.ctx.batch_gpu, self.ctx.rounds
        z_dim, draw_c = G.z_dim, self.draw_c
        gain = 1.0 / rounds
        results: list[PhaseResult] = []

        def pl_round(index: int, weight: float) -> PhaseResult:
            self.enter_round("Gpl" if phase.name == "G" else phase.name, index, rounds)
            n = max(batch_gpu // lcfg.pl_batch_shrink, 1)
            return loss.g_path_length(torch.randn(n, z_dim, device=device), draw_c(n), weight, chunk=index)

        if phase.name == "G":
            for index in range(rounds):
                self.enter_round(phase.name, index, rounds)
                z = torch.randn(batch_gpu, z_dim, device=device)
                results.append(loss.g_main(z, draw_c(batch_gpu), gain, cur_nimg))
            if self.use_pl and lcfg.pl_interval == 1:
                results.extend(pl_round(index, gain) for index in range(rounds))
        elif phase.name == "Greg":
            results.extend(pl_round(index, gain * phase.interval) for index in range(rounds))
        elif phase.name == "D":
            with_r1 = self.use_r1 and lcfg.r1_interval == 1
            chunks = zip(reals.split(batch_gpu), real_c.split(batch_gpu), strict=True)
            for index, (real_chunk, c_chunk) in enumerate(chunks):
                self.enter_round(phase.name, index, rounds)
                z = torch.randn(batch_gpu, z_dim, device=device)
                results.append(
                    loss.d_main(
                        real_chunk,
                        c_chunk,
                        z,
                        draw_c(batch_gpu),
                        gain,
                        cur_nimg,
                        with_r1=with_r1,
                        r1_gain=1.0,
                    )
                )
        elif phase.name == "Dreg":
            chunks = zip(reals.split(batch_gpu), real_c.split(batch_gpu), strict=True)
            for index, (real_chunk, c_chunk) in enumerate(chunks):
                self.enter_round(phase.name, index, rounds)
                results.append(loss.d_r1(real_chunk, c_chunk, gain, float(phase.interval), cur_nimg))
        for result in results:
            stats.add(result.stats)
        self.step_optimizer(
            phase.name, phase.module, phase.opt, [r.step for r in results if r.step is not None]
        )
