"""Subset rules: which images of a base split each paper's code trains on, reproduced exactly.

Indices always refer to the base split in its *official order* (see each dataset's
``source_order_note`` in :mod:`degan_bench.data.registry`). When the subset is the whole split, every
rule returns all indices in base order, as every upstream code path then skips its selection.

- ``np_choice_seed0`` DiffAugment-BigGAN and DigGAN CIFAR (DiffAugment-biggan-cifar/datasets.py,
  ``CIFAR10.__init__``): the 50k train images of data_batch_1..5 are concatenated, then
  ``np.random.seed(seed); train_idx = np.random.choice(len(self.data), num_samples, replace=False)`` with
  ``--seed 0`` (scripts/*.sh); ``self.data = self.data[train_idx]`` keeps the *choice order*, so the
  frozen file keeps it too.
- ``first_n`` LT-GAN (torchvision CIFAR, ``Subset(np.arange(N))``) and DiffAugment-StyleGAN2 FFHQ
  (``dset.take(N)`` of the FFHQ tfrecord): indices ``0..N-1``; computed, no file needed.
- ``shuffle_seed0`` stylegan2-ada-pytorch ``--subset`` (training/dataset.py ``Dataset.__init__``, also
  InsGen/FakeCLR): ``idx = np.arange(n, dtype=np.int64); np.random.RandomState(seed).shuffle(idx);
  idx = np.sort(idx[:N])`` with ``seed = --seed`` (0 by default), applied only when ``n > N``. Its raw
  index order is the sorted file names of the dataset zip; ours is the natural order of the source file
  names, which is the same for zero-padded names (FFHQ ``00000.png``; ADA's ``img00000000.png``).
- ``tfds_first_n`` DiffAugment-StyleGAN2 TF CIFAR (training/dataset.py: ``tfds.load('cifar10',
  split='train')`` then ``dset.take(N)``). tfds does *not* keep the file order: when it builds the
  dataset it sorts examples by ``int(md5(split_name + str(key)).hexdigest(), 16)`` with key = the
  example's index in the binary batches (tensorflow_datasets 2.1.0, the version DiffAugment's README
  pins: core/hashing.py, core/shuffle.py, image/cifar.py), and the train split is one shard, read in
  order. So the first N are the N indices with the smallest hashes, in that order. Reconstructed from
  the tfds source, not checked against a tfds-built copy (no network here); it also assumes the
  binary and python CIFAR releases list the images in the same order.

Random rules are frozen as committed files ``subsets/<base>-<split>-<rule>-<size>.txt`` (a ``#``
header with rule, base, split, sizes and the sha256 of the index lines, then one index per line). On
first use in a process the file's sha256 is checked and the rule is recomputed and compared, so a
numpy or hashing change cannot silently change the training set. ``python -m degan_bench.data.subsets``
writes missing files (and refuses to overwrite one that differs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from degan_bench.errors import DataError
from degan_bench.schema import did_you_mean

SUBSETS_DIR = Path(__file__).resolve().parent / "subsets"


def _np_choice_seed0(base_count: int, size: int, split: str) -> np.ndarray:
    # Same stream as `np.random.seed(0); np.random.choice(...)`, without touching the global RNG.
    return np.random.RandomState(0).choice(base_count, size, replace=False).astype(np.int64)


def _first_n(base_count: int, size: int, split: str) -> np.ndarray:
    return np.arange(size, dtype=np.int64)


def _shuffle_seed0(base_count: int, size: int, split: str) -> np.ndarray:
    idx = np.arange(base_count, dtype=np.int64)
    np.random.RandomState(0).shuffle(idx)
    return np.sort(idx[:size])


def _tfds_first_n(base_count: int, size: int, split: str) -> np.ndarray:
    salted = hashlib.md5(split.encode())

    def tfds_hash(index: int) -> int:
        h = salted.copy()
        h.update(str(index).encode())
        return int(h.hexdigest(), 16)

    order = sorted(range(base_count), key=tfds_hash)
    return np.asarray(order[:size], dtype=np.int64)


@dataclass(frozen=True)
class SubsetRule:
    name: str
    summary: str
    random: bool  # the selection depends on an RNG or hash stream: frozen as a committed file
    compute: Callable[[int, int, str], np.ndarray]


RULES: dict[str, SubsetRule] = {
    rule.name: rule
    for rule in (
        SubsetRule(
            "np_choice_seed0",
            "np.random.seed(0); np.random.choice(n, N, replace=False), in choice order "
            "(DiffAugment-BigGAN, DigGAN)",
            True,
            _np_choice_seed0,
        ),
        SubsetRule("first_n", "indices 0..N-1 (LT-GAN CIFAR, DiffAugment-StyleGAN2 FFHQ)", False, _first_n),
        SubsetRule(
            "shuffle_seed0",
            "RandomState(0).shuffle(arange(n)), first N, sorted "
            "(stylegan2-ada-pytorch --subset, InsGen, FakeCLR)",
            True,
            _shuffle_seed0,
        ),
        SubsetRule(
            "tfds_first_n",
            "first N in tensorflow-datasets' md5 record order (DiffAugment-StyleGAN2 CIFAR)",
            True,
            _tfds_first_n,
        ),
    )
}


def get_rule(name: str) -> SubsetRule:
    rule = RULES.get(name)
    if rule is None:
        hint = did_you_mean(name, RULES)
        allowed = ", ".join(RULES)
        fix = f"did you mean {hint!r}? (allowed rules: {allowed})" if hint else f"allowed rules: {allowed}"
        raise DataError(f"unknown subset rule {name!r}", fix=fix)
    return rule


def compute_indices(rule: str, base_count: int, size: int, split: str = "train") -> np.ndarray:
    """The rule's indices into a base split of ``base_count`` images (int64, selection order)."""
    selected = get_rule(rule)
    if not 1 <= size <= base_count:
        raise DataError(
            f"subset size {size} is outside 1..{base_count} (the size of the base split)",
            fix="use a subset view whose size fits the prepared base dataset",
        )
    if size == base_count:
        return np.arange(base_count, dtype=np.int64)
    return selected.compute(base_count, size, split)


