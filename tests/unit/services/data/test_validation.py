"""Validation against recorded profiles: PSI on known inputs, bin merging, schema leniency and
distribution checks, on real CSV files profiled the way `mloop data add` profiles them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from mloop.domain.dataset import TableProfile
from mloop.domain.records import to_plain
from mloop.errors import InvalidInput
from mloop.services.data.profile import profile_table, read_table
from mloop.services.data.validation import (
    Thresholds,
    ValidationReport,
    infer_schema,
    merge_bins,
    population_stability_index,
    validate_frame,
)

N = 400


def as_read(tmp_path: Path, frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The frame as `LocalDataset.to_pandas` would hand it over after a CSV round trip."""
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return read_table(path, path.name)


def profile_of(tmp_path: Path, frame: pd.DataFrame) -> TableProfile:
    path = tmp_path / "reference.csv"
    frame.to_csv(path, index=False)
    return profile_table(path, "reference.csv")


def failed(report: ValidationReport) -> set[tuple[str | None, str]]:
    return {(f.column, f.check) for f in report.failures}


@pytest.fixture
def base() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    discount = rng.uniform(0, 0.3, N).round(3)
    discount[rng.random(N) < 0.2] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(N),
            "price": rng.normal(50.0, 10.0, N).round(2),
            "quantity": rng.integers(1, 10, N),
            "region": rng.choice(["north", "south", "east"], N, p=[0.5, 0.3, 0.2]),
            "member": rng.random(N) < 0.4,
            "discount": discount,
        }
    )


# --- PSI and bins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "psi"),
    [
        ([50, 50], [50, 50], 0.0),
        ([50, 50], [90, 10], 0.4 * math.log(1.8) + 0.4 * math.log(5.0)),
        ([0.25, 0.25, 0.5], [25, 25, 50], 0.0),  # shares and counts mean the same
        ([100, 0], [50, 50], 0.5 * math.log(0.5) * -1 + (0.5 - 1e-4) * math.log(0.5 / 1e-4)),
        ([10, 20, 30, 40], [40, 30, 20, 10], 2 * (0.3 * math.log(4) + 0.1 * math.log(1.5))),
    ],
    ids=["identical", "two-bins", "shares-vs-counts", "empty-bin", "reversed"],
)
def test_psi_on_known_inputs(expected: list[float], actual: list[float], psi: float) -> None:
    assert population_stability_index(expected, actual) == pytest.approx(psi, abs=1e-12)


def test_psi_is_symmetric_and_grows_with_the_shift() -> None:
    reference = [25, 25, 25, 25]
    shifts = [[25, 25, 25, 25], [20, 25, 25, 30], [10, 20, 30, 40], [1, 4, 15, 80]]
    values = [population_stability_index(reference, s) for s in shifts]
    assert values == sorted(values) and values[0] == 0.0
    assert population_stability_index([10, 90], [60, 40]) == pytest.approx(
        population_stability_index([60, 40], [10, 90])
    )


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([1, 2], [1, 2, 3]), ([1, -1], [1, 1]), ([0, 0], [1, 1]), ([1, 1], [0, 0])],
    ids=["lengths", "negative", "empty-expected", "empty-actual"],
)
def test_psi_refuses_meaningless_inputs(expected: list[int], actual: list[int]) -> None:
    with pytest.raises(ValueError, match="expected and actual"):
        population_stability_index(expected, actual)


def test_merge_bins_keeps_totals_and_gives_each_bin_its_share() -> None:
    counts = np.array([1, 0, 2, 30, 40, 20, 5, 1, 0, 1])
    edges = np.linspace(0.0, 10.0, 11)
    merged_edges, merged = merge_bins(edges, counts, 0.1)
    assert merged.sum() == counts.sum()
    assert (merged >= 0.1 * counts.sum()).all()
    assert merged_edges[0] == 0.0 and merged_edges[-1] == 10.0
    assert len(merged_edges) == len(merged) + 1
    assert merged.tolist() == [33, 40, 27]  # the sparse tail joins the bin before it
    single_edges, single = merge_bins([3.0, 3.0], [7])
    assert single_edges.tolist() == [3.0, 3.0] and single.tolist() == [7]


# --- schema ---------------------------------------------------------------------------------


