"""Named evaluation protocols: every number in a table is made under exactly one of them.

A :class:`Protocol` fixes everything that changes a FID/KID/IS value: the metric, how many images are
generated, which real images form the reference (and whether they are mirrored), how images reach
the Inception network (resizer), which network and weights file, which implementation computes the
number, the evaluation seed, and how the generator is sampled (G_ema, truncation, noise, labels).
Its full record is stored with every result; numbers whose :func:`fingerprint` differs are never
compared.

Ids are a function of the fields that differ between protocols, so they cannot be ambiguous::

    <metric><count>_<reference>[_clean]     fid5k_train, fid50k_full, kid5k_train, fid10k_test_clean
    is<count>                               is10k

``count`` is the number of generated images (``5k`` = 5,000). ``reference`` is one of

- ``train``: the run's training images exactly (for a subset view such as ``cifar10-10pct`` the
  subset); DiffAugment's low-shot ``fid5k-train`` (5k vs all 100/160/389 training images).
- ``full``: the whole base dataset, even when training on a subset (``ffhq-1k`` -> all 70k FFHQ).
  This is stylegan2-ada's ``fid50k_full`` (ADA, InsGen, FakeCLR) *and* DiffAugment's FFHQ
  ``fid50k-train``/``fid50k-ffhq``: DiffAugment's TF metric resets ``num_samples`` to the full
  dataset, so its "train" is our ``full``. We therefore register no ``fid50k_train``: under our
  naming that would be 50k vs the 1k-image subset, which no paper reports.
- ``test``: the test split of the base dataset (CIFAR ``fid10k``: 10k vs the 10k test images).

Sampling follows both official code bases (stylegan2-ada-pytorch ``metric_utils.py``, DiffAugment TF
``metrics/frechet_inception_distance.py`` with ``is_validation=True``): G_ema, ``truncation_psi=1``,
random per-layer noise, z ~ N(0, I), labels drawn uniformly from the training images' labels for
conditional models, and images quantized as ``(x * 127.5 + 128).clamp(0, 255).to(uint8)``.
Reference images are never mirrored.

``_clean`` protocols replace the TF1-compatible bilinear resize inside torch-fidelity's Inception by
clean-fid's anti-aliased PIL bicubic resize and clean-fid's Inception (NVIDIA's TorchScript port).
Their numbers are *not* comparable with the legacy ones (clean-fid's leaderboard: DiffAugment
CIFAR-10 10% 14.53 legacy vs 16.98 clean).

A registered protocol may be *derived* with another generated count (``derive(n_gen=500)`` gives
``fid500_train``, marked ``registered: false``) for smoke runs; its id says it is not the paper's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from degan_bench.errors import RecipeError
from degan_bench.schema import did_you_mean

MetricName = Literal["fid", "kid", "is"]
ReferenceKind = Literal["train", "full", "test"]
Resizer = Literal["tf1_bilinear", "clean_pil_bicubic"]

# Which feature extractor each resizer implies (the two are one choice, kept apart for the record).
EXTRACTORS: dict[str, str] = {
    "tf1_bilinear": "torch-fidelity/inception-v3-compat",
    "clean_pil_bicubic": "clean-fid/InceptionV3W",
}
# Key of the weights file in :data:`degan_bench.metrics.weights.WEIGHTS` each extractor loads.
EXTRACTOR_WEIGHTS: dict[str, str] = {
    "torch-fidelity/inception-v3-compat": "torch-fidelity-inception-2015-12-05",
    "clean-fid/InceptionV3W": "clean-fid-inception-2015-12-05",
}
FEATURE_LAYERS: dict[str, str] = {"fid": "2048", "kid": "2048", "is": "logits_unbiased"}

# The one place protocol defaults live: every registered protocol shares these.
DEFAULTS: dict[str, Any] = {
    "eval_seed": 0,  # z, noise, label draws, KID subsets and IS split shuffle all derive from it
    "generator": "G_ema",
    "truncation_psi": 1.0,
    "noise_mode": "random",
    "labels": "uniform_over_training_images",
    "quantization": "(x*127.5+128).clamp(0,255).to(uint8)",
    "ref_xflip": False,
    "tf32": False,  # TF32 matmul/conv are switched off while evaluating (stylegan2-ada does the same)
    "kid_subsets": 100,
    "kid_subset_size_max": 1000,  # actual subset size: min(this, n_ref, n_gen)
    "kid_kernel": "poly(degree=3, gamma=1/dim, coef0=1)",
    "is_splits": 10,
}


@dataclass(frozen=True)
class Protocol:
    """How one number is made. Frozen; validated on construction (``ValueError``)."""

    id: str
    metric: MetricName
    n_gen: int
    reference: ReferenceKind | None  # None for IS (no reference set)
    resizer: Resizer
    description: str
    upstream: str  # the official metric names this protocol reproduces, with their source
    implementation: str = "torch-fidelity"
    eval_seed: int = DEFAULTS["eval_seed"]
    generator: Literal["G_ema", "G"] = DEFAULTS["generator"]
    truncation_psi: float = DEFAULTS["truncation_psi"]
    noise_mode: Literal["random", "const", "none"] = DEFAULTS["noise_mode"]
    labels: str = DEFAULTS["labels"]
    quantization: str = DEFAULTS["quantization"]
    ref_xflip: bool = DEFAULTS["ref_xflip"]
    tf32: bool = DEFAULTS["tf32"]
    kid_subsets: int = DEFAULTS["kid_subsets"]
    kid_subset_size_max: int = DEFAULTS["kid_subset_size_max"]
    kid_kernel: str = DEFAULTS["kid_kernel"]
    is_splits: int = DEFAULTS["is_splits"]
    registered: bool = True

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"protocol {self.id!r}: " + "; ".join(problems))

    def _problems(self) -> Iterator[str]:
        if self.metric not in FEATURE_LAYERS:
            yield f"metric {self.metric!r} is not one of {sorted(FEATURE_LAYERS)}"
            return
        if self.resizer not in EXTRACTORS:
            yield f"resizer {self.resizer!r} is not one of {sorted(EXTRACTORS)}"
            return
        if self.n_gen < 2:
            yield f"n_gen {self.n_gen} must be >= 2"
        if self.metric == "is" and self.reference is not None:
            yield "IS has no reference set (reference must be None)"
        if self.metric != "is" and self.reference not in ("train", "full", "test"):
            yield f"reference {self.reference!r} must be 'train', 'full' or 'test'"
        if self.resizer == "clean_pil_bicubic" and self.metric != "fid":
            yield "the clean resizer exists for FID only (clean-fid's Inception gives no logits)"
        expected_impl = "clean-fid" if self.resizer == "clean_pil_bicubic" else "torch-fidelity"
        if self.implementation != expected_impl:
            yield f"implementation {self.implementation!r} must be {expected_impl!r} for this resizer"
        if self.ref_xflip:
            yield "mirrored references are not supported (no reproduced paper mirrors its FID reference)"
        if not 0.0 < self.truncation_psi <= 1.0:
            yield f"truncation_psi {self.truncation_psi} must lie in (0, 1]"
        if self.eval_seed < 0:
            yield f"eval_seed {self.eval_seed} must be >= 0"
        if self.metric == "is" and not 1 <= self.is_splits <= self.n_gen:
            yield f"is_splits {self.is_splits} must lie in [1, n_gen]"
        if self.kid_subsets < 1 or self.kid_subset_size_max < 2:
            yield "KID needs kid_subsets >= 1 and kid_subset_size_max >= 2"
        expected_id = canonical_id(self.metric, self.n_gen, self.reference, self.resizer)
        if self.id != expected_id:
            yield f"id must be {expected_id!r} (ids are derived from metric, n_gen, reference, resizer)"

    @property
    def feature_extractor(self) -> str:
        return EXTRACTORS[self.resizer]

    @property
    def feature_layer(self) -> str:
        return FEATURE_LAYERS[self.metric]

    @property
    def weights(self) -> str:
        """Key of the feature-extractor weights in :data:`degan_bench.metrics.weights.WEIGHTS`."""
        return EXTRACTOR_WEIGHTS[self.feature_extractor]

    def derive(self, *, n_gen: int | None = None, eval_seed: int | None = None) -> Protocol:
        """This protocol with another generated count (new id, ``registered=False``) or eval seed.

        A different seed keeps the id: it is a repeat of the same protocol (recorded, and excluded
        from :func:`fingerprint`, so repeats can be averaged)."""
        changes: dict[str, Any] = {}
        if eval_seed is not None and eval_seed != self.eval_seed:
            changes["eval_seed"] = eval_seed
        if n_gen is not None and n_gen != self.n_gen:
            changes["n_gen"] = n_gen
            changes["id"] = canonical_id(self.metric, n_gen, self.reference, self.resizer)
            changes["description"] = self.description.replace(
                f"{count_label(self.n_gen)} generated",
                f"{count_label(n_gen)} generated (derived, not a paper protocol)",
            )
            changes["registered"] = False
            if self.metric == "is":
                changes["is_splits"] = min(self.is_splits, n_gen)
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Protocol:
        """Rebuild (and re-validate) a protocol from a stored ``protocol_record``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def record(self) -> dict[str, Any]:
        """Every field, plus the implied extractor, layer and weights key (JSON-ready)."""
        data = dataclasses.asdict(self)
        data.update(
            feature_extractor=self.feature_extractor, feature_layer=self.feature_layer, weights=self.weights
        )
        return data


