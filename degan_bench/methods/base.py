"""The interface between the generic training loop and a data-efficient GAN method.

Neither the loop (``degan_bench.training.loop``) nor the objectives
(``degan_bench.training.objectives``) name a method. The objective of the backbone family runs its
phases per minibatch (StyleGAN2: ``G`` [``Greg``] ``D`` [``Dreg``] with lazy intervals; BigGAN hinge:
``D`` x k then ``G``) and calls the method's hooks at fixed points:

1. ``augment(images)`` transforms every D input (reals and fakes, in the G and the D step). It must
   be differentiable w.r.t. ``images`` so gradients reach G.
2. ``g_loss_terms(step)`` / ``d_loss_terms(step)`` return extra scalar losses (name -> tensor) that
   the objective adds to the G / D loss and logs as ``Loss/<phase>/<name>``.
3. ``after_optimizer_step(phase, steps)`` runs once after every optimizer step of G or D, the
   regularization phases included (e.g. ADA's sign statistics, momentum updates, queue pushes,
   re-applying pruning masks), with the step records of the phase's accumulation rounds.
4. ``end_of_minibatch(cur_nimg, minibatch_index)`` runs once per global minibatch, after all phases
   and the G_ema update (e.g. ADA's p adjustment, which must see every D step).
5. ``generate(G, z, c)`` makes the fakes of the hinge objective's G step (default ``G(z, c)``), and
   ``clean_loss_weight(phase)`` scales the objective's own adversarial loss of the main ``G`` / ``D``
   phase (default 1, which leaves it untouched). The lottery ticket's AdvAug splits G into
   ``G.stem``/``G.body`` there and averages the clean loss with its perturbed term (weight 0.5).
6. ``extra_d_inputs(reals, reals_aug, real_c)`` names extra images D scores in the main D step
   (default none). The hinge objective appends them to its one D pass over ``[fakes; reals]`` (so
   spectral norm runs one power iteration per D step, as when CR-BigGAN concatenates its augmented
   reals), the StyleGAN2 objective scores them in a pass of their own after the reals; their logits
   reach ``d_loss_terms`` as ``DStep.extra_logits[name]``.

A method that needs gradients w.r.t. D's (augmented) inputs sets ``needs_d_input_grad``: the
objective then hands ``DStep.fakes_aug`` / ``reals_aug`` as tensors that require grad and were fed to
D as they are (leaves; under StyleGAN2's R1 on the raw reals in the same pass, ``reals_aug`` is the
augmented image of R1's leaf); StyleGAN2 runs those D passes eagerly in full precision, as its R1
passes (double backward). A method bound to some objectives lists them in ``objectives``.

A method owns extra state through ``modules()`` (``nn.Module`` s moved to the device and
checkpointed), ``optimizers()`` (checkpointed, stepped by the method itself in its hooks) and
``state_dict()`` / ``load_state_dict()`` for everything else (augment p, queues, counters). The loop
checkpoints all three, so resume is exact.

The plain baselines (``stylegan2``, ``biggan``) are no-op subclasses in :mod:`degan_bench.methods.baseline`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class NoOptions:
    """Config of a method without options."""


@dataclass
class MethodContext:
    """What a method may know about the run when it is built."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    device: torch.device
    resolution: int
    num_images: int  # training images seen by D per epoch (after mirror doubling)
    batch: int  # global minibatch
    batch_gpu: int  # per-device minibatch of one accumulation round
    total_kimg: float
    g_lr: float
    d_lr: float
    betas: tuple[float, float]
    world_size: int = 1
    rank: int = 0
    recipe: Any = None  # the resolved Recipe, for methods that need more
    objective: str = "ns_r1"  # loss.kind of the objective that calls the hooks
    autocast: Callable[[], Any] = contextlib.nullcontext  # the loop's autocast factory for forward passes
    scaler: Any = None  # the loop's fp16 GradScaler, or None
    run_dir: Path | None = None  # the run directory, for methods that keep artifacts there (lottery masks)
    seed: int = 0  # the run's training seed


@dataclass
class GStep:
    """One accumulation round of the G phase. Tensors are part of the autograd graph."""

    z: torch.Tensor
    c: torch.Tensor
    fakes: torch.Tensor  # G(z), NCHW in [-1, 1], requires grad through G
    fakes_aug: torch.Tensor  # method.augment(fakes)
    fake_logits: torch.Tensor  # D(fakes_aug)
    fake_features: torch.Tensor | None  # D trunk features when method.needs_d_features
    G: nn.Module
    D: nn.Module
    cur_nimg: int
    ws: torch.Tensor | None = None  # mapped latents used for fakes (style mixing applied)


