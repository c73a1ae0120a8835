"""MoCo-style instance discrimination on D's features, shared by InsGen and FakeCLR.

Both methods (genforce/insgen @ 52bda7c, iceli1007/FakeCLR @ d8f0735) train StyleGAN2-ADA with extra
InfoNCE terms on D's pooled 4x4 trunk features:

- a query ``q = head(D(A(x)))`` (gradients reach D, the head, and G when x is a fake in the G step),
- a positive key ``k = momentum_head(D_ema(A(x')))`` without gradient, where ``x'`` is a second view
  (another ADA draw of x, or of a perturbed fake),
- negatives from a FIFO queue of past keys: ``loss = CE([q.k, q.queue] / tau, 0)``.

The pieces:

- :class:`ProjectionHead`: Linear(F, F) - ReLU - Linear(F, 128), L2-normalised, and its momentum copy
  (the key encoder), updated ``m * key + (1 - m) * query`` at every contrastive forward, before the
  keys are computed (insgen ``contrastive_head.py:40-46,146``);
- :func:`momentum_update`: that arithmetic, also used once per minibatch for ``D_ema``
  (insgen ``training_loop.py:306-310``);
- :class:`KeyQueue`: the FIFO ring buffer of keys, with the minibatch index every key entered at (its
  age, for FakeCLR's forgetting factor); ``push`` follows ``_dequeue_and_enqueue``
  (``contrastive_head.py:48-65``), including the overwrite when a push is larger than the queue;
- :func:`info_nce`; :func:`gather_from_processes`, the all-gather of keys before they are queued, which
  is the identity without ``torch.distributed`` (the official ``concat_all_gather`` needs it, so the
  released code cannot run on one GPU);
- :func:`generate_with_style_mixing`: the official ``run_G`` on a perturbed latent (own style-mixing
  draw, w_avg updated);
- :class:`ContrastiveMethod`: the common method body. ADA (:class:`~degan_bench.methods.ada.AdaAugmentation`)
  augments every D input and every contrastive view; ``D_ema`` (a momentum copy of D, in eval mode, fed
  augmented images) embeds the key views; each head has its own Adam with the settings of the network
  whose phase it trains with (lr and betas rescaled by the lazy-regularization ratio, insgen
  ``training_loop.py:240-251``); heads are frozen in the G step and stepped once after each D step.

Layout: the official runs use one accumulation round per GPU (paper256: 8 GPUs x 8), so each head's
momentum copy is updated once per phase and the keys of a phase are queued once, all GPUs' keys
together in rank order. We keep those semantics for any layout: the momentum update runs in the first
round of a phase only, and the keys of every round are queued when the phase ends, gathered over
processes, in the order of the chunks of the global batch. One process with N rounds therefore trains
like N processes with one round each (and resume with another process count is exact).

Differences from the official code that do not change the objective: the head optimizer steps once per
D phase on the gradients of all accumulation rounds (the official one steps after every round; the same
when ``batch_gpu`` is the per-GPU batch, as in the official configs); DDP's batch shuffle of the
momentum MLP input is dropped (it permutes and un-permutes, and there is no BatchNorm to affect);
``D_ema`` is updated at the end of every minibatch instead of at the start of the next one (the same
sequence of values). With ``query_view: adversarial`` the query reuses the features of the adversarial
D pass instead of a fresh ADA view (one D forward/backward less per term, same expected gradient; not
the official computation).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from degan_bench.core.distributed import average_gradients, is_active
from degan_bench.errors import MethodError
from degan_bench.methods.ada import AdaAugmentation, AdaConfig
from degan_bench.methods.base import DStep, GStep, Method, MethodContext
from degan_bench.recipes.schema import LossConfig, TrainingConfig
from degan_bench.schema import param

# -- building blocks -------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    """``mlp``: features -> L2-normalised queries; ``momentum_mlp``: its momentum copy for keys."""

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))
        self.momentum_mlp = copy.deepcopy(self.mlp).requires_grad_(False)

    def query(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(features.float()), dim=1)

    @torch.no_grad()
    def key(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.momentum_mlp(features.float()), dim=1)

    def update_momentum(self, momentum: float) -> None:
        momentum_update(self.momentum_mlp, self.mlp, momentum)

    def set_trainable(self, trainable: bool) -> None:
        self.mlp.requires_grad_(trainable)


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * source`` on the parameters (buffers untouched)."""
    target_params = [p.data for p in target.parameters()]
    source_params = [p.data for p in source.parameters()]
    if len(target_params) != len(source_params):
        raise ValueError("momentum_update needs two modules with the same parameters")
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, source_params, alpha=1.0 - momentum)


