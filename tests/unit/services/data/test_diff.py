"""Diffs of dataset versions: file manifests, table schemas and notable statistic changes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.domain.dataset import ColumnProfile, DatasetVersion, FileEntry, TableProfile
from mloop.services.data.diff import ColumnChange, TableDiff, diff_columns, diff_versions
from mloop.services.data.profile import profile_table


def version(
    number: int,
    files: tuple[FileEntry, ...] = (),
    tables: tuple[TableProfile, ...] = (),
) -> DatasetVersion:
    return DatasetVersion(
        name="sales",
        version=number,
        created=float(number),
        user="ana",
        message="",
        file_count=len(files),
        total_size=sum(f.size for f in files),
        files=files,
        tables=tables,
    )


def numeric(name: str = "x", **stats: object) -> ColumnProfile:
    base = ColumnProfile(
        name, "float64", "numeric", count=100, nulls=0, min=0.0, max=10.0, mean=5.0, std=2.0
    )
    return replace(base, **stats)


def categorical(top: tuple[tuple[str, int], ...], distinct: int) -> ColumnProfile:
    count = sum(c for _, c in top)
    return ColumnProfile("city", "string", "categorical", count, 0, top=top, distinct=distinct)


def table(*columns: ColumnProfile, rows: int = 100, path: str = "t.csv") -> TableProfile:
    return TableProfile(path, rows, columns)


A = FileEntry("a.csv", "d-a", 10)
B = FileEntry("b.csv", "d-b", 20)
C = FileEntry("c.csv", "d-c", 30)


def test_identical_versions_have_no_changes() -> None:
    tables = (table(numeric(), categorical((("Oslo", 3),), 1)),)
    diff = diff_versions(version(1, (A, B), tables), version(2, (A, B), tables))

    assert (diff.old_ref, diff.new_ref) == ("sales:1", "sales:2")
    assert (diff.added, diff.removed, diff.modified, diff.tables) == ((), (), (), ())
    assert diff.unchanged == 2
    assert diff.changed is False


def test_added_removed_and_modified_files() -> None:
    b2 = FileEntry("b.csv", "d-b2", 25)
    diff = diff_versions(version(1, (A, B)), version(2, (b2, C)))

    assert diff.added == (C,)
    assert diff.removed == (A,)
    assert diff.modified == ((B, b2),)
    assert diff.unchanged == 0
    assert diff.changed is True


def test_tables_are_matched_by_path() -> None:
    kept = table(numeric(), path="kept.csv")
    old = version(1, tables=(kept, table(numeric(), path="gone.csv")))
    new = version(2, tables=(table(numeric(), rows=90, path="new.csv"), kept))

    diff = diff_versions(old, new)

    assert diff.tables == (
        TableDiff("gone.csv", old_rows=100, new_rows=None),
        TableDiff("new.csv", old_rows=None, new_rows=90),
    )
    assert all(t.changed for t in diff.tables)


def test_columns_added_removed_and_retyped() -> None:
    old = table(numeric("a"), numeric("b"), numeric("c"))
    new = table(numeric("a", dtype="int64"), numeric("c"), numeric("d"))

    (diff,) = diff_versions(version(1, tables=(old,)), version(2, tables=(new,))).tables

    assert diff.added_columns == ("d",)
    assert diff.removed_columns == ("b",)
    assert diff.type_changes == (("a", "float64", "int64"),)
    assert diff.changes == ()
    assert (diff.old_rows, diff.new_rows) == (100, 100)


@pytest.mark.parametrize(
    ("new_mean", "reported"),
    [
        pytest.param(5.3, True, id="0.15-std-up"),
        pytest.param(4.7, True, id="0.15-std-down"),
        pytest.param(5.1, False, id="0.05-std"),
    ],
)
def test_mean_shift_in_old_standard_deviations(new_mean: float, reported: bool) -> None:
    changes = diff_columns(numeric(), numeric(mean=new_mean))

    expected = [ColumnChange("x", "mean", 5.0, new_mean, changes[0].note)] if reported else []
    assert list(changes) == expected
    if reported:
        assert f"{(new_mean - 5.0) / 2.0:+.2f} old standard deviations" in changes[0].note


def test_mean_change_of_a_constant_column_is_reported() -> None:
    old = numeric(std=0.0, min=5.0, max=5.0)
    new = numeric(mean=5.0001, std=0.0, min=5.0, max=5.0)

    (change,) = diff_columns(old, new)

    assert (change.statistic, change.old, change.new) == ("mean", 5.0, 5.0001)
    assert change.note.endswith("the old values had no spread")


@pytest.mark.parametrize(
    ("old_nulls", "new_nulls", "reported"),
    [
        pytest.param(0, 2, True, id="0%-to-2%"),
        pytest.param(10, 5, True, id="10%-to-5%"),
        pytest.param(0, 1, False, id="exactly-1-point"),
        pytest.param(3, 3, False, id="same"),
    ],
)
def test_null_share_change(old_nulls: int, new_nulls: int, reported: bool) -> None:
    old = numeric(count=100 - old_nulls, nulls=old_nulls)
    new = numeric(count=100 - new_nulls, nulls=new_nulls)

    changes = diff_columns(old, new)

    if reported:
        (change,) = changes
        assert (change.statistic, change.old, change.new) == (
            "null_share",
            old_nulls / 100,
            new_nulls / 100,
        )
        assert change.note == f"null share {old_nulls / 100:.1%} → {new_nulls / 100:.1%}"
    else:
        assert changes == ()


def test_values_outside_the_old_range() -> None:
    changes = diff_columns(numeric(), numeric(min=-1.0, max=12.0))

    assert [(c.statistic, c.old, c.new) for c in changes] == [
        ("min", 0.0, -1.0),
        ("max", 10.0, 12.0),
    ]
    assert "below the old range [0, 10]" in changes[0].note


def test_narrower_range_is_not_reported() -> None:
    assert diff_columns(numeric(), numeric(min=1.0, max=9.0)) == ()


def test_new_and_vanished_top_categories() -> None:
    old = categorical((("Oslo", 5), ("Lima", 3)), distinct=2)
    new = categorical((("Oslo", 5), ("Pune", 4)), distinct=2)

    changes = diff_columns(old, new)

    assert [(c.statistic, c.old, c.new) for c in changes] == [
        ("top", None, "Pune"),
        ("top", "Lima", None),
    ]
    assert changes[0].note == "'Pune' is a new value (4 rows)"
    assert changes[1].note == "'Lima' no longer occurs (had 3 rows)"


def test_top_lists_that_are_cut_off_speak_of_the_most_common_values() -> None:
    old = categorical((("Oslo", 5), ("Lima", 3)), distinct=40)
    new = categorical((("Oslo", 5), ("Pune", 4)), distinct=40)

    notes = [c.note for c in diff_columns(old, new)]

    assert notes == [
        "'Pune' entered the most common values (4 rows)",
        "'Lima' left the most common values (had 3 rows)",
    ]


def test_statistics_of_different_kinds_are_not_compared() -> None:
    old = numeric("x")
    new = ColumnProfile("x", "string", "categorical", 100, 0, top=(("a", 100),), distinct=1)

    assert diff_columns(old, new) == ()


def test_version_loaded_without_files_is_refused() -> None:
    unloaded = replace(version(1, (A,)), files=())

    with pytest.raises(ValueError, match=r"sales:1 was loaded without its files"):
        diff_versions(unloaded, version(2, (A,)))


def test_diff_of_real_profiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    before = pd.DataFrame(
        {
            "amount": rng.normal(100.0, 10.0, 2_000),
            "qty": rng.integers(1, 5, 2_000),
            "store": rng.choice(["north", "south"], 2_000),
        }
    )
    after = before.assign(
        amount=before["amount"] + 5.0,  # half an old standard deviation
        qty=before["qty"].where(np.arange(2_000) % 10 != 0),  # 10% missing, and now floats
        store=before["store"].replace("south", "east"),
        channel="web",
    )
    paths = []
    for number, frame in ((1, before), (2, after)):
        path = tmp_path / f"v{number}.parquet"
        frame.to_parquet(path)
        paths.append(path)
    old_profile = profile_table(paths[0], "sales.parquet")
    new_profile = profile_table(paths[1], "sales.parquet")
    old = version(1, (FileEntry("sales.parquet", "d1", 1),), (old_profile,))
    new = version(2, (FileEntry("sales.parquet", "d2", 1),), (new_profile,))

    diff = diff_versions(old, new)

    assert diff.changed is True
    assert len(diff.modified) == 1
    (tdiff,) = diff.tables
    assert (tdiff.old_rows, tdiff.new_rows) == (2_000, 2_000)
    assert tdiff.added_columns == ("channel",)
    assert tdiff.type_changes == (("qty", "int64", "float64"),)
    found = {(c.column, c.statistic, c.old if c.new is None else c.new) for c in tdiff.changes}
    amount = new_profile.column("amount")
    assert amount is not None
    assert ("amount", "mean", amount.mean) in found
    assert ("amount", "max", amount.max) in found
    assert ("qty", "null_share", 0.1) in found
    assert ("store", "top", "east") in found
    assert ("store", "top", "south") in found
    assert not any(c.column == "qty" and c.statistic == "mean" for c in tdiff.changes)