@dataclass
class DStep:
    """One accumulation round of a D phase. Fakes are detached from G.

    ``phase`` is ``"main"`` (the adversarial loss; every field is set and ``d_loss_terms`` is called) or
    ``"reg"`` (a lazy R1 pass over reals only: the fake fields and ``z``/``c`` are None, and only
    ``after_optimizer_step`` sees it, so statistics such as ADA's sign(D(real)) include it as
    officially). ``d_step_index`` counts the D steps of one G step (BigGAN: 0..3; StyleGAN2: 0).
    """

    reals: torch.Tensor  # un-augmented reals, NCHW in [-1, 1]
    reals_aug: torch.Tensor
    real_logits: torch.Tensor
    real_features: torch.Tensor | None
    G: nn.Module
    D: nn.Module
    cur_nimg: int
    phase: str = "main"
    z: torch.Tensor | None = None
    c: torch.Tensor | None = None
    real_c: torch.Tensor | None = None
    fakes: torch.Tensor | None = None  # G(z) detached
    fakes_aug: torch.Tensor | None = None
    fake_logits: torch.Tensor | None = None
    fake_features: torch.Tensor | None = None
    d_step_index: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    #: D's logits of the method's ``extra_d_inputs`` (phase "main"), by name
    extra_logits: dict[str, torch.Tensor] = field(default_factory=dict)


class Method:
    """Base class: a method that changes nothing (the baselines in :mod:`.baseline` are this)."""

    name: ClassVar[str] = "stylegan2"
    Config: ClassVar[type] = NoOptions
    summary: ClassVar[str] = "StyleGAN2 without augmentation (the baseline)"
    #: ask the objective for D trunk features in every D call (InsGen, FakeCLR)
    needs_d_features: ClassVar[bool] = False
    #: D-step inputs that require grad, for penalties on grad_x D (DigGAN)
    needs_d_input_grad: ClassVar[bool] = False
    #: the objectives (loss.kind) the method is defined for; None = any
    objectives: ClassVar[tuple[str, ...] | None] = None
    #: a baseline's own backbone (model.arch); None = the dataset's default backbone
    backbone: ClassVar[str | None] = None

    @classmethod
    def prerequisites(cls, config: Any) -> list[list[str]]:
        """The runs this run reads artifacts from and that must be complete before it starts, each as
        the ``--set`` overrides that turn this run's recipe into theirs (direct ones only: each is asked
        in turn). ``degan-bench sweep`` runs them first. [] = a self-contained run."""
        return []

    def __init__(self, config: Any, ctx: MethodContext) -> None:
        self.config = config
        self.ctx = ctx

    # -- D inputs ---------------------------------------------------------------------------
    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return images

    # -- fakes --------------------------------------------------------------------------------
    def generate(self, G: nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The fakes of the hinge objective's G step (the D steps call ``G(z, c)`` under no_grad)."""
        return G(z, c)

    def extra_d_inputs(
        self, reals: torch.Tensor, reals_aug: torch.Tensor, real_c: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Extra images for D in the main D step, ``name -> (images, labels)`` (see hook 6); ``reals_aug``
        is ``augment`` of the round's ``reals``. Default: none, which leaves every D pass as it is."""
        return {}

    # -- losses -----------------------------------------------------------------------------
    def clean_loss_weight(self, phase: str) -> float:
        """Factor on the objective's own adversarial loss of phase ``G`` or ``D`` (1 = untouched)."""
        return 1.0

    def g_loss_terms(self, step: GStep) -> dict[str, torch.Tensor]:
        return {}

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        return {}

    # -- state updates ----------------------------------------------------------------------
    def after_optimizer_step(self, phase: str, steps: list[GStep | DStep]) -> None:
        """After the optimizer step of ``phase`` (``G``, ``Greg``, ``D`` or ``Dreg``); ``steps`` holds the
        accumulation rounds' records (none for ``Greg``)."""

    def end_of_minibatch(self, cur_nimg: int, minibatch_index: int) -> None:
        pass

    # -- owned state ------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} has no state but the checkpoint holds {sorted(state)}")

    # -- reporting --------------------------------------------------------------------------
    def tick_stats(self) -> dict[str, float]:
        """Scalars for the tick status line and stats.jsonl, e.g. ``{"augment_p": 0.12}``."""
        return {}