def count_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def canonical_id(metric: str, n_gen: int, reference: str | None, resizer: str) -> str:
    if metric == "is":
        return f"is{count_label(n_gen)}"
    suffix = "_clean" if resizer == "clean_pil_bicubic" else ""
    return f"{metric}{count_label(n_gen)}_{reference}{suffix}"


def fingerprint(protocol_record: dict[str, Any], weights_sha256: str | None) -> str:
    """Comparability key: sha256 of the protocol record without its eval seed, plus the weights hash.

    Two results may be compared (or averaged over eval seeds) only when their fingerprints match."""
    data = {k: v for k, v in protocol_record.items() if k != "eval_seed"}
    data["weights_sha256"] = weights_sha256
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def comparable(record_a: dict[str, Any], record_b: dict[str, Any]) -> bool:
    """Whether two metric records (see ``evaluate``) were made under the same protocol."""
    if record_a.get("status") != "ok" or record_b.get("status") != "ok":
        return False
    return record_a.get("protocol_fingerprint") == record_b.get("protocol_fingerprint")


def _fid_kid(
    metric: MetricName, n_gen: int, reference: ReferenceKind, upstream: str, what: str
) -> list[Protocol]:
    name = {"fid": "FID", "kid": "KID"}[metric]
    protocols = [
        Protocol(
            canonical_id(metric, n_gen, reference, "tf1_bilinear"),
            metric,
            n_gen,
            reference,
            "tf1_bilinear",
            f"{name}: {what}; torch-fidelity TF-compatible Inception",
            upstream,
        )
    ]
    if metric == "fid":
        protocols.append(
            Protocol(
                canonical_id(metric, n_gen, reference, "clean_pil_bicubic"),
                metric,
                n_gen,
                reference,
                "clean_pil_bicubic",
                f"clean-FID: {what}; clean-fid PIL-bicubic resize + Inception",
                f"clean-fid variant of {upstream}",
                implementation="clean-fid",
            )
        )
    return protocols


