"""DigGAN (Fang, Sun, Schwing, NeurIPS 2022): a penalty on the discriminator gradient gap.

The D loss gains ``weight * mean_i (g_f,i - g_r,i)^2`` where ``g_f,i = ||grad_x D(T(G(z_i)))||`` and
``g_r,i = ||grad_x D(T(x_i))||`` are per-sample L2 norms of the gradient of D's summed output w.r.t. the
(augmented) images D was fed, as AilsaF/DigGAN's CIFAR code computes them
(``DiffAugment-biggan-cifar/train_fns.py`` ``get_grad`` and lines 75-83):

- each norm is averaged with the stored value of the previous penalized round,
  ``g <- (1 - prev_mix) * g + prev_mix * g_prev`` (official: 0.5 / 0.5, same batch index), and the
  averaged, detached value is what is stored for the next round;
- the penalty is only taken in the first D step of each G step (``step_index == 0``; BigGAN: 1 of 4);
- it is differentiated twice (``create_graph``), so it reaches D's weights; G's loss is unchanged.

DigGAN composes with DiffAugment: ``policy`` is applied to every D input as the ``diffaugment`` method
does (empty = none), and the norms are taken w.r.t. the augmented images, as officially. The method
names are the rows of DigGAN's tables, which train their own baselines (the DigGAN repository's
scripts without ``--use_DigGAN``; its 10 % runs train twice as long as DiffAugment's):

=================================  ==========================================  ===================
method                             row                                         DiffAugment policy
=================================  ==========================================  ===================
``diggan``                         + DigGAN                                    none by default
``diggan-diffaugment``             + DA + DigGAN                               required
``diggan-baseline``                the backbone as DigGAN's scripts train it   none
``diggan-diffaugment-baseline``    + DA as DigGAN's scripts train it           required
=================================  ==========================================  ===================

The low-shot table labels its row just "DigGAN" (no released code, base not stated): those cells are
``diggan`` recipes whose deviations state the base chosen (DiffAugment's StyleGAN2) and lambda.

The stored norms span the global batch in the order of its chunks (one accumulation round of one
process each): every round averages with the stored values of its own chunk, and the new values of a D
step are stored when the step ends, gathered over processes in rank order. The numbers therefore do not
depend on how the chunks are spread over processes, a checkpoint written by rank 0 holds every value,
and resume is exact (also with another process count that keeps ``training.batch_gpu``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from degan_bench.augment.diffaugment import parse_policy
from degan_bench.core.distributed import is_active
from degan_bench.methods import register_method
from degan_bench.methods.base import DStep, GStep, Method, MethodContext
from degan_bench.methods.diffaugment import DiffAugmentation
from degan_bench.schema import param

_POLICY_HELP = (
    "DiffAugment ops applied to every D input (reals and fakes, D and G steps), comma-separated; "
    "official DigGAN CIFAR: translation,cutout with --DiffAugment, none without"
)


@dataclass
class DigGANConfig:
    enabled: bool = param(
        True,
        help="official --use_DigGAN: false trains without the penalty whatever the weight "
        "(biggan-cifar10-0.2_Diggan.sh omits the flag)",
    )
    weight: float = param(
        500.0, help="lambda, official --DigGAN_penalty_weight (argparse default 500)", min=0.0
    )
    prev_mix: float = param(
        0.5,
        help="share of the previous penalized round's norm in each averaged norm (official 0.5; "
        "0 = the current norms only)",
        min=0.0,
        max=0.999,
    )
    policy: str = param("", help=_POLICY_HELP)

    def check(self) -> None:
        parse_policy(self.policy)  # unknown ops -> one-line error with a did-you-mean


@dataclass
class DigGANDiffAugmentConfig(DigGANConfig):
    policy: str = param("translation,cutout", help=_POLICY_HELP)

    def check(self) -> None:
        if not parse_policy(self.policy):
            raise ValueError("policy is empty; use method 'diggan' for DigGAN without DiffAugment")


@dataclass
class BaselinePolicyConfig:
    policy: str = param("translation,cutout", help=_POLICY_HELP)

    def check(self) -> None:
        if not parse_policy(self.policy):
            raise ValueError("policy is empty; use method 'diggan-baseline' to train without augmentation")


@torch.no_grad()
def _gather(values: torch.Tensor) -> torch.Tensor:
    """``values`` of every process concatenated in rank order (the tensor itself in one process)."""
    if not is_active():
        return values
    parts = [torch.empty_like(values) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, values.contiguous())
    return torch.cat(parts)


def gradient_norms(
    fake_logits: torch.Tensor, real_logits: torch.Tensor, fakes_aug: torch.Tensor, reals_aug: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``||grad_x sum D||`` of the fake and the real half, differentiable w.r.t. D's weights.

    One ``autograd.grad`` over the summed logits of both halves, as ``get_grad`` does on the concatenated
    D input; each sample's norm is over all of its pixels and channels."""
    grads = torch.autograd.grad(
        fake_logits.float().sum() + real_logits.float().sum(), [fakes_aug, reals_aug], create_graph=True
    )
    return grads[0].flatten(1).norm(dim=1), grads[1].flatten(1).norm(dim=1)


