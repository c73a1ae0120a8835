"""What the bench measures: the training cases of each suite, their speed-switch variants, and the
tiny configurations of the CPU suite.

A case is a recipe (a recipe file, or a base of ``recipes/_bases/`` with a method and dataset) plus
``--set`` overrides; a variant adds the overrides of one speed switch. ``paper`` is the recipe's own
numerics (fp32, TF32 off for every paper recipe). The GPU suite runs the paper models; the CPU suite
runs the same cases with tiny networks so it finishes in seconds (and runs in the test suite).

Order is priority: under a time budget the suite runs cases in this order and skips the ones that no
longer fit (saying so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from degan_bench.paths import recipes_dir
from degan_bench.recipes.loader import (
    ResolvedRecipe,
    apply_override,
    deep_merge,
    parse_override,
    read_yaml,
    resolve_dict,
    resolve_recipe,
)

SUITES = ("gpu", "cpu")
#: the lottery ticket chain's dense Stage I round 0 without augmentation = the plain backbone
_DENSE_LOTTERY = ("lottery.stage=find", "lottery.round=0", "lottery.policy=none", "lottery.advaug=none")


@dataclass(frozen=True)
class RecipeSpec:
    """A recipe file (``method``/``dataset``[/``backbone``]) or, with ``base``, a base of
    ``recipes/_bases/`` given a method and dataset (for configurations no table trains as such)."""

    method: str
    dataset: str
    backbone: str | None = None
    base: str | None = None
    preset: str = "paper"
    overrides: tuple[str, ...] = ()

    def resolve(self, extra: tuple[str, ...] = ()) -> ResolvedRecipe:
        overrides = [*self.overrides, *extra]
        if self.base is None:
            return resolve_recipe(self.method, self.dataset, self.preset, overrides, backbone=self.backbone)
        body = read_yaml(recipes_dir() / "_bases" / self.base)
        if "extends" in body:
            raise ValueError(f"bench base {self.base} must not extend another file")
        presets = body.pop("presets", {}) or {}
        if self.preset != "paper":
            body = deep_merge(body, presets[self.preset])
        body.update(method=self.method, dataset=self.dataset, purpose="demo", preset=self.preset)
        body.setdefault("description", f"bench: {self.base} as {self.method}")
        for text in overrides:
            apply_override(body, *parse_override(text))
        resolved = resolve_dict(body, source=f"recipes/_bases/{self.base} (bench)")
        resolved.overrides = overrides
        return resolved

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "dataset": self.dataset,
            "backbone": self.backbone,
            "base": self.base,
            "preset": self.preset,
            "overrides": list(self.overrides),
        }


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...] = ()
    compile_mode: str | None = None  # torch.compile mode applied by the bench (see bench/trainer.py)
    cuda_only: bool = False
    warmup_minibatches: int = 2
    description: str = ""


PAPER = Variant("paper", description="the recipe's numerics (fp32, TF32 off)")
SWITCHES = (
    Variant("tf32", ("performance.tf32=true",), cuda_only=True, description="TF32 matmul/conv"),
    Variant("bf16", ("performance.amp=bf16",), cuda_only=True, description="bf16 autocast"),
    Variant(
        "channels_last",
        ("performance.channels_last=true",),
        cuda_only=True,
        description="channels_last memory format",
    ),
    Variant(
        "compile",
        ("performance.compile=true",),
        warmup_minibatches=3,
        description="torch.compile of G.synthesis and D (single-backward passes), eager R1/path length",
    ),
    Variant(
        "compile-cudagraphs",
        ("performance.compile=true",),
        compile_mode="reduce-overhead",
        cuda_only=True,
        warmup_minibatches=4,
        description="as compile, mode reduce-overhead (CUDA graphs; the bench's own switch)",
    ),
)


@dataclass(frozen=True)
class TrainCase:
    name: str
    title: str
    spec: RecipeSpec
    variant: Variant = PAPER
    official: str | None = None  # the official code base an --official A/B compares (paper variant)
    role: str = "core"  # core | switch | coverage (what the case is for; coverage cases feed the cost model)

    @property
    def id(self) -> str:
        return f"{self.name}/{self.variant.name}"


@dataclass(frozen=True)
class FidCase:
    name: str
    title: str
    spec: RecipeSpec
    images: int
    batch_size: int
    role: str = "core"

    @property
    def id(self) -> str:
        return f"{self.name}/throughput"


@dataclass(frozen=True)
class Suite:
    name: str
    cases: tuple[TrainCase | FidCase, ...]
    default_budget_minutes: float
    reps: int  # timed repetitions per case when the budget allows
    min_reps: int  # fewer than this and a case is skipped
    min_rep_seconds: float  # a repetition is at least this long (whole cycles)
    setup_prior_seconds: float  # assumed build + warm-up time of a case not yet seen
    compile_prior_seconds: float  # the same for a compiled variant
    notes: list[str] = field(default_factory=list)


#: paper256 in the official per-GPU layout: batch 64 over 8 GPUs = 8 per GPU (train.py batch_gpu = mb //
#: ref_gpus), here as 8 accumulation rounds of 8, so one GPU times what each of the 8 does (and fits)
PAPER256 = RecipeSpec(
    "stylegan2", "ffhq-70k", base="stylegan2-ada-paper256.yaml", overrides=("training.batch_gpu=8",)
)
BIGGAN = RecipeSpec("biggan", "cifar10-100pct")
SNGAN = RecipeSpec("lottery", "cifar10-10pct", backbone="sngan", overrides=_DENSE_LOTTERY)
LOWSHOT256 = RecipeSpec("stylegan2", "obama-100")
STUDIOGAN = RecipeSpec("lottery", "cifar10-10pct", overrides=_DENSE_LOTTERY)
SG2_CIFAR = RecipeSpec("stylegan2", "cifar10-100pct", backbone="stylegan2")
SG2_FFHQ_TF = RecipeSpec("stylegan2", "ffhq-1k")


def _cases(tiny: dict[str, tuple[str, ...]] | None, fid_images: int, fid_batch: int) -> tuple:
    def spec(base: RecipeSpec, key: str) -> RecipeSpec:
        if tiny is None:
            return base
        return RecipeSpec(
            base.method, base.dataset, base.backbone, base.base, base.preset, (*base.overrides, *tiny[key])
        )

    paper256 = spec(PAPER256, "stylegan2")
    title = "StyleGAN2 paper256 (stylegan2-ada-pytorch --cfg=paper256 --aug=noaug): G, Greg/4, D, Dreg/16"
    return (
        TrainCase("stylegan2-paper256", title, paper256, official="stylegan2-ada-pytorch"),
        TrainCase(
            "biggan-cifar",
            "BigGAN-CIFAR (DiffAugment-biggan-cifar scripts): 4 D steps + G per it",
            spec(BIGGAN, "biggan"),
            official="DiffAugment-biggan-cifar",
        ),
        TrainCase(
            "sngan-cifar",
            "SNGAN-CIFAR (lottery paper, dense round 0): 5 D steps + G per it",
            spec(SNGAN, "sngan"),
        ),
        FidCase(
            "fid50k_full",
            "fid50k_full: paper256 G at 256 px + Inception features",
            paper256,
            images=fid_images,
            batch_size=fid_batch,
        ),
        *(TrainCase("stylegan2-paper256", title, paper256, variant, role="switch") for variant in SWITCHES),
        TrainCase(
            "stylegan2-lowshot256",
            "StyleGAN2 DiffAugment low-shot 256 px (batch 16, R1 every step)",
            spec(LOWSHOT256, "stylegan2"),
            role="coverage",
        ),
        TrainCase(
            "biggan-studiogan",
            "BigGAN StudioGAN (lottery paper, ch 96, 5 D steps, dense round 0)",
            spec(STUDIOGAN, "biggan"),
            role="coverage",
        ),
        TrainCase(
            "stylegan2-cifar",
            "StyleGAN2 DiffAugment CIFAR 32 px (batch 32)",
            spec(SG2_CIFAR, "stylegan2"),
            role="coverage",
        ),
        TrainCase(
            "stylegan2-ffhq256-tf",
            "StyleGAN2 DiffAugment FFHQ 256 px (batch 32, fmap 8192)",
            spec(SG2_FFHQ_TF, "stylegan2"),
            role="coverage",
        ),
    )


#: tiny networks for the CPU suite (seconds per case on one core); numbers mean nothing
TINY: dict[str, tuple[str, ...]] = {
    "stylegan2": (
        "training.batch_gpu=null",
        "model.z_dim=32",
        "model.w_dim=32",
        "model.mapping_layers=2",
        "model.channel_base=256",
        "model.channel_max=32",
        "model.mbstd_group=4",
        "data.resolution=16",
        "training.batch=4",
    ),
    "biggan": ("model.g_ch=4", "model.d_ch=4", "model.z_dim=16", "training.batch=4"),
    "sngan": ("model.g_ch=4", "model.d_ch=4", "model.z_dim=16", "training.batch=4", "loss.g_batch=8"),
}

GPU_SUITE = Suite(
    name="gpu",
    cases=_cases(None, fid_images=2048, fid_batch=64),
    default_budget_minutes=8.0,
    reps=5,
    min_reps=3,
    min_rep_seconds=2.0,
    setup_prior_seconds=20.0,
    compile_prior_seconds=120.0,
    notes=["paper models; one GPU; seeded random reals (the step's cost does not depend on their content)"],
)
CPU_SUITE = Suite(
    name="cpu",
    cases=_cases(TINY, fid_images=4, fid_batch=2),
    default_budget_minutes=3.0,
    reps=3,
    min_reps=3,
    min_rep_seconds=0.05,
    setup_prior_seconds=2.0,
    compile_prior_seconds=300.0,
    notes=["tiny networks (bench/cases.py TINY): checks the suite end to end; the numbers mean nothing"],
)


def get_suite(name: str) -> Suite:
    from degan_bench.errors import DeganError

    if name not in SUITES:
        raise DeganError(f"--suite {name!r} is unknown", fix=f"use one of {', '.join(SUITES)}")
    return GPU_SUITE if name == "gpu" else CPU_SUITE
