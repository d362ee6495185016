"""`mloop data validate` as a user runs it: version a table, change it, version it again, check.

Every case writes real CSV files, adds them with `mloop data add` and validates the new version
against the recorded profile of the one before (or the one named with `--against`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import CliResult

N = 300
Cli = Callable[..., CliResult]


def table() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    return pd.DataFrame(
        {
            "id": np.arange(N),
            "price": rng.normal(50.0, 10.0, N).round(2),
            "quantity": rng.integers(1, 10, N),
            "region": rng.choice(["north", "south", "east"], N),
        }
    )


def add(cli: Cli, root: Path, frame: pd.DataFrame, name: str = "sales", path: str = "") -> None:
    rel = path or "data/sales.csv"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / rel, index=False)
    result = cli("data", "add", name, rel)
    assert result.code == 0, result.err


def validate(cli: Cli, *args: str) -> tuple[CliResult, dict[str, Any]]:
    """The text run and the --json run of the same validation."""
    text = cli("data", "validate", *args)
    as_json = cli("data", "validate", *args, "--json")
    assert as_json.code == text.code, (text.err, as_json.err)
    return text, json.loads(as_json.out)


def failures(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["column"], f["check"]) for t in report["tables"] for f in t["failures"]}


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Another delivery of the same data: shuffled, a few rows fewer."""
    return frame.sample(frac=0.9, random_state=1).reset_index(drop=True)