def index_lines_sha256(indices: np.ndarray) -> str:
    """sha256 of the index lines exactly as stored: one decimal index per line, each ending in \\n."""
    return hashlib.sha256("".join(f"{int(i)}\n" for i in indices).encode()).hexdigest()


def frozen_path(base: str, split: str, rule: str, size: int) -> Path:
    return SUBSETS_DIR / f"{base}-{split}-{rule}-{size}.txt"


def format_frozen(base: str, split: str, rule: str, base_count: int, indices: np.ndarray) -> str:
    header = [
        "degan-bench frozen subset: one index per line into the base split in its official order",
        f"rule: {rule}",
        f"rule_summary: {RULES[rule].summary}",
        f"base: {base}",
        f"split: {split}",
        f"base_count: {base_count}",
        f"size: {len(indices)}",
        f"sha256: {index_lines_sha256(indices)}",
    ]
    return "".join(f"# {line}\n" for line in header) + "".join(f"{int(i)}\n" for i in indices)


def read_frozen(path: Path) -> tuple[dict[str, str], np.ndarray]:
    """Header fields and indices of a frozen subset file; DataError if it is damaged."""
    header: dict[str, str] = {}
    body: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(":")
            if sep:
                header[key.strip()] = value.strip()
        elif line.strip():
            body.append(line.strip())
    try:
        indices = np.asarray([int(v) for v in body], dtype=np.int64)
    except ValueError:
        raise DataError(
            f"{path}: a line is not an integer index", fix="restore the file with `git checkout`"
        ) from None
    actual = index_lines_sha256(indices)
    if header.get("sha256") != actual:
        raise DataError(
            f"{path}: index list sha256 {actual} does not match its header {header.get('sha256')}",
            fix="restore the file with `git checkout`",
        )
    return header, indices


@dataclass(frozen=True)
class SubsetSelection:
    rule: str
    base: str
    split: str
    base_count: int
    indices: np.ndarray
    sha256: str
    frozen_file: Path | None  # the committed file it was checked against, if the rule is random

    def describe(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "base": self.base,
            "split": self.split,
            "base_count": self.base_count,
            "size": len(self.indices),
            "indices_sha256": self.sha256,
            "frozen_file": self.frozen_file.name if self.frozen_file else None,
        }


_verified: dict[tuple[str, str, str, int, int], SubsetSelection] = {}


def select_subset(base: str, split: str, rule: str, base_count: int, size: int) -> SubsetSelection:
    """Indices for ``rule``; random rules are checked against their frozen file once per process."""
    key = (base, split, rule, base_count, size)
    cached = _verified.get(key)
    if cached is not None:
        return cached
    computed = compute_indices(rule, base_count, size, split)
    path = frozen_path(base, split, rule, size)
    frozen_file = None
    if RULES[rule].random and size < base_count and path.exists():
        header, stored = read_frozen(path)
        if header.get("rule") != rule or int(header.get("base_count", -1)) != base_count:
            raise DataError(
                f"{path} is for rule {header.get('rule')!r} over {header.get('base_count')} images, not "
                f"{rule!r} over {base_count}",
                fix="restore the file with `git checkout` or prepare the complete base dataset",
            )
        if not np.array_equal(stored, computed):
            raise DataError(
                f"subset rule {rule!r} no longer reproduces {path.name} (numpy or hashing behaviour changed)",
                fix="use the numpy version from constraints.txt; the committed file is the reference",
            )
        frozen_file = path
    selection = SubsetSelection(
        rule, base, split, base_count, computed, index_lines_sha256(computed), frozen_file
    )
    _verified[key] = selection
    return selection


def frozen_subsets() -> list[tuple[str, str, str, int, int]]:
    """(base, split, rule, base_count, size) of every random rule a paper applies to a registered view."""
    from degan_bench.data.registry import dataset_names, get_dataset_spec

    entries = []
    for name in dataset_names():
        spec = get_dataset_spec(name)
        if spec.subset_size is None:
            continue
        base_count = get_dataset_spec(spec.base).expected_counts[spec.subset_split]
        if spec.subset_size >= base_count:
            continue
        for rule in spec.paper_subset_rules:
            if RULES[rule].random:
                entries.append((spec.base, spec.subset_split, rule, base_count, spec.subset_size))
    return entries


def write_frozen_files() -> list[Path]:
    """Write the frozen file of every entry of :func:`frozen_subsets` that is missing; never overwrite."""
    written = []
    for base, split, rule, base_count, size in frozen_subsets():
        path = frozen_path(base, split, rule, size)
        text = format_frozen(base, split, rule, base_count, compute_indices(rule, base_count, size, split))
        if path.exists():
            if path.read_text(encoding="utf-8") != text:
                raise SystemExit(f"{path} differs from a fresh computation; not overwriting it")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_frozen_files():
        print(f"wrote {written_path}")
