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
        ({"method": "lecam"}, "mark the row reference_only"),
        ({"reference_only": "true"}, "reference_only is true but method and dataset are both"),
        ({"protocol": "fid5k-train"}, "neither a degan-bench protocol nor 'unknown'"),
        ({"protocol": "is10k"}, "measures is, the row says fid"),
        ({"value": "n/a"}, "is not a number"),
        ({"arxiv": "2006.1073"}, "is not diffaugment's"),
        ({"verification": "paper"}, "verification 'paper' is not one of"),
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
    reference = reported_row(method="lecam", reference_only="true", row="LeCam")
    assert rep.validate_rows([reference]) == []
