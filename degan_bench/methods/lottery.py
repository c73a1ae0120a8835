"""Lottery-ticket data-efficient GAN training (Chen, Cheng, Gan, Liu, Wang, NeurIPS 2021).

Two stages, each a chain of ordinary runs of method ``lottery`` (``lottery.stage``):

**Stage I, ``find``** (iterative magnitude pruning on the same small training set). Round ``k`` trains
G and D from the initialization with G's mask ``m_k`` (``m_0`` = dense) and keeps everything a later
round needs in its run directory:

- ``lottery/init.pt``: the initial G and D state (round 0 saves the networks it built; round ``k``
  copies round ``k - 1``'s file), the ``theta_0`` / ``phi_0`` every round rewinds to;
- ``lottery/mask.pt``: the masks this round trains with. Round ``k >= 1`` derives them when it starts:
  ``m_k = prune(m_{k-1}, final weights of round k - 1, prune_ratio)``, so (1 - ratio)^k remain. Beside
  G's chain it keeps the averaged generator's own chain ``G_ema``, as ``SNGAN/train_impg_less.py``
  prunes ``avg_gen_net`` every round: ``m~_k = prune(m~_{k-1}, G_ema of round k - 1, prune_ratio)`` where
  the G_ema weights are the official ``gen_avg_param``, an average of G's unmasked ``weight_orig``: equal
  to our G_ema where G's mask keeps a weight, and to the initial weight where it pruned it (a pruned
  ``weight_orig`` gets no gradient and stays at its rewound value). The two chains part from round 2 on.

Round ``k`` finds round ``k - 1`` among the sibling run directories by recipe hash (the same recipe
with ``lottery.round = k - 1``) and seed, and needs it complete. Default scope ``g_conv`` is the
released code's rule (``SNGAN/train_impg_less.py``, ``BigGAN and DiffAugGAN/load_framework_impg.py``):
only G's conv kernels are pruned, globally over all layers, and D is rewound to its initial weights
each round. ``prune_scope: g_and_d_conv`` is Algorithm 1 of the paper: D's conv kernels get their own
global 20 % pruning (a separate pool, so G's and D's magnitude scales do not compete) and D trains
with its mask too.

**Stage II, ``train``**: the ticket of round ``r`` (``lottery.round``: the masks of Stage I round ``r``,
located like above) trained from the initialization with the mask held fixed, plus DiffAugment
(``lottery.policy``) and/or AdvAug (``lottery.advaug``). ``lottery.ticket_mask`` picks the chain:
``g_ema`` (SNGAN code: ``train_with_masks_adv_gd_less.py`` loads the ``*.weight_mask`` entries of the
checkpoint's ``avg_gen_state_dict``) or ``g`` (BigGAN code: ``load_framework_ompg.py`` extracts the masks
from the ``model=G`` checkpoint).

The mask is held fixed by zeroing the pruned weights after every optimizer step of G (and of D under
``g_and_d_conv``) and in G_ema after every minibatch; the masks are also saved in the method state of
every checkpoint and compared on resume. The official code multiplies the pruned gradients by zero
(StudioGAN fork) or uses ``torch.nn.utils.prune`` (SNGAN); with Adam, which is element-wise, the
unpruned weights follow the same trajectory either way and the pruned ones are zero in every forward.

**AdvAug** (feature-level adversarial augmentation), as ``train_eval_impg.py`` (BigGAN) and
``functions_adv.py train_adv_gd`` (SNGAN) compute it:

- D: ``h = D.trunk(T(x))`` for reals and fakes; ``h_adv = h + delta`` with ``delta`` from ``steps``
  signed-gradient steps of size ``gamma`` ascending a score of ``D.head(h_adv)`` (no random start, no
  projection; ``delta`` carries no gradient); ``L_D = (L_D(clean) + L_D(adv)) / 2``. The score is
  ``mean_logit`` (SNGAN) or ``hinge_real`` = ``-mean(relu(1 - logit))`` (BigGAN, for reals *and*
  fakes, so samples with logit > 1 are not moved).
- G (hinge objective only: it needs ``G.stem`` / ``G.body``): ``h = G.stem(z, c)``, ``delta`` ascends
  ``mean D(G.body(h_adv))`` on un-augmented fakes, ``L_G = (L_G(clean) + L_G(G.body(h + delta))) / 2``.
  The BigGAN code feeds the perturbed fakes to D without DiffAugment (``advaug_g_augment: false``).

``advaug_steps`` 1 and ``advaug_gamma`` 0.01 are the paper's text ("PGD-1 and step size 0.01") and
``SNGAN/cfg.py``'s defaults; the released BigGAN entry point defaults to ``--steps 0`` (``main_ompg.py``)
and README.md passes only ``--gamma 0.01``, which makes the perturbed term the clean one again. The
BigGAN recipes follow the command (``advaug_steps: 0``); one step is their opt-in variant.

**Composition** (Stage II; Table 4's rows): ``lottery.ada`` trains the ticket with StyleGAN2-ADA's
adaptive augmentation instead of DiffAugment (as method ``ada``; StyleGAN2 objective only), and
``lottery.lecam`` adds the LeCam regularizer (as method ``lecam``, :class:`~.lecam.LeCamAnchors`) to
the clean D loss; both are null by default and in Stage I.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from degan_bench.augment.diffaugment import parse_policy
from degan_bench.core.fileio import atomic_write_bytes
from degan_bench.errors import MethodError
from degan_bench.methods import register_method
from degan_bench.methods.ada import AdaAugmentation, AdaConfig
from degan_bench.methods.base import DStep, GStep, Method, MethodContext
from degan_bench.methods.diffaugment import DiffAugmentation
from degan_bench.methods.lecam import LeCamAnchors, LeCamConfig
from degan_bench.methods.pruning import Masks, apply_masks, conv_weights, full_masks, prune_global
from degan_bench.schema import param

ARTIFACTS = "lottery"
#: Stage II options that compose other methods; null in Stage I
COMPOSED = ("ada", "lecam")
INIT_FILE = "init.pt"
MASK_FILE = "mask.pt"


@dataclass
class LotteryConfig:
    stage: Literal["find", "train"] = param(
        "find", help="'find': one IMP round (Stage I); 'train': train the ticket of `round` (Stage II)"
    )
    round: int = param(
        0, help="IMP round: the run trains with (1 - prune_ratio)^round of the prunable weights", min=0
    )
    prune_ratio: float = param(
        0.2, help="fraction of the remaining weights pruned per round", min=0.0, max=1.0
    )
    prune_scope: Literal["g_conv", "g_and_d_conv"] = param(
        "g_conv",
        help="'g_conv': G's conv kernels, D rewound dense (released code); 'g_and_d_conv': G and D "
        "(paper Algorithm 1)",
    )
    prune_rule: Literal["torch_l1", "studiogan_threshold", "torch_l1_of_total", "random"] = param(
        "torch_l1",
        help="'torch_l1': torch global_unstructured L1, round(ratio x remaining) (SNGAN code); "
        "'studiogan_threshold': |w| > sorted[zeros + int(ratio x nonzero)] (BigGAN code); "
        "'torch_l1_of_total': L1, round(ratio x all prunable weights) per round (Table A9); 'random': "
        "round(ratio x remaining) at random (RandomUnstructured, the random-pruning baseline)",
    )
    policy: str = param("none", help="Stage II DiffAugment policy, e.g. color,translation,cutout, or none")
    advaug: Literal["none", "gd", "g", "d"] = param(
        "none", help="Stage II feature-level adversarial augmentation on G and D, G only, D only, or none"
    )
    advaug_steps: int = param(
        1,
        help="PGD steps (the paper's text and SNGAN: 1; BigGAN main_ompg.py default: 0 = no perturbation)",
        min=0,
    )
    advaug_gamma: float = param(0.01, help="PGD step size on the features (sign-gradient)", min=0.0)
    advaug_d_score: Literal["mean_logit", "hinge_real"] = param(
        "mean_logit",
        help="what D-side PGD ascends: mean D logit (SNGAN code) or -hinge_real for reals and fakes "
        "(BigGAN code)",
    )
    advaug_g_augment: bool = param(
        False, help="DiffAugment the perturbed fakes of the G step (BigGAN code: no)"
    )
    ticket_mask: Literal["g", "g_ema"] = param(
        "g",
        help="Stage II: which IMP chain the ticket takes its G mask from: 'g' = the masks the online G was "
        "pruned with (BigGAN code); 'g_ema' = the averaged generator's own chain, pruned each round on "
        "G_ema's weights (SNGAN code: avg_gen_state_dict's weight_mask). Stage I keeps both",
    )
    ada: AdaConfig | None = param(
        None, help="Stage II ADA on every D input instead of DiffAugment (Table 4 '+ ADA'); {} = defaults"
    )
    lecam: LeCamConfig | None = param(
        None, help="Stage II LeCam regularizer (Table 4 '+ R_LC'), e.g. {weight: 1.0e-6}; null = none"
    )

    def check(self) -> None:
        if not 0.0 < self.prune_ratio < 1.0:
            raise ValueError(f"prune_ratio must lie in (0, 1), got {self.prune_ratio}")
        if self.policy != "none":
            parse_policy(self.policy)
        if self.ada is not None and self.policy != "none":
            raise ValueError("lottery.ada and lottery.policy both augment D's inputs; set policy=none")
        composed = any(getattr(self, name) is not None for name in COMPOSED)
        if self.stage == "find" and (self.policy != "none" or self.advaug != "none" or composed):
            raise ValueError(
                "stage 'find' (IMP) trains without augmentation; set lottery.policy=none and "
                "lottery.advaug=none (augmentation belongs to stage 'train')"
            )


def find_section(section: dict[str, Any], round_: int) -> dict[str, Any]:
    """The ``lottery:`` section of the Stage I run of ``round_`` in the chain of ``section``."""
    composed = {name: None for name in COMPOSED if section.get(name) is not None}
    return {**section, "stage": "find", "round": round_, "policy": "none", "advaug": "none", **composed}


def find_overrides(round_: int, config: LotteryConfig | None = None) -> list[str]:
    """The ``--set`` overrides that turn any run of a chain (of ``config``) into its Stage I run of
    ``round_``."""
    composed = [f"lottery.{name}=null" for name in COMPOSED if getattr(config, name, None) is not None]
    return ["lottery.stage=find", f"lottery.round={round_}", "lottery.policy=none", "lottery.advaug=none",
            *composed]  # fmt: skip


def perturb(h: torch.Tensor, score: Any, steps: int, gamma: float) -> torch.Tensor:
    """``h + delta`` after ``steps`` ascent steps ``delta += gamma * sign(grad_x score(x))`` at
    ``x = h + delta`` (PGD without random start or projection, as both official ``PGD`` functions run
    it). ``delta`` is a constant: gradients reach whatever produced ``h`` unchanged."""
    delta = torch.zeros_like(h).detach()
    for _ in range(steps):
        x = (h.detach() + delta).requires_grad_(True)
        (grad,) = torch.autograd.grad(score(x), x)
        delta = delta + gamma * grad.sign()
    return h + delta


def averaged_weights(
    g_ema: dict[str, torch.Tensor], g_masks: Masks, init: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The official averaged generator's kernels from ours: G_ema where G's mask keeps a weight, the
    initial weight where it pruned it (``gen_avg_param`` averages G's unmasked ``weight_orig``, which a
    pruned entry leaves at its rewound initial value; our G_ema holds a zero there)."""
    return {k: torch.where(g_masks[k].to(g_ema[k].device), g_ema[k], init[k].to(g_ema[k])) for k in g_masks}