def with_value(column: str, row: int, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        changed = frame.astype({column: object})
        changed.loc[row, column] = value
        return changed

    return change


CASES = [
    pytest.param(
        with_value("region", 7, "west"), {("region", "category")}, "row 7: region='west'", id="cat"
    ),
    pytest.param(
        with_value("price", 11, 10_000.0), {("price", "range")}, "row 11: price=10000.0", id="range"
    ),
    pytest.param(
        with_value("quantity", 13, "many"),
        {("quantity", "dtype")},
        "row 13: quantity='many'",
        id="dtype",
    ),
    pytest.param(
        with_value("price", 17, None), {("price", "nulls")}, "row 17: price=None", id="nulls"
    ),
    pytest.param(
        lambda f: f.drop(columns="region"), {("region", "missing_column")}, "", id="missing"
    ),
    pytest.param(
        lambda f: f.assign(channel="web"), {("channel", "extra_column")}, "", id="extra-column"
    ),
    pytest.param(
        lambda f: f.assign(price=f["price"] + 2 * f["price"].std()),
        {("price", "psi"), ("price", "outside_range"), ("price", "range")},
        "row 0: price=",
        id="shifted",
    ),
]


def test_a_clean_second_version_passes(project: Path, cli: Cli) -> None:
    add(cli, project, table())
    add(cli, project, clean(table()))
    text, report = validate(cli, "sales")
    assert text.code == 0, text.out + text.err
    assert text.out.splitlines() == [
        "sales:2 against sales:1: ok",
        f"data/sales.csv: ok ({int(N * 0.9)} rows, 4 columns)",
    ]
    assert report["ok"] is True
    assert report["tables"][0]["version"] == "sales:2"


@pytest.mark.parametrize(("change", "expected", "row"), CASES)
def test_a_broken_version_fails_naming_column_check_and_rows(
    project: Path,
    cli: Cli,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    expected: set[tuple[str, str]],
    row: str,
) -> None:
    add(cli, project, table())
    add(cli, project, change(table()))
    text, report = validate(cli, "sales:2")
    assert text.code == 1, text.err
    assert text.out.startswith("sales:2 against sales:1: failed\n")
    assert failures(report) == expected
    for column, check in expected:
        assert f"  {column}: {check}: " in text.out
    assert row in text.out
    assert report["ok"] is False
    for failure in report["tables"][0]["failures"]:
        assert failure["message"]
        assert len(failure["failing_rows"]) <= 5
        if failure["failing_rows"]:
            first = failure["failing_rows"][0]
            assert isinstance(first["row"], int)
            assert next(iter(first["values"])) == failure["column"]  # the failing value first


def test_against_names_the_reference(project: Path, cli: Cli) -> None:
    add(cli, project, table())
    add(cli, project, table().assign(price=table()["price"] * 3))
    add(cli, project, clean(table()))
    against_previous, _ = validate(cli, "sales:3")
    assert against_previous.code == 1
    assert "sales:3 against sales:2: failed" in against_previous.out
    against_first, report = validate(cli, "sales:3", "--against", "sales:1")
    assert against_first.code == 0, against_first.out
    assert report["tables"][0]["reference"] == "sales:1"


def test_first_version_validates_against_another_dataset(project: Path, cli: Cli) -> None:
    add(cli, project, table(), name="train", path="data/train.csv")
    add(cli, project, clean(table()), name="sales", path="data/incoming/june.csv")
    text, report = validate(cli, "sales", "--against", "train")
    assert text.code == 0, text.out
    # one table on each side: compared whatever their paths
    assert "data/incoming/june.csv (against data/train.csv): ok" in text.out
    assert report["tables"][0]["reference"] == "train:1"


def test_a_table_without_reference_fails(project: Path, cli: Cli) -> None:
    add(cli, project, table(), path="data/sales.csv")
    frame = table()
    for rel, part in (("data/sales.csv", frame), ("data/returns.csv", frame.head(40))):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        part.to_csv(project / rel, index=False)
    assert cli("data", "add", "sales", "data").code == 0
    text, report = validate(cli, "sales")
    assert text.code == 1
    by_path = {t["path"]: t for t in report["tables"]}
    assert by_path["data/sales.csv"]["ok"] is True
    assert [f["check"] for f in by_path["data/returns.csv"]["failures"]] == ["missing_reference"]
    assert "(table): missing_reference: sales:1 has no table 'data/returns.csv'" in text.out


def test_the_first_version_alone_is_a_clear_error(project: Path, cli: Cli) -> None:
    add(cli, project, table())
    result = cli("data", "validate", "sales")
    assert result.code == 1
    assert "sales:1 is the first version of 'sales'" in result.err
    assert "--against" in result.err
    assert result.out == ""


def test_columns_and_exclude_choose_what_is_checked(project: Path, cli: Cli) -> None:
    """A shift in a column the model never reads need not fail the delivery."""
    add(cli, project, table())
    add(cli, project, table().assign(price=table()["price"] * 3, channel="web"))
    everything, report = validate(cli, "sales")
    assert everything.code == 1
    assert {("price", "psi"), ("channel", "extra_column")} <= failures(report)

    chosen, report = validate(cli, "sales", "--columns", "quantity,region", "--columns", "id")
    assert chosen.code == 0, chosen.out
    assert chosen.out.splitlines()[-1] == f"data/sales.csv: ok ({N} rows, 3 columns)"

    excluded, report = validate(cli, "sales", "--exclude", "price", "--exclude", "channel")
    assert excluded.code == 0, excluded.out
    assert report["tables"][0]["checked_columns"] == 3

    price_only, report = validate(cli, "sales", "--columns", "price")
    assert price_only.code == 1
    assert failures(report) == {("price", "psi"), ("price", "outside_range"), ("price", "range")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sales", "--columns", "prise"), "data/sales.csv has no column 'prise'"),
        (("sales", "--exclude", "id,price,quantity,region"), "no column of data/sales.csv is left"),
        (("nope",), "no dataset 'nope'"),
        (("sales:9",), "has no version 9"),
        (("sales:2", "--against", "sales:7"), "has no version 7"),
        (("sales:2", "--tolerance", "-1"), "invalid validation thresholds"),
    ],
    ids=[
        "unknown-column",
        "no-column-left",
        "no-dataset",
        "no-version",
        "no-reference",
        "bad-tolerance",
    ],
)
def test_bad_references_are_errors(
    project: Path, cli: Cli, args: tuple[str, ...], message: str
) -> None:
    add(cli, project, table())
    add(cli, project, clean(table()))
    result = cli("data", "validate", *args)
    assert result.code == 1
    assert message in result.err
    assert result.out == "" and "Traceback" not in result.err


def test_validate_runs_as_its_own_process(project: Path, cli: Cli, mloop_process) -> None:
    add(cli, project, table())
    add(cli, project, with_value("region", 3, "west")(table()))
    done = mloop_process("data", "validate", "sales", "--json", cwd=project)
    assert done.code == 1, done.err
    assert failures(json.loads(done.out)) == {("region", "category")}
