"""Profiles of real CSV and Parquet files, checked against numpy and pandas computed separately."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloop.domain.dataset import ColumnProfile, TableProfile
from mloop.domain.records import to_plain
from mloop.errors import InvalidInput
from mloop.services.data.profile import QUANTILES, profile_table, read_table

FORMATS = [
    pytest.param(".csv", id="csv"),
    pytest.param(".parquet", id="parquet"),
    pytest.param(".pq", id="pq"),
]


def write(tmp_path: Path, frame: pd.DataFrame, suffix: str) -> tuple[Path, str]:
    """Write `frame` as a content-addressed object would be stored: no suffix on disk."""
    rel_path = f"data/table{suffix}"
    path = tmp_path / "objects" / "ab12cd"
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path, rel_path


def column(profile: TableProfile, name: str) -> ColumnProfile:
    found = profile.column(name)
    assert found is not None, f"no column {name!r} in {[c.name for c in profile.columns]}"
    return found


@pytest.fixture
def numbers() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    floats = rng.normal(10.0, 3.0, size=5_000)
    floats[::50] = np.nan
    return pd.DataFrame({"x": floats, "k": rng.integers(-40, 60, size=5_000)})


@pytest.mark.parametrize("suffix", FORMATS)
def test_rows_dtypes_and_kinds(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame(
        {
            "i": [1, 2, 3, 4],
            "f": [0.5, None, 2.5, 3.5],
            "s": ["a", "b", None, "a"],
            "b": [True, False, True, None],
            "t": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:30", None, "2024-01-04 00:00"]),
        }
    )
    profile = profile_table(*write(tmp_path, frame, suffix))

    assert profile.path == "data/table" + suffix
    assert profile.rows == 4
    assert [name for name, _ in profile.schema] == ["i", "f", "s", "b", "t"]
    assert dict(profile.schema) | {"t": "timestamp"} == {
        "i": "int64",
        "f": "float64",
        "s": "string",
        "b": "bool",
        "t": "timestamp",
    }
    assert column(profile, "t").dtype.startswith("timestamp[")
    kinds = {c.name: c.kind for c in profile.columns}
    assert kinds == {
        "i": "numeric",
        "f": "numeric",
        "s": "categorical",
        "b": "categorical",
        "t": "other",
    }
    counts = {c.name: (c.count, c.nulls) for c in profile.columns}
    assert counts == {"i": (4, 0), "f": (3, 1), "s": (3, 1), "b": (3, 1), "t": (3, 1)}


@pytest.mark.parametrize("suffix", FORMATS)
def test_numeric_statistics_match_numpy(tmp_path: Path, suffix: str, numbers: pd.DataFrame) -> None:
    profile = profile_table(*write(tmp_path, numbers, suffix), bins=12)

    for name in ("x", "k"):
        values = numbers[name].dropna().to_numpy(dtype=np.float64)
        stats = column(profile, name)
        assert stats.count == values.size
        assert stats.nulls == len(numbers) - values.size
        assert stats.min == values.min()
        assert stats.max == values.max()
        assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
        assert stats.std == pytest.approx(values.std(ddof=1), rel=1e-9)
        expected_quantiles = np.quantile(values, QUANTILES)
        assert [q for q, _ in stats.quantiles] == list(QUANTILES)
        assert [v for _, v in stats.quantiles] == pytest.approx(expected_quantiles, rel=1e-12)
        assert stats.histogram is not None
        counts, edges = np.histogram(values, bins=12, range=(values.min(), values.max()))
        assert stats.histogram.counts == tuple(counts)
        assert stats.histogram.edges == pytest.approx(edges)
        assert len(stats.histogram.edges) == 13
        assert sum(stats.histogram.counts) == stats.count


def test_infinities_are_counted_but_left_out_of_statistics(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, np.inf, -np.inf, np.nan, 3.0]})
    stats = column(profile_table(*write(tmp_path, frame, ".parquet")), "x")

    assert (stats.count, stats.nulls) == (5, 1)
    assert (stats.min, stats.max, stats.mean, stats.std) == (1.0, 3.0, 2.0, 1.0)
    assert stats.histogram is not None
    assert sum(stats.histogram.counts) == 3


@pytest.mark.parametrize(
    ("values", "std", "histogram"),
    [
        pytest.param([4.0, 4.0, 4.0], 0.0, ((4.0, 4.0), (3,)), id="all-equal-one-bin"),
        pytest.param([4.0, None, None], None, ((4.0, 4.0), (1,)), id="one-value-no-std"),
    ],
)
def test_degenerate_numeric_columns(
    tmp_path: Path, values: list[float | None], std: float | None, histogram: tuple[Any, Any]
) -> None:
    stats = column(profile_table(*write(tmp_path, pd.DataFrame({"x": values}), ".parquet")), "x")

    assert stats.std == std
    assert stats.histogram is not None
    assert (stats.histogram.edges, stats.histogram.counts) == histogram
    assert stats.quantiles == tuple((q, 4.0) for q in QUANTILES)


@pytest.mark.parametrize(
    ("suffix", "dtype", "kind"),
    [
        pytest.param(".csv", "null", "other", id="csv-null-type"),
        pytest.param(".parquet", "float64", "numeric", id="parquet-all-nan"),
    ],
)
def test_column_without_values(tmp_path: Path, suffix: str, dtype: str, kind: str) -> None:
    frame = pd.DataFrame({"x": [np.nan, np.nan], "y": [1, 2]})
    stats = column(profile_table(*write(tmp_path, frame, suffix)), "x")

    assert (stats.dtype, stats.kind, stats.count, stats.nulls) == (dtype, kind, 0, 2)
    assert (stats.min, stats.mean, stats.histogram, stats.quantiles) == (None, None, None, ())


def test_span_beyond_float_range_stays_finite(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [-1e308, 0.0, 1e308]})
    stats = column(profile_table(*write(tmp_path, frame, ".parquet"), bins=4), "x")

    assert stats.std is None  # the true value overflows float64
    assert stats.histogram is not None
    assert stats.histogram.edges[0] == -1e308
    assert stats.histogram.edges[-1] == 1e308
    assert all(math.isfinite(e) for e in stats.histogram.edges)
    assert stats.histogram.counts == (1, 0, 1, 1)


@pytest.mark.parametrize("suffix", FORMATS)
def test_categorical_top_values_and_distinct(tmp_path: Path, suffix: str) -> None:
    cities = ["Oslo"] * 5 + ["Lima"] * 2 + ["Pune"] * 3 + ["Bern"] * 2 + [None] * 4 + ["Kobe"]
    frame = pd.DataFrame({"city": cities, "flag": [True] * 10 + [False] * 7})
    profile = profile_table(*write(tmp_path, frame, suffix), top=3)

    city = column(profile, "city")
    assert (city.count, city.nulls, city.distinct) == (13, 4, 5)
    # ties keep the order of first appearance: Lima before Bern
    assert city.top == (("Oslo", 5), ("Pune", 3), ("Lima", 2))
    assert (city.min, city.histogram) == (None, None)
    flag = column(profile, "flag")
    assert (flag.kind, flag.top, flag.distinct) == ("categorical", (("True", 10), ("False", 7)), 2)


def test_pandas_categorical_is_categorical(tmp_path: Path) -> None:
    frame = pd.DataFrame({"c": pd.Categorical(["x", "y", "x", None])})
    stats = column(profile_table(*write(tmp_path, frame, ".parquet")), "c")

    assert (stats.dtype, stats.kind) == ("dictionary<string>", "categorical")
    assert (stats.top, stats.distinct, stats.nulls) == ((("x", 2), ("y", 1)), 2, 1)


def test_pandas_index_is_not_a_column(tmp_path: Path) -> None:
    frame = pd.DataFrame({"v": [1, 2, 3]}, index=pd.Index(["a", "b", "c"], name="key"))
    path = tmp_path / "indexed.parquet"
    frame.to_parquet(path)

    assert [c.name for c in profile_table(path, "indexed.parquet").columns] == ["v"]
    assert read_table(path, "indexed.parquet").index.tolist() == ["a", "b", "c"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_profile_is_plain_json(tmp_path: Path, suffix: str, numbers: pd.DataFrame) -> None:
    frame = numbers.assign(s=["u", "v"] * (len(numbers) // 2), inf=np.inf)
    profile = profile_table(*write(tmp_path, frame, suffix))

    plain = to_plain(profile)
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain

    def walk(value: Any) -> None:
        if isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                walk(item)
        else:
            assert value is None or type(value) in (int, float, str, bool), repr(value)

    walk(plain)


@pytest.mark.parametrize("suffix", FORMATS)
def test_read_table_round_trips(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"n": [3, 1, 2], "s": ["a", "b", "c"], "f": [0.5, 1.5, None]})
    read = read_table(*write(tmp_path, frame, suffix))

    pd.testing.assert_frame_equal(read, frame, check_dtype=False)


def test_csv_pyarrow_refuses_is_read_by_pandas(tmp_path: Path) -> None:
    # Quoted line breaks spanning pyarrow's 1 MB parallel blocks break its fast parser.
    rows = "".join(f'"first {i}\nsecond {"x" * 60}",{i}\n' for i in range(30_000))
    path = tmp_path / "quoted.csv"
    path.write_text("text,n\n" + rows)

    profile = profile_table(path, "quoted.csv")

    assert profile.rows == 30_000
    n = column(profile, "n")
    assert (n.min, n.max, n.mean) == (0.0, 29_999.0, 14_999.5)
    assert column(profile, "text").distinct == 30_000


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        pytest.param("bad.csv", b"a,b\n1,2\n3,4,5\n", "Expected 2 fields", id="extra-field"),
        pytest.param("empty.csv", b"", "No columns to parse", id="empty-csv"),
        pytest.param("bad.csv", b"a,b\n\xff\xfe,1\n", "column 'a' is not valid UTF-8", id="latin1"),
        pytest.param("bad.parquet", b"a,b\n1,2\n", "magic bytes", id="csv-as-parquet"),
        pytest.param("cut.pq", b"PAR1\x00\x00PAR1", "", id="truncated-parquet"),
    ],
)
def test_unreadable_file_is_invalid_input(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / "object"
    path.write_bytes(content)

    for read in (read_table, profile_table):
        with pytest.raises(InvalidInput) as caught:
            read(path, f"in/{name}")
        message = caught.value.message
        assert message.startswith(f"cannot read 'in/{name}' as ")
        assert reason in message
        assert "\n" not in message
        assert caught.value.hint


def test_unknown_suffix_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text("{}")

    with pytest.raises(InvalidInput, match=r"'notes\.json'.*\.csv, \.parquet, \.pq"):
        profile_table(path, "notes.json")


@pytest.mark.parametrize(
    "options",
    [pytest.param({"bins": 0}, id="no-bins"), pytest.param({"top": -1}, id="negative-top")],
)
def test_bad_options_are_invalid_input(tmp_path: Path, options: dict[str, int]) -> None:
    path, rel_path = write(tmp_path, pd.DataFrame({"x": [1]}), ".csv")

    with pytest.raises(InvalidInput):
        profile_table(path, rel_path, **options)