class KeyQueue:
    """FIFO ring buffer of ``capacity`` keys ``[capacity, dim]`` (float32, L2-normalised).

    Starts with random unit vectors (as MoCo/InsGen), whose entry step is -1. ``push(keys, step)`` writes
    at the pointer and wraps around; a push of ``capacity`` keys or more overwrites the whole queue with
    the first ``capacity`` of them and leaves the pointer (the official behaviour).
    """

    def __init__(self, capacity: int, dim: int, device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.keys = F.normalize(torch.randn(capacity, dim, device=device), dim=1)
        self.steps = torch.full((capacity,), -1, dtype=torch.int64, device=device)
        self.ptr = 0

    @torch.no_grad()
    def push(self, keys: torch.Tensor, step: int) -> None:
        keys = keys.detach().to(self.keys.dtype)
        n, size, ptr = keys.shape[0], self.capacity, self.ptr
        if n >= size:
            self.keys.copy_(keys[:size])
            self.steps.fill_(step)
            return
        first = min(n, size - ptr)
        self.keys[ptr : ptr + first] = keys[:first]
        self.keys[: n - first] = keys[first:]
        self.steps[ptr : ptr + first] = step
        self.steps[: n - first] = step
        self.ptr = (ptr + n) % size

    def recency(self) -> torch.Tensor:
        """Per slot, how many keys entered after it: 0 for the newest, ``capacity - 1`` for the oldest."""
        slots = torch.arange(self.capacity, device=self.keys.device)
        return (self.ptr - 1 - slots) % self.capacity

    def state_dict(self) -> dict[str, Any]:
        return {"keys": self.keys.clone(), "steps": self.steps.clone(), "ptr": self.ptr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys, steps = state["keys"], state["steps"]
        if tuple(keys.shape) != tuple(self.keys.shape) or tuple(steps.shape) != tuple(self.steps.shape):
            raise ValueError(
                f"queue of shape {tuple(self.keys.shape)} cannot load one of shape {tuple(keys.shape)}"
            )
        self.keys.copy_(keys)
        self.steps.copy_(steps)
        self.ptr = int(state["ptr"])


def info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    negative_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of ``-log softmax([q.k+, q.n_1 + b_1, ..., q.n_K + b_K] / tau)[0]``.

    ``negative_bias`` [K] is added to the negatives' similarities before the temperature (FakeCLR's
    forgetting factor); ``-inf`` leaves a negative out.
    """
    positive_logits = (query * positive).sum(dim=1, keepdim=True)
    negative_logits = query @ negatives.t()
    if negative_bias is not None:
        negative_logits = negative_logits + negative_bias
    logits = torch.cat([positive_logits, negative_logits], dim=1) / temperature
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, target)


@torch.no_grad()
def gather_from_processes(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` over all processes (rank order); the tensor itself in a single process."""
    if not is_active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def broadcast_from_first_process(tensors: Iterable[torch.Tensor]) -> None:
    """Make every process start from rank 0's values (what DDP does to the official heads)."""
    if is_active():
        for tensor in tensors:
            torch.distributed.broadcast(tensor, src=0)


def generate_with_style_mixing(
    G: nn.Module, z: torch.Tensor, c: torch.Tensor, mixing_prob: float
) -> torch.Tensor:
    """``G(z)`` as a training pass makes it: w_avg updated, and with probability ``mixing_prob`` the ws
    from a random cutoff on replaced by those of a fresh latent (the official ``run_G``)."""
    ws = G.mapping(z, c, update_w_avg=True)
    num_ws = ws.shape[1]
    # Both draws every time, so the random stream does not depend on the outcome.
    cutoff = int(torch.randint(1, num_ws, [], device="cpu")) if num_ws > 1 else num_ws
    if float(torch.rand([])) < mixing_prob and num_ws > 1:
        ws_mix = G.mapping(torch.randn_like(z), c, update_w_avg=False)
        ws = torch.cat([ws[:, :cutoff], ws_mix[:, cutoff:]], dim=1)
    return G.synthesis(ws)


def default_queue_size(num_images: int, mirror: str) -> int:
    """The official queue size: ``int(0.05 * N)`` images of the dataset, doubled with x-flips
    (insgen ``train.py:380-385``). ``num_images`` counts D's epoch, i.e. already doubled by
    ``mirror: double``."""
    doubled = mirror == "double"
    raw = num_images // 2 if doubled else num_images
    return int(0.05 * raw) * (2 if doubled else 1)


# -- the common method body ------------------------------------------------------------------------


@dataclass
class ContrastiveConfig:
    """Options shared by InsGen and FakeCLR."""

    ada: AdaConfig = param(
        default_factory=AdaConfig,
        help="the ADA pipe and its p schedule; it augments every D input and every contrastive view",
    )
    temperature: float = param(0.2, help="InfoNCE temperature (official 0.2)", min=1e-4)
    momentum: float = param(
        0.999,
        help="momentum of the key heads and of the momentum discriminator D_ema (official 0.999)",
        min=0.0,
        max=1.0,
    )
    projection_dim: int = param(128, help="output size of the projection heads (official 128)", min=1)
    fake_weight: float = param(
        1.0, help="weight of the D-side fake-instance term (official lw_fake_cl 1.0)", min=0.0
    )
    fake_weight_on_g: float = param(
        0.1,
        help="weight of the G-side fake-instance term (official lw_fake_cl_on_g 0.1; 0 = --no_cl_on_g)",
        min=0.0,
    )
    query_view: Literal["fresh", "adversarial"] = param(
        "fresh",
        help="'fresh': the query is a new ADA view through D (official); 'adversarial': reuse the features "
        "of the adversarial D pass (one D forward/backward less per term, same expected gradient)",
    )


class ContrastiveMethod(Method):
    """StyleGAN2-ADA plus MoCo-style heads on D's features and the G-side fake-instance term; subclasses
    add their D-side terms."""

    needs_d_features = True
    objectives = ("ns_r1",)  # heads and their lazy-ratio Adam follow StyleGAN2-ADA's phases

    def __init__(self, config: ContrastiveConfig, ctx: MethodContext) -> None:
        super().__init__(config, ctx)
        recipe = ctx.recipe
        perf_amp = recipe.performance.amp if recipe is not None else "off"
        if perf_amp == "fp16" and ctx.device.type == "cuda":
            raise MethodError(
                f"{self.name} steps its projection heads with its own optimizer, which the loop's fp16 "
                "GradScaler does not unscale",
                fix="use --set performance.amp=bf16 (or off)",
            )
        self._autocast_dtype = torch.bfloat16 if perf_amp == "bf16" and ctx.device.type == "cuda" else None
        feature_dim = getattr(ctx.D, "feature_dim", None)
        if not isinstance(feature_dim, int):
            raise MethodError(
                f"{self.name} needs a discriminator that reports its feature size (D.feature_dim)",
                fix="use model.arch=stylegan2",
            )
        self.feature_dim = feature_dim
        self.loss_cfg = recipe.loss if recipe is not None else LossConfig()
        self.eps = recipe.training.eps if recipe is not None else TrainingConfig().eps
        self.mirror = recipe.data.mirror if recipe is not None else "none"
        self.ada = AdaAugmentation(config.ada, ctx)
        self.D_ema = copy.deepcopy(ctx.D).eval().requires_grad_(False)
        self.heads: dict[str, ProjectionHead] = {}
        self.head_optimizers: dict[str, torch.optim.Adam] = {}
        self.queues: dict[str, KeyQueue] = {}
        self._heads_have_grads = False
        # keys of this phase's rounds, queued at its end; heads whose momentum copy moved in this phase
        self._pending: dict[str, list[tuple[torch.Tensor, int]]] = {}
        self._momentum_moved: set[str] = set()

    # -- construction helpers ----------------------------------------------------------------------
    def queue_size(self, override: int | None, option: str) -> int:
        size = override if override is not None else default_queue_size(self.ctx.num_images, self.mirror)
        if size < 1:
            raise MethodError(
                f"{self.name}: the default queue size int(0.05 * N) is 0 for {self.ctx.num_images} images",
                fix=f"set {self.name}.{option} to a positive size",
            )
        return size

    def add_head(self, name: str, queue_size: int, trains_with: Literal["G", "D"]) -> None:
        """A head, its queue and its Adam (lr, betas and eps of the G or D optimizer, lazy ratio included)."""
        head = ProjectionHead(self.feature_dim, self.config.projection_dim).to(self.ctx.device)
        queue = KeyQueue(queue_size, self.config.projection_dim, self.ctx.device)
        broadcast_from_first_process([*head.state_dict().values(), queue.keys])
        if trains_with == "G":
            lr, interval, lazy = self.ctx.g_lr, self.loss_cfg.pl_interval, self.loss_cfg.pl_weight > 0
        else:
            lr, interval, lazy = self.ctx.d_lr, self.loss_cfg.r1_interval, self.loss_cfg.r1_gamma > 0
        ratio = interval / (interval + 1) if lazy and interval > 1 else 1.0
        betas = (self.ctx.betas[0] ** ratio, self.ctx.betas[1] ** ratio)
        self.heads[name] = head
        self.queues[name] = queue
        self.head_optimizers[name] = torch.optim.Adam(
            head.mlp.parameters(), lr=lr * ratio, betas=betas, eps=self.eps
        )

    # -- the contrastive pass ----------------------------------------------------------------------
    def _autocast(self) -> Any:
        """The loop's autocast for the method's own G and D passes (bf16 on CUDA, else nothing)."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self._autocast_dtype)

    def features(self, net: nn.Module, images: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            _logits, features = net(images, c, return_features=True)
        return features.float()

    def query_features(
        self, D: nn.Module, images: torch.Tensor, c: torch.Tensor, adversarial_features: torch.Tensor | None
    ) -> torch.Tensor:
        """D's features of the query view: a fresh ADA view (official) or the adversarial pass's."""
        if self.config.query_view == "adversarial" and adversarial_features is not None:
            return adversarial_features.float()
        return self.features(D, self.ada(images), c)

    def contrastive_loss(
        self,
        head_name: str,
        query_features: torch.Tensor,
        key_images: torch.Tensor,
        c: torch.Tensor,
        minibatch: int,
        enqueue: Literal["none", "keys", "queries"],
    ) -> torch.Tensor:
        """InfoNCE of one head; optionally queue the keys of this pass (gathered over processes)."""
        head = self.heads[head_name]
        query = head.query(query_features)
        if head_name not in self._momentum_moved:  # once per phase, like one forward per GPU officially
            head.update_momentum(self.config.momentum)
            self._momentum_moved.add(head_name)
        with torch.no_grad():
            keys = head.key(self.features(self.D_ema, self.ada(key_images.detach()), c))
        negatives, bias = self.negatives(head_name, minibatch)
        # A copy: the push below changes the queue in place, and backward needs the values used here.
        loss = info_nce(query, keys, negatives.clone(), self.config.temperature, bias)
        if enqueue != "none":
            queued = keys if enqueue == "keys" else head.key(query_features.detach())
            self._pending.setdefault(head_name, []).append((queued.detach(), minibatch))
        return loss

    def negatives(self, head_name: str, minibatch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The queue entries the loss contrasts against, and a bias on their similarities."""
        return self.queues[head_name].keys, None

    def push(self, head_name: str, keys: torch.Tensor, minibatch: int) -> None:
        """Queue ``keys`` of every process now (gathered in rank order)."""
        gathered = gather_from_processes(keys)
        self.queues[head_name].push(gathered, minibatch)
        self.observe_queued(head_name, gathered)

    def flush_pending(self) -> None:
        """Queue the keys of every round of the phase that ends: this process's rounds in order, gathered
        over processes in rank order, i.e. the chunk order of the global batch, in one push per head."""
        for head_name, items in self._pending.items():
            self.push(head_name, torch.cat([keys for keys, _ in items]), items[0][1])
        self._pending.clear()
        self._momentum_moved.clear()

    def observe_queued(self, head_name: str, keys: torch.Tensor) -> None:
        """Called with every batch of keys (all processes') just queued."""

    def set_heads_trainable(self, trainable: bool) -> None:
        for head in self.heads.values():
            head.set_trainable(trainable)

    def minibatch_index(self, cur_nimg: int) -> int:
        """The official ``batch_idx``: minibatches completed before the current one."""
        return cur_nimg // self.ctx.batch

    # -- hooks ---------------------------------------------------------------------------------------
    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.ada(images)

    def g_loss_terms(self, step: GStep) -> dict[str, torch.Tensor]:
        """The G-side fake-instance term: two ADA views of the G-step fakes, nothing queued. Heads and D
        are frozen (the loop freezes D); gradients reach G through D and the head."""
        self.set_heads_trainable(False)
        if self.config.fake_weight_on_g == 0:
            return {}
        query = self.query_features(step.D, step.fakes, step.c, step.fake_features)
        minibatch = self.minibatch_index(step.cur_nimg)
        loss = self.contrastive_loss("fake", query, step.fakes, step.c, minibatch, enqueue="none")
        return {"fake_cl_on_g": self.config.fake_weight_on_g * loss}

    def fake_instance_loss(
        self, step: DStep, delta: torch.Tensor, enqueue: Literal["keys", "queries"]
    ) -> torch.Tensor:
        """The D-side fake-instance InfoNCE: query D(A(G(z))), key D_ema(A(G(z + delta)))."""
        assert step.fakes is not None and step.c is not None and step.z is not None
        with torch.no_grad(), self._autocast():
            mixing = self.loss_cfg.style_mixing_prob
            perturbed = generate_with_style_mixing(step.G, step.z + delta, step.c, mixing)
        query = self.query_features(step.D, step.fakes, step.c, step.fake_features)
        minibatch = self.minibatch_index(step.cur_nimg)
        return self.contrastive_loss("fake", query, perturbed, step.c, minibatch, enqueue)

    def d_loss_terms(self, step: DStep) -> dict[str, torch.Tensor]:
        self.set_heads_trainable(True)
        self._heads_have_grads = True
        return {}

    def after_optimizer_step(self, phase: str, steps: list[GStep | DStep]) -> None:
        self.flush_pending()
        self.ada.observe(steps)
        if phase == "D" and self._heads_have_grads:
            # One step on the gradients of all accumulation rounds of this D phase.
            for name, optimizer in self.head_optimizers.items():
                params = list(self.heads[name].mlp.parameters())
                average_gradients(params)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            self._heads_have_grads = False

    def end_of_minibatch(self, cur_nimg: int, minibatch_index: int) -> None:
        self.ada.end_of_minibatch(cur_nimg)
        momentum_update(self.D_ema, self.ctx.D, self.config.momentum)

    # -- state ---------------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"D_ema": self.D_ema, **{f"{name}_head": head for name, head in self.heads.items()}}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {f"{name}_head": opt for name, opt in self.head_optimizers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.ada.state_dict(),
            "queues": {name: queue.state_dict() for name, queue in self.queues.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ada.load_state_dict(state)
        if set(state["queues"]) != set(self.queues):
            held, wanted = sorted(state["queues"]), sorted(self.queues)
            raise ValueError(f"checkpoint holds queues {held}, {self.name} has {wanted}")
        for name, queue in self.queues.items():
            queue.load_state_dict(state["queues"][name])

    def tick_stats(self) -> dict[str, float]:
        return self.ada.tick_stats()
