"""A claim file: ``recipes/claims/<name>.yaml``, one headline claim of one paper.

A claim names the **cells** it needs, each like a row of a table (a ``method`` on a ``dataset``, its
``backbone``, ``set`` overrides, where its reported numbers come from), and **checks** over them on one
metric protocol each. It holds when every check holds on our runs. The same checks are also evaluated on
the paper's own numbers (``results/reported.csv``), so the page shows what the paper's table says next to
what our runs say.

Checks (``kind``; "better" follows the metric's direction: lower FID / KID, higher IS):

- ``better``: the first cell is better than each of the others (``[A, B, C]``: A better than B and C);
- ``order``: a chain, each cell better than the next (``[A, B, C]``: A better than B better than C);
- ``improvement``: the first cell improves on the second by at least ``at_least`` (a fraction of the
  second's value, e.g. 0.235 for "23.5 % FID improvement");
- ``matches``: the first cell is not worse than the second beyond noise ("matches the top performance");
- ``within_reported``: each cell is within tolerance of its own reported number, as the leaderboards
  decide it.

A cell with ``use: reported`` stands for its reported number (a reported-only baseline such as a
transfer-learning row); its method need not be a degan-bench method. A cell whose method degan-bench does
not implement yet (a comparison row planned but not built) says ``pending: true``: while the method is
unknown its checks evaluate to ``no recipe``, and once it exists the cell is an ordinary one. A
misspelt method name without ``pending`` is refused on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from degan_bench.errors import DeganError, RecipeError
from degan_bench.metrics.protocols import get_protocol
from degan_bench.paths import recipes_dir
from degan_bench.recipes.loader import definition_names, load_definition, load_definition_file
from degan_bench.recipes.schema import PRESETS
from degan_bench.results import reported as rep
from degan_bench.results.tables import SourceRef, Tolerance
from degan_bench.schema import did_you_mean, param

CheckKind = Literal["better", "order", "improvement", "matches", "within_reported"]
#: how many cells each check kind takes: (fewest, most); None = no upper bound
CHECK_ARITY: dict[str, tuple[int, int | None]] = {
    "better": (2, None),
    "order": (2, None),
    "improvement": (2, 2),
    "matches": (2, 2),
    "within_reported": (1, None),
}
BACKBONES = ("stylegan2", "biggan", "sngan")


@dataclass
class ClaimCell:
    """One cell a claim needs (like a table row on one dataset)."""

    method: str = param(help="a degan-bench method, a reference baseline (use: reported) or a pending one")
    dataset: str = param(help="a registered dataset (or a reference dataset, use: reported)")
    label: str = param("", help="how the page names the cell (default: method on dataset)")
    backbone: str | None = param(
        None, help="stylegan2 | biggan | sngan (default: the method's own, else the dataset's)"
    )
    set: list[str] = param(default_factory=list, help="--set overrides of this cell's recipe")
    source: SourceRef | None = param(
        None, help="where its reported numbers come from (default: the claim's source)"
    )
    reported_method: str | None = param(
        None, help="the method its reported numbers are filed under, when not `method`"
    )
    use: Literal["ours", "reported"] = param(
        "ours", help="'ours': our runs; 'reported': the reported number (a baseline we cannot train)"
    )
    pending: bool = param(
        False,
        help="the method is not a degan-bench method yet (a planned comparison row): no recipe until then",
    )
    note: str | None = param(None, help="what a reader must know about this cell")

    @property
    def reported_key(self) -> str:
        return self.reported_method or self.method

    def display(self) -> str:
        return self.label or f"{self.method} on {self.dataset}"


@dataclass
class Check:
    """One predicate over cells, on one metric protocol."""

    kind: CheckKind = param(help="better | order | improvement | matches | within_reported")
    cells: list[str] = param(help="cell keys, in the order the kind reads them")
    protocol: str = param(help="the metric protocol, e.g. fid10k_test")
    at_least: float = param(
        0.0, help="improvement: the smallest relative improvement claimed (0.235 = 23.5 %)", min=0.0, max=1.0
    )
    note: str | None = param(None, help="what a reader must know about this check")

    def check(self) -> None:
        fewest, most = CHECK_ARITY[self.kind]
        if len(self.cells) < fewest or (most is not None and len(self.cells) > most):
            wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
            raise ValueError(f"a {self.kind} check takes {wanted} cells, got {len(self.cells)}")
        if len(set(self.cells)) != len(self.cells):
            raise ValueError(f"a {self.kind} check names a cell twice")
        if self.at_least and self.kind != "improvement":
            raise ValueError("at_least applies to improvement checks only")
        try:
            get_protocol(self.protocol)
        except DeganError as err:
            raise ValueError(f"protocol: {err}") from None


@dataclass
class ClaimDef:
    """One headline claim (``recipes/claims/<name>.yaml``); ``name`` is the file name."""

    title: str = param(help="the claim in a few words")
    paper: str = param(help="key of results/reported.py PAPERS")
    quote: str = param(help="the claim's sentence, quoted from the paper (abstract or stated place)")
    quote_source: str = param(help="where the quote is printed, e.g. 'arXiv 2106.04566, abstract'")
    cells: dict[str, ClaimCell] = param(help="the cells, by key")
    checks: list[Check] = param(help="the predicates; the claim holds when every one holds")
    source: SourceRef | None = param(None, help="default source of the cells' reported numbers")
    preset: str = param(
        "paper", help="which runs count; verdicts need paper runs (another preset only lists its runs)"
    )
    seeds: int = param(1, help="training seeds per cell that `claims check --run` trains", min=1)
    min_seeds: int = param(1, help="fewest complete runs per cell for a verdict", min=1)
    tolerance: Tolerance = param(default_factory=Tolerance, help="bands and interval confidence")
    notes: list[str] = param(default_factory=list, help="what a reader must know")
    name: str = param("", help="(set from the file name)")

    def check(self) -> None:
        if self.paper not in rep.PAPERS:
            raise ValueError(f"paper {self.paper!r} is not one of {', '.join(rep.PAPERS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} is not one of {', '.join(PRESETS)}")
        if not self.cells or not self.checks:
            raise ValueError("a claim needs cells and checks")
        self.tolerance.check()
        for key, cell in self.cells.items():
            _check_cell(key, cell)
        for i, check in enumerate(self.checks):
            unknown = [c for c in check.cells if c not in self.cells]
            if unknown:
                hint = did_you_mean(unknown[0], self.cells)
                raise ValueError(
                    f"checks[{i}] names unknown cell {unknown[0]!r}"
                    + (f" (did you mean {hint!r}?)" if hint else f"; cells: {', '.join(self.cells)}")
                )
            if check.kind == "within_reported" and any(self.cells[c].use == "reported" for c in check.cells):
                raise ValueError(f"checks[{i}]: within_reported compares our runs; a reported cell has none")
            if all(self.cells[c].use == "reported" for c in check.cells):
                raise ValueError(f"checks[{i}] involves no cell of ours: nothing to check")

    def source_of(self, cell: ClaimCell) -> SourceRef:
        return cell.source or self.source or SourceRef(paper=self.paper)

    def protocols_of(self, key: str) -> list[str]:
        """The protocols the checks read cell ``key`` under, in order of first use."""
        return list(dict.fromkeys(c.protocol for c in self.checks if key in c.cells))


def _check_cell(key: str, cell: ClaimCell) -> None:
    from degan_bench.data.registry import dataset_names
    from degan_bench.methods import KNOWN_METHODS

    where = f"cells.{key}"
    known = cell.method in KNOWN_METHODS
    if cell.backbone is not None and cell.backbone not in BACKBONES:
        raise ValueError(f"{where}: backbone {cell.backbone!r} is not one of {', '.join(BACKBONES)}")
    for ref in [cell.source] if cell.source else []:
        if ref.paper not in rep.PAPERS:
            raise ValueError(f"{where}: source paper {ref.paper!r} is not one of {', '.join(rep.PAPERS)}")
    datasets = set(dataset_names())
    if cell.use == "reported":
        if cell.dataset not in datasets | set(rep.REFERENCE_DATASETS):
            raise ValueError(
                f"{where}: dataset {cell.dataset!r} is neither registered nor a reference dataset"
            )
        if cell.set or cell.pending:
            raise ValueError(f"{where}: a reported cell takes neither set nor pending")
        if cell.reported_key not in set(KNOWN_METHODS) | set(rep.REFERENCE_METHODS):
            raise ValueError(f"{where}: {cell.reported_key!r} has no reported numbers under that name")
        return
    if cell.dataset not in datasets:
        hint = did_you_mean(cell.dataset, datasets)
        raise ValueError(
            f"{where}: dataset {cell.dataset!r} is not registered"
            + (f" (did you mean {hint!r}?)" if hint else "")
        )
    if not known and not cell.pending:
        hint = did_you_mean(cell.method, KNOWN_METHODS)
        raise ValueError(
            f"{where}: method {cell.method!r} is not a degan-bench method"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + "; mark a method not implemented yet with pending: true, a baseline we cannot train with "
            "use: reported"
        )
    if cell.reported_method is not None and cell.reported_method not in set(KNOWN_METHODS) | set(
        rep.REFERENCE_METHODS
    ):
        raise ValueError(f"{where}: reported_method {cell.reported_method!r} is unknown")


def claims_dir() -> Path:
    return recipes_dir() / "claims"


def claim_names(root: Path | None = None) -> list[str]:
    return definition_names(root or claims_dir())


def load_claim_file(path: Path) -> ClaimDef:
    return load_definition_file(ClaimDef, path)


def load_claim(name: str, root: Path | None = None) -> ClaimDef:
    """A claim by name (``insgen-ffhq2k``) or by path to its YAML file."""
    return load_definition(ClaimDef, name, root or claims_dir(), "claim")


def load_claims(names: list[str] | None = None, *, all_claims: bool = False) -> list[ClaimDef]:
    if all_claims or not names:
        if not all_claims:
            raise RecipeError("name a claim or pass --all", fix=f"claims: {', '.join(claim_names())}")
        return [load_claim(n) for n in claim_names()]
    return [load_claim(n) for n in names]
