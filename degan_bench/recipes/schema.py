"""The typed sections of a resolved recipe, with their defaults (the one place defaults live).

A recipe YAML maps onto :class:`Recipe`. Two sections are polymorphic:

- ``model``: validated by the config dataclass of ``model.arch`` (see :mod:`degan_bench.models`);
- the method section, named after ``method`` (e.g. ``diffaugment:``), validated by that method's
  ``Config`` dataclass (see :mod:`degan_bench.methods`). A method with no options has no section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from degan_bench.schema import param

Preset = Literal["paper", "short", "smoke"]
PRESETS: tuple[str, ...] = ("paper", "short", "smoke")


@dataclass
class Provenance:
    """Where a paper recipe comes from, and how we differ. Required for ``purpose: paper``."""

    paper: str = param(help="paper title, first author and year")
    arxiv: str = param(help="arXiv id, e.g. 2006.10738")
    table: str = param(help="table (and row/column) of the paper this recipe reproduces")
    upstream_repo: str = param(help="official repository, owner/name")
    upstream_commit: str = param(help="commit of the official repository the recipe mirrors")
    upstream_command: str = param(help="the official command line for this cell")
    deviations: list[str] = param(help="what we do differently from the official code, and why")
    arxiv_version: str | None = param(None, help="arXiv version the numbers come from, e.g. v4")
    notes: str | None = param(None, help="anything else a reader must know")


@dataclass
class DataConfig:
    resolution: int = param(256, help="training resolution; the dataset is prepared at it", min=8, max=1024)
    mirror: Literal["none", "random", "double"] = param(
        "random",
        help="x-flips: 'random' flips each real with p=0.5 per minibatch (TF StyleGAN2 mirror_augment); "
        "'double' adds a flipped copy of every image (stylegan2-ada --mirror)",
    )
    subset_rule: str | None = param(
        None,
        help="subset selection rule for subset datasets (cifar10-10pct, ffhq-1k); None = dataset default",
    )

    def check(self) -> None:
        if self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution {self.resolution} must be a power of two")


@dataclass
class LossConfig:
    kind: Literal["ns_r1", "hinge"] = param(
        "ns_r1",
        help="the objective: 'ns_r1' = StyleGAN2 (non-saturating logistic loss, R1, path length, lazy "
        "phases); 'hinge' = BigGAN (hinge loss, d_steps D steps per G step)",
    )
    d_steps: int = param(
        1, help="hinge: D steps per G step, each on its own minibatch of reals (BigGAN CIFAR: 4)", min=1
    )
    g_batch: int | None = param(
        None,
        help="hinge: fakes per G step (SNGAN --gen_batch_size 128 vs 64 reals per D step); None = "
        "training.batch",
        min=1,
    )
    g_after_d_step: int | None = param(
        None,
        help="hinge: the G step follows D step N of each minibatch (SNGAN: 1, its G steps come after D "
        "iterations 0, 5, 10, ...); None = after the last (BigGAN)",
        min=1,
    )
    d_forward: Literal["concat", "separate"] = param(
        "concat",
        help="hinge: D runs once on [G(z); x] (BigGAN-PyTorch) or on reals, then fakes (SNGAN "
        "functions.py; one spectral-norm power iteration per call, so twice per D step)",
    )
    r1_gamma: float = param(10.0, help="R1 weight gamma (penalty is gamma/2 * |grad|^2)", min=0.0)
    r1_interval: int = param(
        1, help="R1 every N minibatches (lazy regularization; 1 = every step, as DiffAugment TF)", min=1
    )
    r1_on: Literal["raw", "augmented"] = param(
        "raw", help="take R1's gradient w.r.t. the un-augmented reals ('raw') or the augmented ones"
    )
    pl_weight: float = param(0.0, help="path-length regularization weight (0 = off)", min=0.0)
    pl_interval: int = param(4, help="path-length regularization every N minibatches", min=1)
    pl_batch_shrink: int = param(2, help="path-length batch = batch_gpu // this", min=1)
    pl_decay: float = param(0.01, help="decay of the running path-length mean", min=0.0, max=1.0)
    style_mixing_prob: float = param(0.9, help="probability of style mixing in training", min=0.0, max=1.0)
    style_mixing: Literal["minibatch", "per_sample"] = param(
        "minibatch",
        help="'minibatch': one mixing decision and cutoff per round (stylegan2-ada); 'per_sample': each "
        "sample decides and draws its cutoff (the TF StyleGAN2 code DiffAugment trains with)",
    )

    def check(self) -> None:
        if self.g_after_d_step is not None and self.g_after_d_step > self.d_steps:
            raise ValueError(f"g_after_d_step {self.g_after_d_step} must be at most d_steps {self.d_steps}")


@dataclass
class TrainingConfig:
    kimg: float = param(
        300.0, help="training length in thousands of real images shown to D (above 0)", min=0.0
    )
    batch: int = param(16, help="global minibatch size", min=1)
    batch_gpu: int | None = param(None, help="per-device batch (gradient accumulation when < batch)", min=1)
    g_lr: float = param(0.002, help="generator Adam learning rate", min=0.0)
    d_lr: float = param(0.002, help="discriminator Adam learning rate", min=0.0)
    betas: tuple[float, float] = param((0.0, 0.99), help="Adam (beta1, beta2)")
    eps: float = param(1e-8, help="Adam epsilon", min=0.0)
    ema_kimg: float = param(10.0, help="G_ema half-life in kimg (0 = G_ema follows G)", min=0.0)
    ema_rampup: float | None = param(
        None, help="EMA ramp-up ratio (stylegan2-ada: half-life <= cur_kimg * rampup); None = off", min=0.0
    )
    ema_start_kimg: float = param(
        0.0, help="G_ema copies G until this kimg (DiffAugment TF: = ema_kimg)", min=0.0
    )
    ema_decay: float | None = param(
        None,
        help="hinge: constant G_ema decay per G step (BigGAN --ema_decay 0.9999); ns_r1 uses ema_kimg",
        min=0.0,
        max=1.0,
    )
    ema_start_step: int = param(
        0,
        help="hinge: G_ema copies G instead of averaging while the iteration counter its update sees is "
        "below this (BigGAN --ema_start 1000, StudioGAN ema_start); see ema_itr_base",
        min=0,
    )
    ema_itr_base: int = param(
        0,
        help="hinge: the counter BigGAN's ema.update(itr) sees at the first G step. 0: incremented after "
        "the step (DiffAugment/DigGAN forks train.py, StudioGAN train_eval), so with `if itr and itr < "
        "start` G_ema averages at step 1, copies G at steps 2..ema_start_step and averages from step "
        "ema_start_step + 1; 1: incremented before the step (upstream BigGAN-PyTorch): copies at steps "
        "1..ema_start_step - 1, averages from step ema_start_step",
        min=0,
        max=1,
    )
    epochs: float | None = param(
        None,
        help="training length in epochs over the (subset) training set, as BigGAN scripts give it; when "
        "set, kimg is derived from it (epochs x images / 1000) and must not be given as well",
        min=0.0,
    )
    kimg_per_tick: float = param(4.0, help="kimg between status lines", min=0.001)
    first_tick: Literal["one_minibatch", "full"] = param(
        "one_minibatch",
        help="'one_minibatch': tick 0 ends after the first minibatch, so every-N-ticks snapshots land after "
        "minibatches 1, N*t+1, 2*N*t+1 (t = minibatches per tick), as stylegan2-ada's cur_tick == 0 and "
        "BigGAN-PyTorch's `itr % save_every == 0` tested before the increment place them; 'full': the first "
        "tick is a whole one and counts as tick 1, so they land after N*t, 2*N*t minibatches (StudioGAN: "
        "`step_count % save_every == 0` after the increment)",
    )
    snapshot_ticks: int = param(10, help="write a checkpoint every N ticks", min=1)
    image_snapshot_ticks: int = param(10, help="write a fakes_<kimg>.png grid every N ticks", min=1)
    keep_checkpoints: int = param(3, help="how many latest checkpoints to keep (plus best)", min=1)
    grid_size: tuple[int, int] = param((8, 4), help="sample grid (columns, rows), fixed seeds")

    def check(self) -> None:
        if self.kimg <= 0:
            raise ValueError(f"kimg {self.kimg:g} trains nothing: give a length above 0")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs {self.epochs:g} trains nothing: give a length above 0")
        if self.batch_gpu is not None and self.batch % self.batch_gpu:
            raise ValueError(f"batch {self.batch} must be a multiple of batch_gpu {self.batch_gpu}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas {list(self.betas)} must lie in [0, 1)")


@dataclass
class EvaluationConfig:
    protocols: list[str] = param(help="metric protocols, e.g. [fid5k_train]; the first is the headline")
    interval_kimg: float | None = param(
        None,
        help="evaluate the headline protocol during training every N kimg (None = at the end only)",
        min=0.001,
    )
    select_best: bool = param(
        True,
        help="keep a 'best' checkpoint by the headline protocol during training (recorded with its split)",
    )
    at_first_tick: bool = param(
        False,
        help="with interval_kimg: evaluate at the end of tick 0 too (after the first minibatch with "
        "training.first_tick one_minibatch), as BigGAN-PyTorch's `itr % test_every == 0`, tested before its "
        "counter increments, evaluates after iteration 1, test_every + 1, ...",
    )


@dataclass
class PerformanceConfig:
    tf32: bool = param(
        False,
        help="allow TF32 matmul/conv on Ampere+ GPUs: faster, but changes numerics; the official code bases "
        "run without it (stylegan2-ada-pytorch turns it off, the TF code predates it)",
    )
    amp: Literal["off", "bf16", "fp16"] = param("off", help="autocast precision for G/D forward passes")
    channels_last: bool = param(False, help="use channels_last memory format on CUDA")
    compile: bool = param(False, help="torch.compile G and D")
    cudnn_benchmark: bool = param(True, help="let cuDNN pick the fastest kernels")
    cpu_threads: int | None = param(
        None,
        help="torch intra-op CPU threads; null = auto: $OMP_NUM_THREADS if set, else on a CPU device the "
        "idle cores of this process's CPU set (cores minus the 1-minute load average), at most 4 -- small "
        "models gain little from more, and threads competing for busy cores make them several times "
        "slower (measured: `make bench`); on CUDA torch's default. `run --cpu-threads N` overrides it. "
        "Not hashed",
        min=1,
    )
    finite_check: Literal["tick", "minibatch"] = param(
        "tick",
        help="when to look for NaN/inf in the losses and weights: every tick (free), or every minibatch "
        "(one device sync per step; stops a diverging run at once). A diverged run stops with the last "
        "finite checkpoint and status 'diverged'. Not hashed",
    )


@dataclass
class ResourcesConfig:
    """What one run of the recipe asks of the hardware. Not hashed: it changes how the run is laid out on
    devices, not what is trained. The global batch and kimg accounting are fixed by ``training``, and
    the random streams are keyed by chunks of ``training.batch_gpu`` samples, so with ``batch_gpu`` set
    the process count changes only the order of float reductions (``batch_gpu`` unset: it is
    ``batch / processes``, and the count changes the chunks; see ``notes``)."""

    gpus: int = param(
        1,
        help="GPUs of the official set-up, all nodes together (the sweep and the cost model use it); "
        "`run --gpus recipe` starts that many processes, `run --gpus N` the hardware's count, plain "
        "`run` one process; the total batch stays the same",
        min=1,
    )
    nodes: int = param(1, help="nodes the GPUs span (gpus must divide evenly over them)", min=1)
    source: str | None = param(
        None, help="where the GPU count comes from (official script, README line, paper text)"
    )
    notes: str | None = param(
        None,
        help="what of the official numbers depends on the per-GPU batch (batch-norm statistics, "
        "minibatch-stddev groups, per-GPU running means) and how to get the official per-GPU layout",
    )

    def check(self) -> None:
        if self.gpus % self.nodes:
            raise ValueError(f"resources.gpus {self.gpus} must split evenly over {self.nodes} nodes")


@dataclass
class Recipe:
    """A fully resolved recipe (after extends, preset and --set)."""

    method: str = param(help="method name, e.g. diffaugment")
    dataset: str = param(help="dataset name, e.g. obama-100")
    purpose: Literal["paper", "demo"] = param("paper", help="'paper' recipes must carry provenance")
    preset: str = param("paper", help="the preset applied (paper, short, smoke)")
    description: str = param("", help="one line on what this cell is")
    provenance: Provenance | None = param(None, help="paper, table, upstream code and deviations")
    model: dict[str, Any] = param(default_factory=dict, help="model config; validated by model.arch")
    data: DataConfig = param(default_factory=DataConfig, help="dataset handling")
    loss: LossConfig = param(default_factory=LossConfig, help="GAN loss and regularizers")
    training: TrainingConfig = param(default_factory=TrainingConfig, help="optimization and schedule")
    evaluation: EvaluationConfig = param(
        default_factory=lambda: EvaluationConfig(protocols=[]), help="metrics and when to compute them"
    )
    performance: PerformanceConfig = param(default_factory=PerformanceConfig, help="speed switches")
    resources: ResourcesConfig = param(
        default_factory=ResourcesConfig, help="GPUs and nodes of the official set-up (not hashed)"
    )
    method_args: dict[str, Any] = param(
        default_factory=dict, help="(internal) the method's section, validated by the method's Config"
    )

    def check(self) -> None:
        if self.purpose == "paper" and self.provenance is None:
            raise ValueError(
                "paper recipes need a 'provenance:' block (paper, arxiv, table, upstream_repo, "
                "upstream_commit, upstream_command, deviations)"
            )
