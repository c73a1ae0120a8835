"""The datasets degan-bench knows: official sources, checksums, sizes, licenses, and subset views.

A :class:`DatasetSpec` is either a *base* dataset, prepared from its archive into the store
(:mod:`degan_bench.data.store`), or a *subset view* of a base (``cifar10-10pct``, ``ffhq-2k``): the
view's ``subset_split`` is the base split reduced to ``subset_size`` images by a subset rule
(:mod:`degan_bench.data.subsets`); the view's other splits are the base's, unchanged.

Checksums are recorded only where a trustworthy source documents them (never guessed):

- CIFAR python tarballs: sha256 as pinned by Keras (``keras/datasets/cifar10.py`` / ``cifar100.py``
  ``file_hash``) and md5 as published by torchvision (``torchvision/datasets/cifar.py``; for CIFAR-100
  repeated in DiffAugment-biggan-cifar/datasets.py); both are verified.
- DiffAugment 100-shot / AnimalFace zips, AFHQ: no checksum is published; downloads are unverified
  and the manifest says so (``checksum: null`` with a note). The sha256 of what was used is recorded.
- FFHQ: NVIDIA publishes per-file md5s in ``ffhq-dataset-v2.json`` but no archive checksum; the
  images come from Google Drive through NVIDIA's script and are prepared from a local copy.

``known_file_sets`` maps the sha256 of a set of image files (sha256 of the newline-joined sorted
per-file sha256 hex digests, as in ``../shared/data/README.md``) to where such a copy came from. It is
provenance, not an official checksum: those copies were never compared with the official archives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from degan_bench.errors import DataError
from degan_bench.schema import did_you_mean

Layout = Literal["images", "cifar", "embedded"]
ResizeFilter = Literal["auto", "lanczos"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# The fine label names in label order, as in the official ``meta`` pickle of cifar-100-python.
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose",
    "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel",
    "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip


@dataclass(frozen=True)
class DownloadSource:
    """One official archive. ``sha256``/``md5`` are None where nobody trustworthy publishes them."""

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    checksum_note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    base: str
    splits: tuple[str, ...]
    native_resolution: int  # the resolution the papers train at; ``prepare`` defaults to it
    expected_counts: dict[str, int] = field(hash=False)
    layout: Layout = "images"
    # For ``images``: keep only files under this directory sequence (AFHQ's "train/cat"); None = all.
    member_dir: str | None = None
    resize_filter: ResizeFilter = "auto"
    sources: tuple[DownloadSource, ...] = ()
    # How to get the data where no direct download exists (FFHQ); "{prepare}" becomes the prepare command.
    manual_download: str = ""
    license: str = ""
    citation: str = ""
    class_names: tuple[str, ...] = ()
    subset_size: int | None = None
    subset_split: str = "train"
    default_subset_rule: str | None = None
    paper_subset_rules: dict[str, str] = field(default_factory=dict, hash=False)  # rule -> who uses it
    known_file_sets: dict[str, str] = field(default_factory=dict, hash=False)
    source_order_note: str = ""
    # The backbone (model.arch) `degan-bench run METHOD DATASET` trains when --backbone is not given.
    default_backbone: str = "stylegan2"

    @property
    def is_subset(self) -> bool:
        return self.name != self.base

    @property
    def has_labels(self) -> bool:
        return bool(self.class_names)


# ---------------------------------------------------------------------------------------------------
# Base datasets

_DIFFAUG_URL = "https://data-efficient-gans.mit.edu/datasets/{}.zip"
_DIFFAUG_NOTE = (
    "no checksum is published for DiffAugment's zips (DiffAugment-stylegan2/training/dataset_tool.py "
    "downloads them unverified); the sha256 of the archive used is recorded in the manifest"
)
_DIFFAUG_CITATION = (
    "Zhao, Liu, Lin, Zhu, Han. Differentiable Augmentation for Data-Efficient GAN Training. NeurIPS 2020."
)
_DIFFAUG_LICENSE = "distributed by the DiffAugment authors for research use; no explicit license is stated"
_SHARED_PROVENANCE = (
    "the copy in ../shared/data/{} (taken from public GitHub repositories that committed it beside "
    "DiffAugment's prepared records; never compared byte-for-byte with the official archive)"
)
_FEW_SHOT_ORDER = (
    "file names in natural numeric order (0.jpg, 1.jpg, ..., 99.jpg); DiffAugment's TF tool sorts them "
    "as strings and writes its tfrecord in a RandomState(123) permutation, which changes no image"
)


def _few_shot(name: str, upstream: str, count: int, what: str, set_sha256: str | None) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        description=f"DiffAugment {what} ({count} images, 256x256)",
        base=name,
        splits=("train",),
        native_resolution=256,
        expected_counts={"train": count},
        sources=(
            DownloadSource(_DIFFAUG_URL.format(upstream), f"{upstream}.zip", checksum_note=_DIFFAUG_NOTE),
        ),
        license=_DIFFAUG_LICENSE,
        citation=_DIFFAUG_CITATION,
        known_file_sets={set_sha256: _SHARED_PROVENANCE.format(upstream)} if set_sha256 else {},
        source_order_note=_FEW_SHOT_ORDER,
    )


def _animal_face(name: str, upstream: str, count: int, animal: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        description=f"AnimalFace {animal} as distributed by DiffAugment ({count} images, trained at 256x256)",
        base=name,
        splits=("train",),
        native_resolution=256,
        expected_counts={"train": count},
        # DiffAugment's dataset_tool resizes every image with PIL ANTIALIAS (= Lanczos).
        resize_filter="lanczos",
        sources=(
            DownloadSource(_DIFFAUG_URL.format(upstream), f"{upstream}.zip", checksum_note=_DIFFAUG_NOTE),
        ),
        license=_DIFFAUG_LICENSE + " (images from the AnimalFace dataset of Si & Zhu)",
        citation=_DIFFAUG_CITATION
        + " AnimalFace: Si, Zhu. Learning Hybrid Image Templates (HIT) by Information Projection. TPAMI.",
        source_order_note=_FEW_SHOT_ORDER.replace(" (0.jpg, 1.jpg, ..., 99.jpg)", ""),
    )


_CIFAR_CITATION = "Krizhevsky. Learning Multiple Layers of Features from Tiny Images. Tech. report, 2009."
_CIFAR_LICENSE = "no license stated by the authors; distributed for research at https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_ORDER = (
    "official order: train = data_batch_1..5 (CIFAR-10) or 'train' (CIFAR-100) concatenated, test = "
    "test_batch / 'test'; this is what torchvision and DiffAugment-biggan-cifar index. A class-folder "
    "JPEG copy (train/<class>/NNNN.jpg) is ordered by class, then file number, and is lossy"
)

_CIFAR10 = DatasetSpec(
    name="cifar10",
    description="CIFAR-10, 32x32, 10 classes (train 50k / test 10k, labels)",
    base="cifar10",
    splits=("train", "test"),
    native_resolution=32,
    expected_counts={"train": 50000, "test": 10000},
    layout="cifar",
    sources=(
        DownloadSource(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
            sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            md5="c58f30108f718f92721af3b95e74349a",
            checksum_note=(
                "sha256 as pinned in keras/datasets/cifar10.py; md5 as in torchvision/datasets/cifar.py"
            ),
        ),
    ),
    license=_CIFAR_LICENSE,
    citation=_CIFAR_CITATION,
    class_names=CIFAR10_CLASSES,
    default_backbone="biggan",
    known_file_sets={
        "d718d6f0d1854c7ce2413d7a26cb6b366408cc628832f3acab53550b91c0698d": (
            "../shared/data/cifar10-jpeg-q75.zip: a LOSSY JPEG (quality ~75) re-encoding of CIFAR-10, not "
            "the official pixels; fine for training and relative comparisons, not an exact FID reference"
        )
    },
    source_order_note=_CIFAR_ORDER,
)

_CIFAR100 = DatasetSpec(
    name="cifar100",
    description="CIFAR-100, 32x32, 100 fine classes (train 50k / test 10k, labels)",
    base="cifar100",
    splits=("train", "test"),
    native_resolution=32,
    expected_counts={"train": 50000, "test": 10000},
    layout="cifar",
    sources=(
        DownloadSource(
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "cifar-100-python.tar.gz",
            sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
            md5="eb9058c3a382ffc7106e4002c42a8d85",
            checksum_note=(
                "sha256 as pinned in keras/datasets/cifar100.py; md5 as in torchvision/datasets/cifar.py and "
                "DiffAugment-biggan-cifar/datasets.py"
            ),
        ),
    ),
    license=_CIFAR_LICENSE,
    citation=_CIFAR_CITATION,
    class_names=CIFAR100_CLASSES,
    default_backbone="biggan",
    source_order_note=_CIFAR_ORDER,
)

_FFHQ_MANUAL = (
    "FFHQ is hosted on Google Drive by NVIDIA (https://github.com/NVlabs/ffhq-dataset); get the 1024x1024 "
    "PNGs with `python download_ffhq.py --images` (89 GB) from that repository, then run "
    "`{prepare} --from <dir>/images1024x1024` (a .zip of the PNGs or a stylegan2-ada-pytorch dataset zip "
    "also works)"
)

_FFHQ = DatasetSpec(
    name="ffhq",
    description="FFHQ, 70k aligned faces (1024x1024 PNG source), prepared at 256x256",
    base="ffhq",
    splits=("train",),
    native_resolution=256,
    expected_counts={"train": 70000},
    manual_download=_FFHQ_MANUAL,
    license=(
        "dataset CC BY-NC-SA 4.0 (NVIDIA); images CC BY 2.0 / BY-NC 2.0 / PDM 1.0 / CC0 1.0 / US Gov works, "
        "see ffhq-dataset-v2.json"
    ),
    citation="Karras, Laine, Aila. A Style-Based Generator Architecture for GANs. CVPR 2019.",
    source_order_note=(
        "file names in natural order: images1024x1024/00000/00000.png .. 69/69999.png, i.e. the FFHQ "
        "index; for zero-padded names this equals stylegan2-ada-pytorch's sorted(file names). "
        "1024->256 uses PIL BOX (an exact 4x4 average), as stylegan2-ada-pytorch's README requires "
        "(--resize-filter=box) to reproduce its FIDs; NVIDIA's TF ffhq-r08 tfrecords hold np.rint of the "
        "same average, so a pixel can differ by 1. Assumed, not verified: the order of NVIDIA's FFHQ "
        "tfrecords (whose first N images DiffAugment trains on) is the FFHQ index order"
    ),
)

_AFHQ_SOURCE = DownloadSource(
    # clovaai/stargan-v2 download.sh uses ?dl=0; dl=1 makes Dropbox send the file itself.
    "https://www.dropbox.com/s/t9l9o3vsx2jai3z/afhq.zip?dl=1",
    "afhq.zip",
    checksum_note="no checksum is published for AFHQ (clovaai/stargan-v2 download.sh fetches it unverified)",
)


def _afhq(animal: str, count: int) -> DatasetSpec:
    return DatasetSpec(
        name=f"afhq-{animal}",
        description=f"AFHQ {animal} training set ({count} images, 512x512)",
        base=f"afhq-{animal}",
        splits=("train",),
        native_resolution=512,
        expected_counts={"train": count},
        member_dir=f"train/{animal}",
        sources=(_AFHQ_SOURCE,),
        license="CC BY-NC 4.0 (NAVER Corp., clovaai/stargan-v2)",
        citation="Choi, Uh, Yoo, Ha. StarGAN v2: Diverse Image Synthesis for Multiple Domains. CVPR 2020.",
        source_order_note=(
            f"file names under afhq/train/{animal}/ in natural order (= sorted names, as "
            f"stylegan2-ada-pytorch's dataset_tool --source=afhq/train/{animal} reads them)"
        ),
    )


_SHAPES = DatasetSpec(
    name="shapes-100",
    description="embedded demo set: 100 procedurally drawn 64x64 shapes and textures (no download)",
    base="shapes-100",
    splits=("train",),
    native_resolution=64,
    expected_counts={"train": 100},
    layout="embedded",
    license="MIT (generated by degan-bench, degan_bench/data/shapes.py)",
    citation="degan-bench shapes-100 (procedural, seed fixed in degan_bench/data/shapes.py)",
    source_order_note="generation order",
)

# ---------------------------------------------------------------------------------------------------
# Subset views

_CIFAR_RULE_USERS = {
    "np_choice_seed0": "DiffAugment-BigGAN and DigGAN (DiffAugment-biggan-cifar/datasets.py, --num_samples)",
    "tfds_first_n": "DiffAugment-StyleGAN2 TF (training/dataset.py: tfds cifar train split, dset.take(N))",
    "first_n": "LT-GAN SNGAN/BigGAN (torchvision CIFAR, Subset(np.arange(N)))",
}
_FFHQ_RULE_USERS = {
    "first_n": "DiffAugment-StyleGAN2 TF (run_ffhq.py --num-samples: first N of the FFHQ tfrecord)",
    "shuffle_seed0": (
        "stylegan2-ada-pytorch --subset, InsGen, FakeCLR (RandomState(seed=0) shuffle, first N, sorted)"
    ),
}


def _cifar_view(base: DatasetSpec, percent: int) -> DatasetSpec:
    size = base.expected_counts["train"] * percent // 100
    return DatasetSpec(
        name=f"{base.name}-{percent}pct",
        description=f"{base.name} with {percent}% of the training set ({size} images); test set unchanged",
        base=base.name,
        splits=base.splits,
        native_resolution=base.native_resolution,
        expected_counts={"train": size, "test": base.expected_counts["test"]},
        layout=base.layout,
        sources=base.sources,
        license=base.license,
        citation=base.citation,
        class_names=base.class_names,
        subset_size=size,
        default_subset_rule="np_choice_seed0",
        paper_subset_rules=dict(_CIFAR_RULE_USERS),
        source_order_note=base.source_order_note,
        default_backbone=base.default_backbone,
    )


#: The lottery-ticket paper's SNGAN data axis (Figure 4: 10-90 % of CIFAR-10). Only its code uses these
#: fractions: SNGAN/datasets.py ImageDatasetLess keeps ``Subset(train, np.arange(int(len(train) * ratio)))``,
#: the first N images of the torchvision train set (N = int(50000 * ratio) = 15000, 25000, 35000, 45000).
LOTTERY_CIFAR10_PERCENTS: tuple[int, ...] = (30, 50, 70, 90)


def _lottery_cifar_view(base: DatasetSpec, percent: int) -> DatasetSpec:
    """A CIFAR view only the lottery code trains on: its rule (``first_n``) is the default and the only
    one a paper applies."""
    view = _cifar_view(base, percent)
    return dataclasses.replace(
        view,
        default_subset_rule="first_n",
        paper_subset_rules={"first_n": _CIFAR_RULE_USERS["first_n"]},
    )


def _ffhq_view(thousands: int) -> DatasetSpec:
    size = thousands * 1000
    # Default to the rule of the papers that use this size: 2k is ADA/InsGen only, 1k/5k/30k DiffAugment
    # only; 10k is used by both (recipes name the rule explicitly).
    rule = "shuffle_seed0" if thousands in (2, 10) else "first_n"
    return DatasetSpec(
        name=f"ffhq-{thousands}k",
        description=f"FFHQ subset of {size} training images at 256x256 (FID reference: all 70k)",
        base="ffhq",
        splits=("train",),
        native_resolution=256,
        expected_counts={"train": size},
        manual_download=_FFHQ_MANUAL,
        license=_FFHQ.license,
        citation=_FFHQ.citation,
        subset_size=size,
        default_subset_rule=rule,
        paper_subset_rules=dict(_FFHQ_RULE_USERS),
        source_order_note=_FFHQ.source_order_note,
    )


def _build() -> dict[str, DatasetSpec]:
    specs = [
        _few_shot("obama-100", "100-shot-obama", 100, "100-shot Obama",
                  "da74f6d4770a511327e8e5607a3e1c2ac0e28e2c042a0cbd262915da1699d6be"),
        _few_shot("grumpy-cat-100", "100-shot-grumpy_cat", 100, "100-shot Grumpy Cat",
                  "bd1a3418f9787c6edb237581d442f74ee68cbd49a9c318349551cd3b687d5a6b"),
        _few_shot("panda-100", "100-shot-panda", 100, "100-shot Panda",
                  "8db76ed6ac88c8c3d8aa3fd28bad61498dcd20d57d99e1d2fb632d08a4c38061"),
        _animal_face("animalface-cat", "AnimalFace-cat", 160, "cat"),
        _animal_face("animalface-dog", "AnimalFace-dog", 389, "dog"),
        _CIFAR10,
        _CIFAR100,
        *(_cifar_view(base, pct) for base in (_CIFAR10, _CIFAR100) for pct in (10, 20, 100)),
        *(_lottery_cifar_view(_CIFAR10, pct) for pct in LOTTERY_CIFAR10_PERCENTS),
        _FFHQ,
        *(_ffhq_view(k) for k in (1, 2, 5, 10, 30, 70)),
        _afhq("cat", 5153),
        _afhq("dog", 4739),
        _afhq("wild", 4738),
        _SHAPES,
    ]  # fmt: skip
    return {spec.name: spec for spec in specs}


_REGISTRY: dict[str, DatasetSpec] = _build()


def dataset_names() -> list[str]:
    """Every registered dataset name, in registry order."""
    return list(_REGISTRY)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; a :class:`DataError` with a did-you-mean when it is unknown."""
    spec = _REGISTRY.get(name)
    if spec is not None:
        return spec
    hint = did_you_mean(name, _REGISTRY)
    fix = f"did you mean {hint!r}?" if hint else "see `degan-bench data list` for the known datasets"
    raise DataError(f"unknown dataset {name!r}", fix=fix)
