"""Golden pages of the tables whose comparison rows are CR-BigGAN, LeCam and the lottery paper's Table 4,
built without runs (DEGAN_BENCH_UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import pytest
from results_support import check_golden

from degan_bench.results import reported as rep
from degan_bench.results.render import to_markdown
from degan_bench.results.tables import build_table, load_table


@pytest.mark.parametrize("name", ["diffaugment-cifar-biggan", "diggan-cifar", "lottery-stylegan2-cifar100"])
def test_page_matches_golden_file(name: str) -> None:
    text = to_markdown(build_table(load_table(name), [], rep.load_reported()))
    check_golden(f"page_{name}.md", text)