def _save(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def locate_run(runs_root: Path, recipe: dict[str, Any], seed: int) -> Path | None:
    """The run directory under ``runs_root`` made with ``recipe`` (by hash) and ``seed`` that holds a
    lottery mask, a complete one first (a failed attempt elsewhere may share the hash), else None."""
    from degan_bench.recipes.loader import canonical_hash

    want = canonical_hash(recipe)
    found: list[tuple[bool, Path]] = []
    for path in sorted(runs_root.iterdir()) if runs_root.is_dir() else []:
        info = path / "run.json"
        if not info.is_file() or not (path / ARTIFACTS / MASK_FILE).is_file():
            continue
        try:
            data = json.loads(info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("recipe_hash") == want and data.get("seed") == seed:
            found.append((data.get("status") != "complete", path))
    return min(found)[1] if found else None


@register_method
class LotteryMethod(Method):
    name = "lottery"
    Config = LotteryConfig
    summary = (
        "lottery-ticket GAN: IMP on the small set, then the sparse ticket + DiffAugment/AdvAug (Chen 2021)"
    )

    @classmethod
    def prerequisites(cls, config: LotteryConfig) -> list[list[str]]:
        # A ticket of round r copies round r's mask (written when that IMP run starts); the sweep waits
        # for it to be complete, since the unaugmented round-r run is the plain "GAN ticket" too. IMP
        # round k prunes round k - 1's final G, so it needs that run complete.
        if config.stage == "train":
            return [find_overrides(config.round, config)]
        return [find_overrides(config.round - 1, config)] if config.round > 0 else []

    def __init__(self, config: LotteryConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        self.policy = DiffAugmentation(config.policy if config.policy != "none" else "")
        self.adv_d = config.advaug in ("gd", "d")
        self.adv_g = config.advaug in ("gd", "g")
        if self.adv_g and ctx.objective != "hinge":
            raise MethodError(
                f"lottery.advaug={config.advaug} perturbs G's first-layer output, which needs the hinge "
                f"objective's G.stem/G.body split; loss.kind is {ctx.objective!r}",
                fix="use lottery.advaug=d on this backbone",
            )
        if self.adv_g and not (hasattr(ctx.G, "stem") and hasattr(ctx.G, "body")):
            raise MethodError(
                "lottery.advaug on G needs a generator with stem() and body()", fix="use advaug=d"
            )
        self._stem: tuple[torch.Tensor, Any] | None = None
        self.ada = self._ada(config.ada, ctx)
        self.lecam = (
            LeCamAnchors(config.lecam, ctx.objective, ctx.device) if config.lecam is not None else None
        )
        self.g_names = list(conv_weights(ctx.G))
        self.d_names = list(conv_weights(ctx.D)) if config.prune_scope == "g_and_d_conv" else []
        init, masks = self._ticket()
        try:
            ctx.G.load_state_dict(init["G"])
            ctx.G_ema.load_state_dict(init["G"])
            ctx.D.load_state_dict(init["D"])
        except RuntimeError as err:
            raise MethodError(
                f"the lottery init snapshot does not fit this model ({str(err).splitlines()[0]})",
                fix="every run of a ticket chain must use the same model config",
            ) from None
        self.g_masks: Masks = {k: v.to(ctx.device) for k, v in masks["G"].items()}
        self.d_masks: Masks = {k: v.to(ctx.device) for k, v in masks.get("D", {}).items()}
        if list(self.g_masks) != self.g_names or list(self.d_masks) != self.d_names:
            raise MethodError(
                "the lottery mask names other tensors than this model's prunable kernels",
                fix="every run of a ticket chain must use the same model config and prune_scope",
            )
        for module, m in ((ctx.G, self.g_masks), (ctx.G_ema, self.g_masks), (ctx.D, self.d_masks)):
            apply_masks(module, m)

    # -- the ticket: init snapshot and masks ------------------------------------------------------
    def _ticket(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(init, masks) from this run's own artifacts when they exist (a resumed run), else derived
        from the chain, then written as this run's artifacts."""
        run_dir = self.ctx.run_dir
        own = run_dir / ARTIFACTS if run_dir is not None else None
        if own is not None and (own / INIT_FILE).is_file() and (own / MASK_FILE).is_file():
            return _load(own / INIT_FILE), _load(own / MASK_FILE)
        init, masks = self._derive()
        if own is not None and self.ctx.rank == 0:
            own.mkdir(parents=True, exist_ok=True)
            _save(own / INIT_FILE, init)
            _save(own / MASK_FILE, masks)
        return init, masks

    def _derive(self) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg, ctx = self.config, self.ctx
        if cfg.stage == "find" and cfg.round == 0:
            init = {
                "G": {k: v.detach().cpu().clone() for k, v in ctx.G.state_dict().items()},
                "D": {k: v.detach().cpu().clone() for k, v in ctx.D.state_dict().items()},
            }
            g = full_masks({k: init["G"][k] for k in self.g_names})
            d = full_masks({k: init["D"][k] for k in self.d_names})
            return init, {"round": 0, "G": g, "G_ema": dict(g), "D": d, "source": None}
        if cfg.stage == "train":
            source = self._chain_run(cfg.round, need_complete=False)
            masks = _load(source / ARTIFACTS / MASK_FILE)
            if cfg.ticket_mask == "g_ema":
                if "G_ema" not in masks:
                    raise MethodError(
                        f"the IMP run {source.name} keeps no G_ema mask chain (made before it was kept)",
                        fix="rerun the chain's Stage I rounds, or set lottery.ticket_mask=g",
                    )
                masks = {**masks, "G": masks["G_ema"]}
            return _load(source / ARTIFACTS / INIT_FILE), {
                **masks,
                "ticket_mask": cfg.ticket_mask,
                "source": source.name,
            }
        previous = self._chain_run(cfg.round - 1, need_complete=True)
        from degan_bench.core.checkpoint import list_checkpoints, load_checkpoint

        last = list_checkpoints(previous).get("last")
        if last is None:
            raise MethodError(f"IMP round {cfg.round - 1} ({previous}) has no checkpoint to prune from")
        trained = load_checkpoint(last)
        prev = _load(previous / ARTIFACTS / MASK_FILE)
        g = prune_global(
            {k: trained["G"][k] for k in self.g_names}, prev["G"], cfg.prune_ratio, cfg.prune_rule
        )
        d = (
            prune_global(
                {k: trained["D"][k] for k in self.d_names}, prev["D"], cfg.prune_ratio, cfg.prune_rule
            )
            if self.d_names
            else {}
        )
        init = _load(previous / ARTIFACTS / INIT_FILE)
        chains = {"round": cfg.round, "G": g, "D": d, "source": previous.name}
        if "G_ema" in prev:  # the averaged generator's chain, pruned on its own weights
            weights = averaged_weights({k: trained["G_ema"][k] for k in self.g_names}, prev["G"], init["G"])
            chains["G_ema"] = prune_global(weights, prev["G_ema"], cfg.prune_ratio, cfg.prune_rule)
        return init, chains

    def _chain_run(self, round_: int, *, need_complete: bool) -> Path:
        """The Stage I run of ``round_`` of this run's chain (same recipe otherwise, same seed)."""
        import yaml

        ctx, cfg = self.ctx, self.config
        if ctx.run_dir is None or not (ctx.run_dir / "recipe.yaml").is_file():
            raise MethodError(
                f"lottery stage {cfg.stage} round {cfg.round} reads an earlier run's ticket, but this run "
                "has no run directory",
                fix="start it with `degan-bench run` or `degan-bench sweep`",
            )
        recipe = yaml.safe_load((ctx.run_dir / "recipe.yaml").read_text(encoding="utf-8"))
        wanted = {**recipe, self.name: find_section(recipe[self.name], round_)}
        found = locate_run(ctx.run_dir.parent, wanted, ctx.seed)
        what = f"the IMP run of round {round_} (lottery.stage=find, lottery.round={round_}, seed {ctx.seed})"
        if found is None:
            raise MethodError(
                f"lottery stage {cfg.stage} round {cfg.round} needs {what} next to {ctx.run_dir.name}; "
                "none found",
                fix="train the chain in order: `degan-bench sweep` orders the rounds, or run "
                f"`degan-bench run lottery {recipe['dataset']} --set lottery.stage=find "
                f"--set lottery.round={round_} ...` first",
            )
        if need_complete:
            status = json.loads((found / "run.json").read_text(encoding="utf-8")).get("status")
            if status != "complete":
                raise MethodError(
                    f"{what} ({found.name}) is {status}, not complete: its final G decides the next mask",
                    fix=f"finish it first: `degan-bench run ... --resume {found}`",
                )
        return found

    @staticmethod
    def _ada(config: AdaConfig | None, ctx: MethodContext) -> AdaAugmentation | None:
        if config is None:
            return None
        if ctx.objective != "ns_r1":
            raise MethodError(
                f"lottery.ada is StyleGAN2-ADA's pipe and p heuristic; loss.kind is {ctx.objective!r}",
                fix="use lottery.policy (DiffAugment) on this backbone",
            )
        return AdaAugmentation(config, ctx)

    # -- augmentation and losses -------------------------------------------------------------------
    def augment(self, images: torch.Tensor) -> torch.Tensor:
        if self.ada is not None:
            return self.ada(images)
        return self.policy(images)

    def generate(self, G: nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if not self.adv_g:
            return G(z, c)
        h, cond = G.stem(z, c)  # type: ignore[operator]
        self._stem = (h, cond)
        return G.body(h, cond)  # type: ignore[operator]

    def clean_loss_weight(self, phase: str) -> float:
        return 0.5 if (phase == "D" and self.adv_d) or (phase == "G" and self.adv_g) else 1.0

    def _perturb(self, h: torch.Tensor, score: Any) -> torch.Tensor:
        return perturb(h, score, self.config.advaug_steps, self.config.advaug_gamma)

    def _adv_losses(self, logits_real: torch.Tensor | None, logits_fake: torch.Tensor) -> torch.Tensor:
        if self.ctx.objective == "hinge":
            loss = F.relu(1.0 + logits_fake.float()).mean()
            return loss if logits_real is None else loss + F.relu(1.0 - logits_real.float()).mean()
        loss = F.softplus(logits_fake.float()).mean()
        return loss if logits_real is None else loss + F.softplus(-logits_real.float()).mean()

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        terms = self._lecam_terms(step)
        if not self.adv_d or step.phase != "main":
            return terms
        D = step.D
        assert step.fakes_aug is not None
        hinge_score = self.config.advaug_d_score == "hinge_real"

        def adv_logits(images: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
            def score(x: torch.Tensor) -> torch.Tensor:
                out = D.head(x, c).float()  # type: ignore[operator]
                return -F.relu(1.0 - out).mean() if hinge_score else out.mean()

            with self.ctx.autocast():
                h = D.trunk(images)  # type: ignore[operator]
                return D.head(self._perturb(h, score), c)  # type: ignore[operator]

        real = adv_logits(step.reals_aug, step.real_c)
        fake = adv_logits(step.fakes_aug, step.c)
        return {**terms, "advaug": 0.5 * self._adv_losses(real, fake)}

    def _lecam_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        """LeCam on the clean logits of the main D step (``lottery.lecam``)."""
        if self.lecam is None or self.config.lecam is None or step.phase != "main":
            return {}
        assert step.fake_logits is not None
        penalty = self.lecam.penalty(step.real_logits, step.fake_logits)
        return {} if penalty is None else {"lecam": penalty * self.config.lecam.weight}

    def g_loss_terms(self, step: GStep) -> dict[str, torch.Tensor]:
        if not self.adv_g:
            return {}
        if self._stem is None:
            raise MethodError("lottery AdvAug: the G step did not go through generate()")
        (h, cond), self._stem = self._stem, None
        G, D = step.G, step.D

        def score(x: torch.Tensor) -> torch.Tensor:
            return D(G.body(x, cond), step.c).float().mean()  # type: ignore[operator]

        with self.ctx.autocast():
            fakes_adv = G.body(self._perturb(h, score), cond)  # type: ignore[operator]
            if self.config.advaug_g_augment:
                fakes_adv = self.augment(fakes_adv)
            logits = D(fakes_adv, step.c)
        loss = -logits.float().mean() if self.ctx.objective == "hinge" else F.softplus(-logits.float()).mean()
        return {"advaug": 0.5 * loss}

    # -- the fixed mask ----------------------------------------------------------------------------
    def after_optimizer_step(self, phase: str, steps: list[GStep | DStep]) -> None:
        if phase.startswith("G"):
            apply_masks(self.ctx.G, self.g_masks)
        elif self.d_masks:
            apply_masks(self.ctx.D, self.d_masks)
        if self.ada is not None:  # ADA's sign statistics, every D step (as method 'ada')
            self.ada.observe(steps)

    def end_of_minibatch(self, cur_nimg: int, minibatch_index: int) -> None:
        apply_masks(self.ctx.G_ema, self.g_masks)  # after the objective's G_ema update
        if self.ada is not None:
            self.ada.end_of_minibatch(cur_nimg)
        if self.lecam is not None:
            self.lecam.end_of_minibatch(minibatch_index)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"round": self.config.round, "G": self.g_masks, "D": self.d_masks}
        if self.ada is not None:
            state["ada"] = self.ada.state_dict()
        if self.lecam is not None:
            state["lecam"] = self.lecam.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        same = state.get("round") == self.config.round and all(
            set(state.get(k, {})) == set(ours)
            and all(torch.equal(state[k][n].cpu(), ours[n].cpu()) for n in ours)
            for k, ours in (("G", self.g_masks), ("D", self.d_masks))
        )
        if not same:
            raise MethodError(
                "the checkpoint's lottery masks differ from this run's lottery/mask.pt",
                fix="restore the run directory's lottery/ artifacts, or start the round again",
            )
        if self.ada is not None:
            self.ada.load_state_dict(state["ada"])
        if self.lecam is not None:
            self.lecam.load_state_dict(state["lecam"])

    def tick_stats(self) -> dict[str, float]:
        remaining = sum(int(m.sum()) for m in self.g_masks.values())
        total = sum(m.numel() for m in self.g_masks.values())
        stats = {"g_remaining": remaining / max(total, 1)}
        if self.ada is not None:
            stats["augment_p"] = self.ada.pipe.p
        return stats
