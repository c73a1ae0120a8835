"""``results/reported.csv``: the committed file validates, and the validator catches each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from results_support import reported_row, write_reported

from degan_bench.errors import DeganError
from degan_bench.metrics.protocols import get_protocol
from degan_bench.results import reported as rep


def test_committed_reported_csv_is_valid() -> None:
    frame = rep.load_reported()
    assert len(frame) > 200
    assert frame["value"].dtype == float and (frame["value"] > 0).all()
    assert not frame.duplicated(list(rep.CELL_KEY)).any()
    for protocol in set(frame["protocol"]) - {rep.UNKNOWN_PROTOCOL}:
        get_protocol(protocol)  # every protocol id is ours
    assert set(frame["verification"]) <= set(rep.VERIFICATION_LEVELS)


def test_committed_numbers_that_were_checked_against_the_readmes() -> None:
    frame = rep.load_reported()

    def value(**where: str) -> float:
        rows = frame
        for key, wanted in where.items():
            rows = rows[rows[key] == wanted]
        assert len(rows) == 1, where
        return float(rows.iloc[0]["value"])

    # DiffAugment low-shot: v2+ (batch 16) and v1 (batch 32) are separate rows of the same cell
    assert value(method="diffaugment", dataset="obama-100", arxiv_version="v2+") == 46.87
    assert value(method="diffaugment", dataset="obama-100", arxiv_version="v1") == 54.39
    assert value(method="stylegan2", dataset="animalface-dog", arxiv_version="v1") == 164.54
    assert (
        value(table="README CIFAR (BigGAN)", method="diffaugment", dataset="cifar10-10pct", metric="fid")
        == 22.40
    )
    assert value(table="README FFHQ/LSUN-Cat", method="stylegan2", dataset="ffhq-1k") == 62.16
    # the July-2020 FFHQ baselines, checked in the README history (introduced @7df0942, replaced @fa2ad3e)
    july = frame[frame["table"] == "README FFHQ (July 2020)"].set_index("dataset")["value"].to_dict()
    assert july == {"ffhq-10k": 14.80, "ffhq-5k": 26.51, "ffhq-1k": 62.25}
    assert set(frame[frame["table"] == "README FFHQ (July 2020)"]["verification"]) == {"readme"}
    # the lottery paper's Table 5, read from the paper: its own dense run and its DiffAugment-v1 baseline
    lottery = frame[(frame["paper"] == "lottery") & (frame["table"] == "Table 5")]
    assert set(lottery["verification"]) == {"paper"} and set(lottery["protocol"]) == {"fid5k_train"}
    dense = lottery[lottery["method"] == "diffaugment-advaug"].sort_values("value")["value"].tolist()
    assert dense == [15.94, 35.46, 54.02, 54.11, 72.47]
    baseline = lottery[lottery["method"] == "stylegan2"]
    assert set(baseline["quotes"]) == {"diffaugment@v1"} and 89.18 in set(baseline["value"])
    # GenCo's row mixes variants; each cell says which one it is
    genco = frame[frame["paper"] == "genco"].set_index("dataset")["row"]
    assert (
        genco["animalface-dog"] == "GenCo (ADA-based)" and genco["obama-100"] == "GenCo (DiffAugment-based)"
    )
    fakeclr = frame[frame["paper"] == "fakeclr"]
    assert set(fakeclr[fakeclr["method"] == "fakeclr"]["protocol"]) == {rep.UNKNOWN_PROTOCOL}
    biggan = frame[frame["table"] == "README CIFAR (BigGAN)"]
    assert set(biggan["selection"]) == {"best_on_test"}


def test_lookup_picks_the_version_and_lists_the_others() -> None:
    frame = rep.load_reported()
    primary, others = rep.lookup(
        frame,
        paper="diffaugment",
        method="stylegan2",
        dataset="obama-100",
        metric="fid",
        arch="stylegan2",
        table="Table 4",
        arxiv_version="v2+",
    )
    assert primary is not None and primary["value"] == 80.20
    assert [o["value"] for o in others] == [89.18]
    with pytest.raises(DeganError, match="several reported numbers"):
        rep.lookup(
            frame,
            paper="diffaugment",
            method="stylegan2",
            dataset="obama-100",
            metric="fid",
            arch="stylegan2",
            table="Table 4",
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "difaugment"}, "method 'difaugment' unknown to degan-bench"),
        ({"dataset": "obama100"}, "dataset 'obama100' unknown"),
        ({"method": "genco"}, "mark the row reference_only"),
        ({"reference_only": "true"}, "reference_only is true but method and dataset are both"),
        ({"protocol": "fid5k-train"}, "neither a degan-bench protocol nor 'unknown'"),
        ({"protocol": "is10k"}, "measures is, the row says fid"),
        ({"value": "n/a"}, "is not a number"),
        ({"arxiv": "2006.1073"}, "is not diffaugment's"),
        ({"verification": "papers"}, "verification 'papers' is not one of"),
        ({"quotes": "nobody"}, "quotes 'nobody' must be empty, a paper of PAPERS or paper@v1"),
        ({"quotes": "lottery@2"}, "quotes 'lottery@2' must be empty"),
        ({"quotes": "diffaugment@v1"}, "names the row's own paper"),
        ({"selection": "best"}, "selection 'best' is not one of"),
        ({"backbone": "stylegan3"}, "backbone 'stylegan3'"),
        ({"arxiv_version": "2"}, "must look like v1"),
    ],
)
def test_validator_rejects_bad_rows(tmp_path: Path, change: dict[str, str], message: str) -> None:
    path = write_reported(tmp_path / "reported.csv", [reported_row(**change)])
    with pytest.raises(DeganError, match=r"reported\.csv:2: ") as err:
        rep.load_reported(path)
    assert message in str(err.value)


def test_validator_rejects_duplicate_cells_and_wrong_headers(tmp_path: Path) -> None:
    path = write_reported(tmp_path / "reported.csv", [reported_row(), reported_row(value="81")])
    with pytest.raises(DeganError, match=r"reported.csv:3: duplicate cell .*first on line 2"):
        rep.load_reported(path)
    path.write_text("paper,value\ndiffaugment,1\n")
    with pytest.raises(DeganError, match="use exactly these columns"):
        rep.load_reported(path)
    reference = reported_row(method="genco", reference_only="true", row="GenCo")
    assert rep.validate_rows([reference]) == []


def test_committed_copies_that_disagree_are_found() -> None:
    """MineGAN on Grumpy cat is 34.54 in DiffAugment's Table 4 and 35.54 in the lottery paper's copy; the
    other copied numbers agree."""
    found = rep.conflicts(rep.load_reported())
    assert [(c.copy["paper"], c.original["paper"], c.copy["method"], c.copy["dataset"]) for c in found] == [
        ("lottery", "diffaugment", "minegan", "grumpy-cat-100")
    ]
    assert (found[0].copy["value"], found[0].original["value"]) == (35.54, 34.54)
    assert "lottery arXiv v3 Table 5 prints 35.54" in found[0].text and "prints 34.54" in found[0].text


def test_conflicts_follow_the_quoted_version(tmp_path: Path) -> None:
    copy = {"paper": "lottery", "arxiv": "2103.00397", "table": "Table 5", "arxiv_version": ""}
    rows = [
        reported_row(),  # diffaugment v2+ 80.00
        reported_row(arxiv_version="v1", value="90.00"),
        reported_row(**copy, quotes="diffaugment@v1", value="90.00"),  # agrees with v1 (not with v2+)
        reported_row(**copy, row="other", method="diffaugment", quotes="diffaugment@v2+", value="44.00"),
        reported_row(row="StyleGAN2 + DiffAugment", method="diffaugment", value="45.00"),
    ]
    frame = rep.load_reported(write_reported(tmp_path / "reported.csv", rows))
    found = rep.conflicts(frame)
    assert [(c.copy["value"], c.original["value"]) for c in found] == [(44.0, 45.0)]
    original = frame.iloc[4].to_dict()
    assert rep.conflict_notes(found, original) == [found[0].text]
    assert rep.conflict_notes(found, frame.iloc[0].to_dict()) == []
