"""The papers' numbers as data: ``results/reported.csv``, its schema and its validation.

One row per paper-table cell (a number as printed in one version of one source). Columns:

=================  ===========================================================================================
``paper``          key of :data:`PAPERS` (the paper whose table or README prints the number)
``arxiv``          that paper's arXiv id (must agree with :data:`PAPERS`; empty where none is known)
``arxiv_version``  ``v1``, ``v2+`` (v2 and later) ... or empty when the source is not tied to a version
``table``          the table as the source names it (``Table 4``, ``README CIFAR (BigGAN)``)
``row``/``column`` the source's own row and column labels
``method``         a degan-bench method (:data:`degan_bench.methods.KNOWN_METHODS`), or for
                   ``reference_only`` rows a baseline we do not implement (:data:`REFERENCE_METHODS`)
``backbone``       key of :data:`BACKBONES` (which code base trained it; its ``arch`` is our model arch)
``dataset``        a registered dataset, or for ``reference_only`` rows one of :data:`REFERENCE_DATASETS`
``data_setting``   the source's wording of the data amount (``10%``, ``100 imgs``, ``70k + x-flips``)
``metric``         ``fid``, ``kid`` or ``is``
``protocol``       the degan-bench protocol id that reproduces how the number was made, or ``unknown``
                   when the source does not say (tables then flag the cell as not comparable)
``value``          the number
``selection``      which checkpoint the source reports: ``last``, ``best_on_train``, ``best_on_test``
                   (model selection on the split the number is reported on) or ``unknown``
``verification``   ``code`` | ``readme`` (checked against the official repository / its README) |
                   ``paper`` (checked against the paper's own text) | ``aggregator`` (a benchmark listing;
                   row or config not always confirmed) | ``unverified``
``reference_only`` ``true`` when the row cannot be reproduced here: its method or dataset is outside our
                   registries. It is ``false`` for every row whose method and dataset we know, so a typo
                   in a method name fails validation instead of silently becoming a reference row
``source``         where the number is printed (file @ commit, paper table)
``notes``          what a reader must know (our words)
``quotes``         empty when the source made the number itself; else the paper it copies the number from,
                   ``paper`` (that paper's unversioned rows) or ``paper@v1`` (one version of it). A copy
                   whose value differs from the quoted row is a *conflict* (:func:`conflicts`), flagged on
                   both cells by the tables
=================  ===========================================================================================

Where sources disagree (DiffAugment's arXiv v1 vs v2 low-shot numbers, an older README) each version
is its own row; tables pick one version per cell and show the others as footnotes.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from degan_bench.errors import DeganError
from degan_bench.paths import results_dir

REPORTED_COLUMNS: tuple[str, ...] = (
    "paper", "arxiv", "arxiv_version", "table", "row", "column", "method", "backbone", "dataset",
    "data_setting", "metric", "protocol", "value", "selection", "verification", "reference_only", "source",
    "notes", "quotes",
)  # fmt: skip
#: columns that identify one printed cell; no two rows may share them
CELL_KEY: tuple[str, ...] = ("paper", "arxiv_version", "table", "row", "column", "metric")
#: columns that identify a number for one degan-bench cell within one source version
LOOKUP_KEY: tuple[str, ...] = ("paper", "arxiv_version", "table", "method", "backbone", "dataset", "metric")

METRICS: tuple[str, ...] = ("fid", "kid", "is")
VERIFICATION_LEVELS: tuple[str, ...] = ("code", "readme", "paper", "aggregator", "unverified")
SELECTIONS: tuple[str, ...] = ("last", "best_on_train", "best_on_test", "unknown")
UNKNOWN_PROTOCOL = "unknown"
_VERSION = re.compile(r"^(v\d+\+?)?$")
_QUOTES = re.compile(r"^(?P<paper>[a-z0-9-]+)(@(?P<version>v\d+\+?))?$")


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str
    arxiv: str  # "" where no arXiv id could be confirmed
    repo: str  # official code, owner/name ("" where none)


PAPERS: dict[str, Paper] = {
    "diffaugment": Paper(
        "Differentiable Augmentation for Data-Efficient GAN Training",
        "NeurIPS 2020", "2006.10738", "mit-han-lab/data-efficient-gans",
    ),
    "ada": Paper(
        "Training Generative Adversarial Networks with Limited Data",
        "NeurIPS 2020", "2006.06676", "NVlabs/stylegan2-ada-pytorch",
    ),
    "insgen": Paper(
        "Data-Efficient Instance Generation from Instance Discrimination",
        "NeurIPS 2021", "2106.04566", "genforce/insgen",
    ),
    "fakeclr": Paper(
        "FakeCLR: Exploring Contrastive Learning for Solving Latent Discontinuity in Data-Efficient GANs",
        "ECCV 2022", "2207.08630", "iceli1007/FakeCLR",
    ),
    "diggan": Paper(
        "DigGAN: Discriminator gradIent Gap Regularization for GAN Training with Limited Data",
        "NeurIPS 2022", "2211.14694", "AilsaF/DigGAN",
    ),
    "lottery": Paper(
        "Data-Efficient GAN Training Beyond (Just) Augmentations: A Lottery Ticket Perspective",
        "NeurIPS 2021", "2103.00397", "VITA-Group/Ultra-Data-Efficient-GAN-Training",
    ),
    "lecam": Paper(
        "Regularizing Generative Adversarial Networks under Limited Data",
        "CVPR 2021", "2104.03310", "google/lecam-gan",
    ),
    "genco": Paper(
        "GenCo: Generative Co-training for Generative Adversarial Networks with Limited Data",
        "AAAI 2022", "2110.01254", "jxhuang0508/GenCo",
    ),
}  # fmt: skip

#: baselines that appear in the papers' tables but that degan-bench does not implement
REFERENCE_METHODS: dict[str, str] = {
    "biggan": "plain BigGAN training (no degan-bench method name for the BigGAN baseline yet)",
    "genco": "GenCo: generative co-training with several discriminators",
    "contrad": "ContraD: contrastive discriminator",
    "scale-shift": "fine-tuning only the scale/shift (batch-norm style) parameters of a pre-trained GAN",
    "minegan": "MineGAN: mining a pre-trained GAN's latent space",
    "transfergan": "TransferGAN: fine-tuning a pre-trained GAN",
    "transfergan-diffaugment": "TransferGAN + DiffAugment",
    "freezed": "FreezeD: fine-tuning with frozen lower discriminator layers",
    "freezed-diffaugment": "FreezeD + DiffAugment",
    "diffaugment-advaug": "a dense (unpruned) network + DiffAugment + AdvAug (the lottery paper's 0 % rows)",
    "gan-ticket": "a GAN ticket (IMP), trained without augmentation (lottery: its Stage I run at that round)",
    "gan-ticket-diffaugment": "a GAN ticket (IMP) + DiffAugment, without AdvAug (lottery Table 3)",
    "gan-ticket-ada": "a GAN ticket (IMP) + ADA, without AdvAug (lottery Table 4)",
    "gan-ticket-ada-lecam": "a GAN ticket (IMP) + ADA + LeCam, without AdvAug (lottery Table 4)",
    "sngan": "plain SNGAN training (the lottery paper's dense SNGAN baseline)",
    "sngan-gaussian-noise": "SNGAN with N(0, 0.01^2) noise added to the features AdvAug perturbs (lottery)",
    "sngan-advaug": "SNGAN + AdvAug on G and D, no data augmentation (lottery Table 6)",
    # lottery Table A9: one name per sparsity level, so the levels are not read as versions of one number
    **{
        f"sngan-ticket-advaug-{5 * k}pct": f"an SNGAN ticket at {5 * k} % sparsity (IMP removing 5 % of all "
        "weights per round) + AdvAug on G and D (lottery Table A9)"
        for k in range(1, 11)
    },
}
#: datasets that appear in reported tables but are not in the degan-bench registry
REFERENCE_DATASETS: dict[str, str] = {
    "imagenet-128": "ImageNet 128x128, all images",
    "imagenet-128-50pct": "ImageNet 128x128, 50% of the training set",
    "imagenet-128-25pct": "ImageNet 128x128, 25% of the training set",
    "lsun-cat-30k": "LSUN Cat 256, 30k images",
    "lsun-cat-10k": "LSUN Cat 256, 10k images",
    "lsun-cat-5k": "LSUN Cat 256, 5k images",
    "lsun-cat-1k": "LSUN Cat 256, 1k images",
}


@dataclass(frozen=True)
class Backbone:
    arch: str  # the degan-bench model arch a reproduction uses ("" when none applies)
    description: str


BACKBONES: dict[str, Backbone] = {
    "stylegan2-tf": Backbone("stylegan2", "TF StyleGAN2 as forked by DiffAugment (DiffAugment-stylegan2)"),
    "stylegan2-ada": Backbone(
        "stylegan2", "NVIDIA StyleGAN2-ADA (TF or PyTorch) and its forks (InsGen, FakeCLR)"
    ),
    "stylegan2-unreleased": Backbone(
        "stylegan2", "a StyleGAN2 whose code was not released (DigGAN, LT-GAN few-shot)"
    ),
    "biggan-cifar": Backbone(
        "biggan",
        "BigGAN-PyTorch CIFAR as forked by DiffAugment (DiffAugment-biggan-cifar; DigGAN forks it again)",
    ),
    "biggan-compare-gan": Backbone("biggan", "compare_gan BigGAN on TPU (DiffAugment-biggan-imagenet)"),
    "biggan-studiogan": Backbone(
        "biggan", "PyTorch-StudioGAN big_resnet as forked by the lottery paper ('BigGAN and DiffAugGAN/')"
    ),
    "sngan-pytorch": Backbone("sngan", "sngan.pytorch as forked by the lottery paper (SNGAN/)"),
    "unknown": Backbone("", "not stated by the source"),
}


def default_reported_path() -> Path:
    return results_dir() / "reported.csv"


def _known_methods() -> tuple[str, ...]:
    from degan_bench.methods import KNOWN_METHODS

    return KNOWN_METHODS


def _known_datasets() -> list[str]:
    from degan_bench.data.registry import dataset_names

    return dataset_names()


def _protocol_metric(protocol: str) -> str | None:
    """The metric of a protocol id, or None if it is not one of ours."""
    from degan_bench.metrics.protocols import get_protocol

    try:
        return get_protocol(protocol).metric
    except DeganError:
        return None


def _row_problems(row: dict[str, str], methods: tuple[str, ...], datasets: set[str]) -> list[str]:
    problems = []
    paper = PAPERS.get(row["paper"])
    if paper is None:
        problems.append(f"paper {row['paper']!r} is not in PAPERS ({', '.join(PAPERS)})")
    elif row["arxiv"] != paper.arxiv:
        problems.append(f"arxiv {row['arxiv']!r} is not {row['paper']}'s {paper.arxiv!r}")
    if not _VERSION.match(row["arxiv_version"]):
        problems.append(f"arxiv_version {row['arxiv_version']!r} must look like v1, v2+ or be empty")
    for column in ("table", "row", "column", "source"):
        if not row[column].strip():
            problems.append(f"{column} is empty")
    if row["backbone"] not in BACKBONES:
        problems.append(f"backbone {row['backbone']!r} is not one of {', '.join(BACKBONES)}")
    if row["metric"] not in METRICS:
        problems.append(f"metric {row['metric']!r} is not one of {', '.join(METRICS)}")
    if row["protocol"] != UNKNOWN_PROTOCOL:
        metric = _protocol_metric(row["protocol"])
        if metric is None:
            problems.append(f"protocol {row['protocol']!r} is neither a degan-bench protocol nor 'unknown'")
        elif metric != row["metric"]:
            problems.append(f"protocol {row['protocol']} measures {metric}, the row says {row['metric']}")
    try:
        value = float(row["value"])
        if not math.isfinite(value) or value < 0:
            problems.append(f"value {row['value']!r} must be a finite number >= 0")
    except ValueError:
        problems.append(f"value {row['value']!r} is not a number")
    if row["selection"] not in SELECTIONS:
        problems.append(f"selection {row['selection']!r} is not one of {', '.join(SELECTIONS)}")
    if row["verification"] not in VERIFICATION_LEVELS:
        problems.append(
            f"verification {row['verification']!r} is not one of {', '.join(VERIFICATION_LEVELS)}"
        )
    quotes = _QUOTES.match(row["quotes"]) if row["quotes"] else None
    if row["quotes"] and (quotes is None or quotes["paper"] not in PAPERS):
        problems.append(f"quotes {row['quotes']!r} must be empty, a paper of PAPERS or paper@v1")
    elif quotes is not None and quotes["paper"] == row["paper"]:
        problems.append(f"quotes {row['quotes']!r} names the row's own paper")
    if row["reference_only"] not in ("true", "false"):
        problems.append(f"reference_only {row['reference_only']!r} must be true or false")
        return problems
    ours = row["method"] in methods and row["dataset"] in datasets
    if row["reference_only"] == "true":
        if ours:
            problems.append(
                "reference_only is true but method and dataset are both degan-bench names "
                "(set it to false: the cell is reproducible here)"
            )
        if row["method"] not in methods and row["method"] not in REFERENCE_METHODS:
            problems.append(
                f"method {row['method']!r} is neither a degan-bench method nor in REFERENCE_METHODS"
            )
        if row["dataset"] not in datasets and row["dataset"] not in REFERENCE_DATASETS:
            problems.append(f"dataset {row['dataset']!r} is neither registered nor in REFERENCE_DATASETS")
    elif not ours:
        unknown = []
        if row["method"] not in methods:
            unknown.append(f"method {row['method']!r}")
        if row["dataset"] not in datasets:
            unknown.append(f"dataset {row['dataset']!r}")
        problems.append(
            f"{' and '.join(unknown)} unknown to degan-bench; fix the name, or mark the row "
            "reference_only and declare the name in REFERENCE_METHODS / REFERENCE_DATASETS"
        )
    return problems


def validate_rows(rows: list[dict[str, str]], source: str = "reported.csv") -> list[str]:
    """Every problem of ``rows`` (dicts of strings as read from the CSV), as ``source:line: message``."""
    methods = _known_methods()
    datasets = set(_known_datasets())
    problems: list[str] = []
    seen_cells: dict[tuple[str, ...], int] = {}
    seen_lookup: dict[tuple[str, ...], int] = {}
    for index, row in enumerate(rows):
        line = index + 2  # header is line 1
        missing = [c for c in REPORTED_COLUMNS if c not in row or row[c] is None]
        if missing:
            problems.append(f"{source}:{line}: missing columns {', '.join(missing)}")
            continue
        problems.extend(f"{source}:{line}: {p}" for p in _row_problems(row, methods, datasets))
        for key, seen, what in (
            (CELL_KEY, seen_cells, "cell"),
            (LOOKUP_KEY, seen_lookup, "method x dataset"),
        ):
            ident = tuple(row[k] for k in key)
            if ident in seen:
                problems.append(
                    f"{source}:{line}: duplicate {what} {dict(zip(key, ident, strict=True))} "
                    f"(first on line {seen[ident]})"
                )
            else:
                seen[ident] = line
    return problems


def read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header = tuple(reader.fieldnames or ())
            if header != REPORTED_COLUMNS:
                raise DeganError(
                    f"{path}: header is {','.join(header)}",
                    fix=f"use exactly these columns: {','.join(REPORTED_COLUMNS)}",
                )
            return [dict(row) for row in reader]
    except FileNotFoundError:
        raise DeganError(
            f"reported numbers file {path} does not exist",
            fix="pass --reported PATH or restore results/reported.csv",
        ) from None


def load_reported(path: Path | None = None) -> pd.DataFrame:
    """The validated reported numbers (``value`` float, ``reference_only`` bool); errors name the line."""
    path = Path(path) if path is not None else default_reported_path()
    rows = read_rows(path)
    problems = validate_rows(rows, str(path))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DeganError(
            f"{problems[0]}{more}", fix="fix results/reported.csv (schema: degan_bench/results/reported.py)"
        )
    frame = pd.DataFrame(rows, columns=list(REPORTED_COLUMNS))
    frame["value"] = frame["value"].astype(float)
    frame["reference_only"] = frame["reference_only"] == "true"
    frame["arch"] = frame["backbone"].map(lambda b: BACKBONES[b].arch)
    return frame


def lookup(
    reported: pd.DataFrame,
    *,
    paper: str,
    method: str,
    dataset: str,
    metric: str,
    arch: str,
    table: str | None = None,
    arxiv_version: str | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the reported row for one cell, the other versions of it) from ``paper``.

    Rows of the same paper, method, dataset, metric and backbone family are candidates; ``table`` and
    ``arxiv_version`` (when given) pick the primary one; the rest are returned as alternatives."""
    candidates = reported[
        (reported["paper"] == paper)
        & (reported["method"] == method)
        & (reported["dataset"] == dataset)
        & (reported["metric"] == metric)
        & (reported["arch"].isin([arch, ""]))
    ]
    chosen = candidates
    if table is not None:
        chosen = chosen[chosen["table"] == table]
    if arxiv_version is not None:
        chosen = chosen[chosen["arxiv_version"] == arxiv_version]
    if len(chosen) > 1:
        labels = ", ".join(
            f"{r.table} {r.arxiv_version or '(no version)'} {r.backbone}" for r in chosen.itertuples()
        )
        raise DeganError(
            f"several reported numbers for {paper} {method} x {dataset} ({metric}): {labels}",
            fix="name the table and arxiv_version in the table definition's source",
        )
    primary = chosen.iloc[0].to_dict() if len(chosen) == 1 else None
    others = [r.to_dict() for _, r in candidates.iterrows() if primary is None or r.name != chosen.index[0]]
    return primary, others