class _DiffAugmentInputs(Method):
    """Shared by the DigGAN rows: every D input goes through the recipe's DiffAugment policy."""

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.policy = DiffAugmentation(config.policy)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.policy(images)


@register_method
class DigGANMethod(_DiffAugmentInputs):
    name = "diggan"
    Config = DigGANConfig
    summary = "DigGAN: penalty on the gap between real and fake D input-gradient norms (Fang et al. 2022)"
    needs_d_input_grad = True

    def __init__(self, config: DigGANConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.active = config.enabled and config.weight > 0
        # the averaged norms of the last penalized round over the global batch (None before the first)
        self.prev_fake: torch.Tensor | None = None
        self.prev_real: torch.Tensor | None = None
        # this D step's averaged norms, one entry per round of this process; stored when the step ends
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        if not self.active or step.d_step_index != 0:
            return {}
        assert step.fake_logits is not None and step.fakes_aug is not None  # phase "main" sets them
        g_fake, g_real = gradient_norms(step.fake_logits, step.real_logits, step.fakes_aug, step.reals_aug)
        if self.prev_fake is not None and self.prev_real is not None:
            own = self._own_slice(len(g_fake), len(self._pending))
            mix = self.config.prev_mix
            g_fake = g_fake * (1 - mix) + self.prev_fake[own] * mix
            g_real = g_real * (1 - mix) + self.prev_real[own] * mix
        self._pending.append((g_fake.detach(), g_real.detach()))
        return {"diggan": (g_fake - g_real).square().mean() * self.config.weight}

    def after_optimizer_step(self, phase: str, steps: list[GStep | DStep]) -> None:
        if phase == "D" and self._pending:
            self.prev_fake = _gather(torch.cat([fake for fake, _ in self._pending]))
            self.prev_real = _gather(torch.cat([real for _, real in self._pending]))
            self._pending.clear()

    def _own_slice(self, n: int, round_index: int) -> slice:
        """This round's chunk of the stored global-batch norms."""
        assert self.prev_fake is not None
        rounds = max(self.ctx.batch // (n * self.ctx.world_size), 1)
        expected = n * self.ctx.world_size * rounds
        if len(self.prev_fake) != expected:
            raise ValueError(
                f"DigGAN's stored norms cover {len(self.prev_fake)} samples but a D step here has {expected} "
                f"({rounds} rounds of {n} per process); resume with the run's own training.batch"
            )
        start = (self.ctx.rank * rounds + round_index) * n
        return slice(start, start + n)

    def state_dict(self) -> dict[str, Any]:
        def cpu(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().cpu().clone()

        return {"prev_fake": cpu(self.prev_fake), "prev_real": cpu(self.prev_real)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def dev(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(self.ctx.device)

        self.prev_fake, self.prev_real = dev(state["prev_fake"]), dev(state["prev_real"])


@register_method
class DigGANDiffAugmentMethod(DigGANMethod):
    name = "diggan-diffaugment"
    Config = DigGANDiffAugmentConfig
    summary = "DigGAN + DiffAugment: the gradient-gap penalty on DiffAugment-augmented D inputs"


@register_method
class DigGANBaseline(Method):
    name = "diggan-baseline"
    summary = "the backbone without augmentation, as DigGAN's scripts train it (no --use_DigGAN)"


@register_method
class DigGANDiffAugmentBaseline(_DiffAugmentInputs):
    name = "diggan-diffaugment-baseline"
    Config = BaselinePolicyConfig
    summary = "the backbone + DiffAugment, as DigGAN's scripts train it (no --use_DigGAN)"