def test_a_new_sample_of_the_same_data_passes(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    sample = base.sample(frac=0.8, random_state=3).reset_index(drop=True)
    report = validate_frame(as_read(tmp_path, sample, "sample"), reference)
    assert report.ok, report.failures
    assert (report.checked_rows, report.checked_columns) == (int(N * 0.8), 6)
    assert report.describe() == f"ok: {int(N * 0.8)} rows, 6 columns"


def test_the_inferred_schema_is_plain_pandera(tmp_path: Path, base: pd.DataFrame) -> None:
    schema = infer_schema(profile_of(tmp_path, base))
    assert isinstance(schema, pa.DataFrameSchema)
    assert list(schema.columns) == list(base.columns)
    assert not schema.columns["price"].nullable and schema.columns["discount"].nullable
    checks = {name: [c.name for c in col.checks] for name, col in schema.columns.items()}
    assert checks["price"] == ["dtype", "range"]
    assert checks["region"] == ["dtype", "category"]
    schema.validate(as_read(tmp_path, base, "same"))  # raises if anything failed


def test_integers_may_arrive_as_whole_floats_but_not_fractions(
    tmp_path: Path, base: pd.DataFrame
) -> None:
    reference = profile_of(tmp_path, base)
    with_nulls = base.astype({"quantity": "float64"})
    with_nulls.loc[[4, 9], "quantity"] = np.nan  # pandas reads these integers as floats
    report = validate_frame(as_read(tmp_path, with_nulls, "nulls"), reference)
    assert failed(report) == {("quantity", "nulls")}  # the dtype is fine, the nulls are not
    assert [r["row"] for r in report.failures[0].failing_rows] == [4, 9]

    fractions = base.astype({"quantity": "float64"})
    fractions.loc[6, "quantity"] = 2.5
    report = validate_frame(as_read(tmp_path, fractions, "fractions"), reference)
    assert failed(report) == {("quantity", "dtype")}
    assert "fractional part" in report.failures[0].message
    row = report.failures[0].failing_rows[0]
    assert row["row"] == 6
    assert list(row["values"].items())[:2] == [("quantity", 2.5), ("id", 6)]  # failing first


def test_text_in_a_numeric_column_names_the_values(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    texts = base.astype({"price": object})
    texts.loc[[3, 8], "price"] = ["ten", "unknown"]  # ("n/a" would be read as a null)
    report = validate_frame(as_read(tmp_path, texts, "texts"), reference)
    assert failed(report) == {("price", "dtype")}
    failure = report.failures[0]
    assert failure.failure_count == 2
    assert [(r["row"], r["values"]["price"]) for r in failure.failing_rows] == [
        (3, "ten"),
        (8, "unknown"),
    ]
    assert "not readable as numbers" in failure.message


def test_a_whole_column_of_another_type_fails_without_rows(
    tmp_path: Path, base: pd.DataFrame
) -> None:
    reference = profile_of(tmp_path, base)
    changed = base.assign(region=np.linspace(0.5, 3.5, N))  # categories became measurements
    report = validate_frame(as_read(tmp_path, changed, "floats"), reference)
    assert failed(report) == {("region", "dtype")}
    assert report.failures[0].failing_rows == ()
    assert "floating" in report.failures[0].message and "string" in report.failures[0].message


def test_tolerance_widens_the_range(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    price = reference.column("price")
    assert price is not None and price.max is not None and price.min is not None
    beyond = base.copy()
    beyond.loc[0, "price"] = price.max + 0.05 * (price.max - price.min)
    frame = as_read(tmp_path, beyond, "beyond")
    strict = validate_frame(frame, reference, Thresholds(tolerance=0.0))
    assert failed(strict) == {("price", "range")}
    assert strict.failures[0].failing_rows[0]["row"] == 0
    assert validate_frame(frame, reference, Thresholds(tolerance=0.1)).ok


# --- distributions --------------------------------------------------------------------------


def test_a_mean_moved_by_two_stds_fails_psi(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    shifted = base.assign(price=base["price"] + 20.0)
    report = validate_frame(as_read(tmp_path, shifted, "shifted"), reference)
    assert {("price", "psi"), ("price", "outside_range")} <= failed(report)
    psi = next(f for f in report.failures if f.check == "psi")
    assert psi.message.startswith("PSI ") and len(psi.failing_rows) == 5
    assert psi.failure_count > N // 2  # most values moved out of their reference bins


def test_changed_category_shares_fail_psi(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    rng = np.random.default_rng(5)
    flipped = base.assign(region=rng.choice(["north", "south", "east"], N, p=[0.1, 0.2, 0.7]))
    report = validate_frame(as_read(tmp_path, flipped, "flipped"), reference)
    assert failed(report) == {("region", "psi")}
    failure = report.failures[0]
    assert "'east'" in failure.message
    assert {r["values"]["region"] for r in failure.failing_rows} == {"east"}


def test_null_share_change_fails_only_beyond_the_allowed_points(
    tmp_path: Path, base: pd.DataFrame
) -> None:
    reference = profile_of(tmp_path, base)
    fewer = base.copy()
    fewer.loc[: N // 2, "discount"] = np.nan  # about 20% null before, now about 60%
    report = validate_frame(as_read(tmp_path, fewer, "fewer"), reference)
    assert ("discount", "null_share") in failed(report)
    loose = validate_frame(
        as_read(tmp_path, fewer, "fewer"), reference, Thresholds(max_null_shift=0.6)
    )
    assert ("discount", "null_share") not in failed(loose)


def test_few_values_skip_psi_with_a_note(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    report = validate_frame(as_read(tmp_path, base.head(20), "few"), reference)
    assert report.ok
    assert report.notes and "fewer than 50 values" in report.notes[0]


def test_reports_are_json_ready(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    odd = base.assign(price=base["price"] + 30.0, extra="x").drop(columns="member")
    report = validate_frame(as_read(tmp_path, odd, "odd"), reference)
    assert not report.ok
    assert {("member", "missing_column"), ("extra", "extra_column")} <= failed(report)
    text = json.dumps(to_plain(report), allow_nan=False)
    assert json.loads(text)["failures"][0]["column"] == "price"


@pytest.mark.parametrize(
    "bad",
    [{"tolerance": -0.1}, {"max_psi": 0.0}, {"max_outside_share": 2.0}, {"min_values": 0}],
    ids=["tolerance", "psi", "share", "min-values"],
)
def test_thresholds_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidInput, match="invalid validation thresholds"):
        Thresholds(**bad)  # type: ignore[arg-type]


# --- choosing columns -----------------------------------------------------------------------


def drifted(base: pd.DataFrame) -> pd.DataFrame:
    """Price moved by two standard deviations, a column the reference never had."""
    return base.assign(price=base["price"] + 20.0, note="new")


def test_columns_checks_only_those_and_ignores_the_others(
    tmp_path: Path, base: pd.DataFrame
) -> None:
    reference = profile_of(tmp_path, base)
    frame = as_read(tmp_path, drifted(base), "drifted")
    everything = validate_frame(frame, reference)
    assert {("price", "psi"), ("note", "extra_column")} <= failed(everything)

    chosen = ["region", "quantity", "discount"]
    report = validate_frame(frame, reference, columns=chosen)
    assert report.ok, report.failures
    assert report.checked_columns == 3
    still_seen = validate_frame(frame, reference, columns=["price", "region"])
    assert ("price", "psi") in failed(still_seen)
    assert ("note", "extra_column") not in failed(still_seen)


def test_exclude_checks_all_but_those(tmp_path: Path, base: pd.DataFrame) -> None:
    reference = profile_of(tmp_path, base)
    frame = as_read(tmp_path, drifted(base), "drifted")
    assert failed(validate_frame(frame, reference, exclude=["price"])) == {("note", "extra_column")}
    assert validate_frame(frame, reference, exclude=["price", "note"]).ok
    gone = as_read(tmp_path, base.drop(columns="member"), "gone")
    assert failed(validate_frame(gone, reference, exclude=["price"])) == {
        ("member", "missing_column")
    }
    assert validate_frame(gone, reference, exclude=["member"]).ok


COLUMNS = "its columns are: id, price, quantity, region, member, discount"


@pytest.mark.parametrize(
    ("selection", "message", "hint"),
    [
        ({"columns": ["price", "prise"]}, "has no column 'prise'", COLUMNS),
        ({"exclude": ["regoin"]}, "has no column 'regoin'", COLUMNS),
        ({"columns": ["price"], "exclude": ["price"]}, "no column of reference.csv is left", ""),
    ],
    ids=["typo-in-columns", "typo-in-exclude", "nothing-left"],
)
def test_a_selection_that_names_no_column_is_refused(
    tmp_path: Path, base: pd.DataFrame, selection: dict[str, list[str]], message: str, hint: str
) -> None:
    reference = profile_of(tmp_path, base)
    frame = as_read(tmp_path, base, "same")
    with pytest.raises(InvalidInput, match=message) as raised:
        validate_frame(frame, reference, **selection)  # type: ignore[arg-type]
    assert raised.value.hint and hint in raised.value.hint


@pytest.mark.parametrize(
    ("nulls", "named", "empty"),
    [(False, "equal to 2007", "[2007, 2007)"), (True, "in [2007, 2007.1)", "[2007, 2007)")],
    ids=["whole-numbers", "floats"],
)
def test_a_psi_failure_never_names_an_empty_interval(
    tmp_path: Path, nulls: bool, named: str, empty: str
) -> None:
    """Years 2007-2009 make 20 bins 0.1 wide: `[2007, 2007.1)` holds every 2007 row."""
    years = pd.DataFrame({"year": np.repeat([2007, 2008, 2009], 100)}).astype("float64")
    if nulls:  # a column of whole numbers with nulls is recorded as floating
        years.loc[[0, 150], "year"] = np.nan
    else:
        years = years.astype("int64")
    reference = profile_of(tmp_path, years)
    without_2009 = years[years["year"] != 2009]
    report = validate_frame(as_read(tmp_path, without_2009, "recent"), reference)
    psi = next(f for f in report.failures if f.check == "psi")
    assert named in psi.message and empty not in psi.message
    assert "50% of values are" in psi.message