# -- copies of other papers' numbers --------------------------------------------------------------
@dataclass(frozen=True)
class Conflict:
    """A row that quotes another paper (``copy``) printing a different value than the quoted row
    (``original``); both are dicts of the reported frame's columns."""

    copy: dict[str, Any]
    original: dict[str, Any]

    @property
    def text(self) -> str:
        """The footnote shown on both cells."""
        return (
            f"conflicting copies of this number: {_where(self.copy)} prints {self.copy['value']:g}, "
            f"{_where(self.original)}, which it quotes, prints {self.original['value']:g}"
        )


def _where(row: dict[str, Any]) -> str:
    version = f" arXiv {row['arxiv_version']}" if row["arxiv_version"] else ""
    return f"{row['paper']}{version} {row['table']}"


def _same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in LOOKUP_KEY)


def conflicts(reported: pd.DataFrame) -> list[Conflict]:
    """Every quoting row whose value differs from the row it quotes (same method, dataset and metric
    in the quoted paper and version). A quote of a number we do not hold is not a conflict."""
    quoting = reported[reported["quotes"] != ""]
    quoted = quoting["quotes"].str.extract(_QUOTES.pattern)  # validated on load
    keys = pd.DataFrame(
        {
            "copy": quoting.index,
            "paper": quoted["paper"].to_numpy(),
            "arxiv_version": quoted["version"].fillna("").to_numpy(),
            **{k: quoting[k].to_numpy() for k in ("method", "dataset", "metric")},
        }
    )
    originals = reported.reset_index(names="original")
    pairs = keys.merge(originals, on=["paper", "arxiv_version", "method", "dataset", "metric"])
    found = []
    for copy, original in zip(pairs["copy"], pairs["original"], strict=True):
        a, b = reported.loc[copy].to_dict(), reported.loc[original].to_dict()
        if not math.isclose(float(a["value"]), float(b["value"]), abs_tol=1e-9):
            found.append(Conflict(a, b))
    return found


def conflict_notes(found: list[Conflict], row: dict[str, Any]) -> list[str]:
    """Footnotes for the cell whose reported row is ``row``: every conflict it is part of."""
    return [c.text for c in found if _same_row(row, c.copy) or _same_row(row, c.original)]
