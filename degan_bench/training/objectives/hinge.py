"""The BigGAN objective (``loss.kind: hinge``), as BigGAN-PyTorch / DiffAugment-biggan-cifar train it.

One minibatch is one BigGAN *iteration* (``train_fns.GAN_training_function``):

1. ``loss.d_steps`` D steps (CIFAR: 4). Each takes its own ``training.batch`` reals, draws fresh
   ``z`` and uniform class labels, and runs D once on the concatenation ``[G(z); x]`` after the
   method's augmentation (``BigGAN.py G_D.forward``: DiffAugment is applied to the concatenated
   batch). ``L_D = mean(relu(1 - D(T(x)))) + mean(relu(1 + D(T(G(z)))))`` (``losses.py``).
2. One G step: ``L_G = -mean(D(T(G(z))))`` on fresh ``z``, labels.
3. G_ema: ``target * decay + source * (1 - decay)`` over the whole state (buffers included), copying G
   while ``utils.ema.update(itr)``'s ``itr and itr < training.ema_start_step`` holds; ``itr`` at the
   first G step is ``training.ema_itr_base`` (0 in the DiffAugment/DigGAN forks and StudioGAN, whose
   counters increment after the step: step 1 averages, steps 2..1000 copy, averaging from 1001; 1 in
   upstream BigGAN-PyTorch).

G stays in training mode throughout (its batch-norm statistics move in the D steps too, as officially).
An iteration consumes ``d_steps x batch`` reals, which is how the loop counts kimg.

SNGAN (the lottery-ticket paper's ``SNGAN/functions.py train``) differs in three switches, all off by
default: ``loss.g_batch`` fakes per G step (128 against 64 reals per D step); ``loss.g_after_d_step``
places the G step (and G_ema) after D step N of the minibatch (SNGAN: G steps follow D iterations 0,
5, 10, ... = one D step, G, four D steps per minibatch); ``loss.d_forward: separate`` runs D on the
reals, then on the fakes (two spectral-norm power iterations per D step instead of one).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from degan_bench.errors import RecipeError
from degan_bench.methods.base import DStep, GStep
from degan_bench.training.ema import fixed_decay, update_ema_state
from degan_bench.training.objectives import register_objective
from degan_bench.training.objectives.base import (
    MinibatchInfo,
    Objective,
    ObjectiveContext,
    RealSource,
    make_optimizer,
    uniform_label_sampler,
)
from degan_bench.training.stats import StatsCollector


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss on reals, loss on fakes) of BigGAN's ``loss_hinge_dis``."""
    return F.relu(1.0 - real_logits.float()).mean(), F.relu(1.0 + fake_logits.float()).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.float().mean()