def _builtin() -> list[Protocol]:
    low_shot = "DiffAugment TF fid5k-train (metrics/metric_defaults.py:15)"
    full = (
        "stylegan2-ada fid50k_full (metric_main.py; ADA, InsGen, FakeCLR) = DiffAugment TF "
        "fid50k-train/fid50k-ffhq (reference reset to the full dataset, metric_base.py:49-53)"
    )
    cifar = "DiffAugment TF fid10k (split='test', metric_base.py:24) and DiffAugment-biggan-cifar test FID"
    protocols = [
        *_fid_kid("fid", 5000, "train", low_shot, "5k generated vs all training images"),
        *_fid_kid("fid", 50000, "full", full, "50k generated vs the full base dataset, no flips"),
        *_fid_kid("fid", 10000, "test", cifar, "10k generated vs the test split"),
        *_fid_kid("kid", 5000, "train", f"KID counterpart of {low_shot}", "5k generated vs training images"),
        *_fid_kid("kid", 50000, "full", "stylegan2-ada kid50k_full", "50k generated vs the full dataset"),
        *_fid_kid("kid", 10000, "test", "KID counterpart of CIFAR fid10k", "10k generated vs the test split"),
        Protocol(
            "is10k",
            "is",
            10000,
            None,
            "tf1_bilinear",
            "IS: 10k generated, 10 splits, torch-fidelity",
            "DiffAugment TF is10k (10 splits) and DiffAugment-biggan-cifar IS",
        ),
        Protocol(
            "is50k",
            "is",
            50000,
            None,
            "tf1_bilinear",
            "IS: 50k generated, 10 splits, torch-fidelity",
            "stylegan2-ada is50k; LT-GAN SNGAN IS (50k samples)",
        ),
    ]
    return protocols