@register_objective
class HingeObjective(Objective):
    kind = "hinge"
    summary = "BigGAN: hinge loss, k D steps per G step, G_ema with a fixed decay from a start iteration"

    def __init__(self, ctx: ObjectiveContext) -> None:
        super().__init__(ctx)
        recipe = ctx.recipe
        self.lcfg, self.tcfg = recipe.loss, recipe.training
        if self.tcfg.ema_decay is None:
            raise RecipeError(
                "loss.kind=hinge updates G_ema with a constant decay per G step; training.ema_decay is unset",
                fix="set training.ema_decay (BigGAN: 0.9999) and training.ema_start_step (BigGAN: 1000)",
            )
        if self.lcfg.r1_gamma > 0 or self.lcfg.pl_weight > 0:
            raise RecipeError(
                "loss.kind=hinge (BigGAN) has no R1 or path length; loss.r1_gamma / loss.pl_weight is set",
                fix="set loss.r1_gamma=0 and loss.pl_weight=0 (or use loss.kind=ns_r1)",
            )
        tcfg = self.tcfg
        self.opt_G = make_optimizer(ctx.G.parameters(), tcfg.g_lr, tcfg.betas, tcfg.eps, ratio=1.0)
        self.opt_D = make_optimizer(ctx.D.parameters(), tcfg.d_lr, tcfg.betas, tcfg.eps, ratio=1.0)
        self.draw_c = uniform_label_sampler(getattr(ctx.G, "c_dim", 0), ctx.device)
        g_batch = self.lcfg.g_batch or tcfg.batch
        if g_batch % (ctx.batch_gpu * ctx.world_size):
            raise RecipeError(
                f"loss.g_batch {g_batch} is not a multiple of batch_gpu x processes "
                f"({ctx.batch_gpu} x {ctx.world_size}): a G step accumulates whole per-device rounds",
                fix="set loss.g_batch (or training.batch_gpu) so that it divides evenly",
            )
        self.g_rounds = g_batch // (ctx.batch_gpu * ctx.world_size)
        self.scale = ctx.scaler.scale if ctx.scaler is not None else (lambda loss: loss)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def reals_per_minibatch(self) -> int:
        return self.tcfg.batch * self.lcfg.d_steps

    def _run_D(self, images: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, Any]:
        if self.ctx.method.needs_d_features:
            return self.ctx.D(images, c, return_features=True)
        return self.ctx.D(images, c), None

    def train_minibatch(self, next_reals: RealSource, info: MinibatchInfo, stats: StatsCollector) -> int:
        ctx = self.ctx
        G, D = ctx.G, ctx.D
        n, gain = ctx.batch_gpu, 1.0 / ctx.rounds
        # -- D steps ---------------------------------------------------------------------------------
        g_after = self.lcfg.g_after_d_step or self.lcfg.d_steps
        for step_index in range(self.lcfg.d_steps):
            G.requires_grad_(False)
            D.requires_grad_(True)
            self.opt_D.zero_grad(set_to_none=True)
            reals, labels = next_reals()
            real_c = self.one_hot(labels, len(reals))
            steps: list[GStep | DStep] = []
            chunks = zip(reals.split(n), real_c.split(n), strict=True)
            for index, (real_chunk, c_chunk) in enumerate(chunks):
                self.enter_round(f"D{step_index}", index, ctx.rounds)
                steps.append(self._d_round(real_chunk, c_chunk, step_index, gain, info.cur_nimg, stats))
            self.step_optimizer("D", D, self.opt_D, steps)
            if step_index + 1 == g_after:
                self._g_step(info, stats)
        return self.reals_per_minibatch()

    def _g_step(self, info: MinibatchInfo, stats: StatsCollector) -> None:
        """One G step on ``loss.g_batch`` fakes, then the G_ema update."""
        ctx, method = self.ctx, self.ctx.method
        G, D = ctx.G, ctx.D
        n, gain = ctx.batch_gpu, 1.0 / self.g_rounds
        G.requires_grad_(True)
        D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        g_steps: list[GStep | DStep] = []
        for index in range(self.g_rounds):
            self.enter_round("G", index, self.g_rounds)
            z = torch.randn(n, G.z_dim, device=ctx.device)
            c = self.draw_c(n)
            with ctx.autocast():
                fakes = method.generate(G, z, c)
                fakes_aug = method.augment(fakes)
                logits, features = self._run_D(fakes_aug, c)
                loss = hinge_g_loss(logits)
            step = GStep(z=z, c=c, fakes=fakes, fakes_aug=fakes_aug, fake_logits=logits,
                         fake_features=features, G=G, D=D, cur_nimg=info.cur_nimg)  # fmt: skip
            terms = method.g_loss_terms(step)
            weight = method.clean_loss_weight("G")
            clean = loss if weight == 1.0 else loss * weight
            total = clean + sum(terms.values(), torch.zeros([], device=loss.device))
            self.scale(total.mul(gain)).backward()
            stats.add({"Loss/G/loss": loss.detach(), "Scores/fake": logits.detach().float().mean()})
            stats.add({f"Loss/G/{name}": value.detach() for name, value in terms.items()})
            g_steps.append(step)
        self.step_optimizer("G", G, self.opt_G, g_steps)
        tcfg = self.tcfg
        decay = fixed_decay(info.batch_idx + 1, tcfg.ema_decay, tcfg.ema_start_step, tcfg.ema_itr_base)
        update_ema_state(ctx.G_ema, G, decay)

    def _d_round(
        self,
        reals: torch.Tensor,
        real_c: torch.Tensor,
        step_index: int,
        gain: float,
        cur_nimg: int,
        stats: StatsCollector,
    ) -> DStep:
        ctx, method = self.ctx, self.ctx.method
        n = len(reals)
        z = torch.randn(n, ctx.G.z_dim, device=ctx.device)
        c = self.draw_c(n)
        with torch.no_grad(), ctx.autocast():
            fakes = ctx.G(z, c)
        with ctx.autocast():
            augmented = method.augment(torch.cat([fakes, reals]))
            fakes_aug, reals_aug = augmented.split([n, n])
            if method.needs_d_input_grad:
                # Leaves that D consumes as they are, so grad_x D(x) can be taken per half (DigGAN).
                fakes_aug = fakes_aug.detach().requires_grad_(True)
                reals_aug = reals_aug.detach().requires_grad_(True)
                augmented = torch.cat([fakes_aug, reals_aug])
            # The method's extra images ride along in the pass that scores the reals (CR-BigGAN).
            extras = method.extra_d_inputs(reals, reals_aug, real_c)
            extra_images = [images for images, _ in extras.values()]
            extra_c = [labels for _, labels in extras.values()]
            sizes = [n, *(len(images) for images in extra_images)]
            extra_logits: list[torch.Tensor] = []
            if self.lcfg.d_forward == "separate":  # SNGAN functions.py: dis_net(real), then dis_net(fake)
                if extras:
                    logits, features = self._run_D(
                        torch.cat([reals_aug, *extra_images]), torch.cat([real_c, *extra_c])
                    )
                    real_logits, *extra_logits = logits.split(sizes)
                    real_features = features.split(sizes)[0] if features is not None else None
                else:
                    real_logits, real_features = self._run_D(reals_aug, real_c)
                fake_logits, fake_features = self._run_D(fakes_aug, c)
            else:
                if extras:
                    augmented = torch.cat([augmented, *extra_images])
                logits, features = self._run_D(augmented, torch.cat([c, real_c, *extra_c]))
                fake_logits, real_logits, *extra_logits = logits.split([n, *sizes])
                fake_features, real_features = (
                    features.split([n, *sizes])[:2] if features is not None else (None, None)
                )
            loss_real, loss_fake = hinge_d_loss(real_logits, fake_logits)
        step = DStep(
            reals=reals, reals_aug=reals_aug, real_logits=real_logits, real_features=real_features,
            G=ctx.G, D=ctx.D, cur_nimg=cur_nimg, phase="main", z=z, c=c, real_c=real_c, fakes=fakes,
            fakes_aug=fakes_aug, fake_logits=fake_logits, fake_features=fake_features,
            d_step_index=step_index, extra_logits=dict(zip(extras, extra_logits, strict=True)),
        )  # fmt: skip
        terms = method.d_loss_terms(step)
        weight = method.clean_loss_weight("D")
        clean = loss_real + loss_fake if weight == 1.0 else (loss_real + loss_fake) * weight
        total = clean + sum(terms.values(), torch.zeros([], device=loss_real.device))
        self.scale(total.mul(gain)).backward()
        stats.add(
            {
                "Loss/D/loss": (loss_real + loss_fake).detach(),
                "Loss/D/real": loss_real.detach(),
                "Loss/D/fake": loss_fake.detach(),
                "Scores/real": real_logits.detach().float().mean(),
                "Scores/fake_d": fake_logits.detach().float().mean(),
            }
        )
        stats.add({f"Loss/D/{name}": value.detach() for name, value in terms.items()})
        return step