def _build_registry(protocols: list[Protocol]) -> dict[str, Protocol]:
    registry: dict[str, Protocol] = {}
    for protocol in protocols:
        if protocol.id in registry:
            raise ValueError(f"protocol {protocol.id!r} registered twice")
        registry[protocol.id] = protocol
    return registry


PROTOCOLS: dict[str, Protocol] = _build_registry(_builtin())

# Names used by the official code bases, and the protocol that reproduces each. Never silently
# aliased: asking for one of these names fails with the id to use, so a record never carries them.
UPSTREAM_NAMES: dict[str, str] = {
    "fid5k-train": "fid5k_train",
    "fid50k-train": "fid50k_full",
    "fid50k-ffhq": "fid50k_full",
    "fid10k": "fid10k_test",
    "fid50k_train": "fid50k_full",
}


_DERIVED_ID = re.compile(
    r"^(?P<metric>fid|kid)(?P<count>\d+k?)_(?P<reference>train|full|test)(?P<clean>_clean)?$"
    r"|^is(?P<is_count>\d+k?)$"
)


def _derived(protocol_id: str) -> Protocol | None:
    """``kid500_train`` -> ``kid5k_train`` derived with 500 generated images (``registered: false``)."""
    match = _DERIVED_ID.match(protocol_id)
    if match is None:
        return None
    count = match["count"] or match["is_count"]
    n_gen = int(count[:-1]) * 1000 if count.endswith("k") else int(count)
    if match["is_count"] is not None:
        metric, reference, resizer = "is", None, "tf1_bilinear"
    else:
        metric, reference = match["metric"], match["reference"]
        resizer = "clean_pil_bicubic" if match["clean"] else "tf1_bilinear"
    for protocol in PROTOCOLS.values():
        if (protocol.metric, protocol.reference, protocol.resizer) == (
            metric,
            reference,
            resizer,
        ) and n_gen >= 2:
            derived = protocol.derive(n_gen=n_gen)
            return derived if derived.id == protocol_id else None
    return None


def get_protocol(protocol_id: str) -> Protocol:
    """The registered protocol ``protocol_id``, or a registered one derived with another generated count
    (``kid500_train``, for smoke runs; marked ``registered: false``); a one-line error otherwise."""
    if protocol_id in PROTOCOLS:
        return PROTOCOLS[protocol_id]
    if protocol_id in UPSTREAM_NAMES:
        target = UPSTREAM_NAMES[protocol_id]
        raise RecipeError(
            f"protocol {protocol_id!r} is an upstream metric name, not a degan-bench protocol id",
            fix=f"use {target!r} ({PROTOCOLS[target].description})",
        )
    derived = _derived(protocol_id)
    if derived is not None:
        return derived
    hint = did_you_mean(protocol_id, PROTOCOLS)
    raise RecipeError(
        f"unknown protocol {protocol_id!r}",
        fix=f"did you mean {hint!r}?" if hint else f"choose one of {', '.join(sorted(PROTOCOLS))}",
    )
