"""Validate tables against a reference version's recorded profile: schema, then distributions.

Only the reference's `TableProfile` is needed, never its data, so new data is checked against a
training set of any size in the time it takes to read the new data once.

The schema is a pandera `DataFrameSchema` inferred from the profile (`infer_schema`): the same
columns, no others; nulls only where the reference had some; numeric values within the
reference [min, max] widened by `tolerance` x (max - min) (infinities are left out, as in the
profile); the reference's categories when its `top` values cover every distinct value; and the
dtype family (integer, floating, boolean, string, datetime), leniently, since CSV types are
inferred from values: integers may arrive as floats (pandas turns integers with nulls into
floats) as long as every value is whole; floating accepts integers; string accepts integers and
booleans (codes like `1, 2`). Numbers arriving as text fail, naming the values that are not
numbers. Pandera validates lazily, so every failing column and check comes out of one pass.
`columns=` or `exclude=` narrows the table and the profile to the columns that matter (say,
a model's features and label) before either check (`checks.select_columns`).

The distribution checks run on columns the schema could read as their reference type: PSI over
the reference histogram (bins merged to hold at least `MIN_BIN_SHARE` each, since twenty sparse
bins make PSI mostly sampling noise, plus a bin below min and one above max) and the share of
values outside the reference range; PSI over the reference's top categories plus "other"; and
the change in the share of nulls. PSI means little on few values, so a column with fewer than
`min_values` values on either side skips it, with a note in the report.

This module imports pandas and pandera at the top, so the CLI must import it lazily.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mloop.domain.dataset import ColumnProfile, DatasetVersion, TableProfile, is_table_path
from mloop.domain.drift import merge_bins, population_stability_index
from mloop.errors import InvalidInput
from mloop.services.data.checks import (
    ACCEPTS,
    CheckFailure,
    Thresholds,
    ValidationReport,
    as_floats,
    failing_rows,
    is_missing,
    reference_family,
    select_columns,
)
from mloop.services.data.shift import distribution_failures

__all__ = [
    "CheckFailure",
    "DataValidator",
    "Thresholds",
    "ValidationReport",
    "frame_family",
    "infer_schema",
    "merge_bins",
    "population_stability_index",
    "reference_family",
    "select_columns",
    "validate_frame",
]

if TYPE_CHECKING:
    from typing import TypeAlias

    from mloop.services.data.versioning import DataService

    Series: TypeAlias = pd.Series[Any]

_INFERRED = {  # pandas' infer_dtype of an object column -> family
    **{family: family for family in ("string", "integer", "floating", "boolean", "empty")},
    **dict.fromkeys(("mixed-integer-float", "decimal"), "floating"),
    **dict.fromkeys(("datetime", "datetime64", "date"), "datetime"),
}
_RENAMED = {  # pandera's check names -> ours
    "column_in_schema": "extra_column",
    "column_in_dataframe": "missing_column",
    "not_nullable": "nulls",
}


def infer_schema(reference: TableProfile, *, tolerance: float = 0.0) -> pa.DataFrameSchema:
    """A pandera schema for tables like `reference`: columns, dtypes, nulls, ranges, categories.

    Args:
        reference: The profile recorded for the reference table.
        tolerance: Widen each numeric range by this fraction of its span on both sides.

    Returns:
        A strict `DataFrameSchema` whose checks are named dtype, range and category.

    Example:
        >>> schema = infer_schema(version.tables[0], tolerance=0.1)  # doctest: +SKIP
        >>> schema.validate(frame, lazy=True)  # doctest: +SKIP
    """
    columns: dict[str, pa.Column] = {}
    for col in reference.columns:
        checks: list[pa.Check] = []
        if (family := reference_family(col.dtype)) != "other":
            checks.append(pa.Check(_dtype_check(family), name="dtype"))
        if (bounds := _bounds(col, tolerance)) is not None:
            checks.append(pa.Check(_range_check(family, *bounds), name="range"))
        if (categories := _categories(col)) is not None:
            checks.append(pa.Check(_category_check(family, categories), name="category"))
        columns[col.name] = pa.Column(checks=checks, nullable=col.nullable, name=col.name)
    return pa.DataFrameSchema(columns, strict=True, name=reference.path)


def frame_family(series: Series) -> str:
    """The family of a pandas column; an object column is judged by its values.

    Example:
        >>> frame_family(pd.Series([1.0, None])), frame_family(pd.Series(["a", 1]))
        ('floating', 'mixed')
    """
    dtype, types = series.dtype, pd.api.types
    if dtype == np.dtype(object):
        return _INFERRED.get(types.infer_dtype(series, skipna=True)) or "mixed"
    for is_family, family in (
        (types.is_bool_dtype, "boolean"),
        (types.is_integer_dtype, "integer"),
        (types.is_float_dtype, "floating"),
        (types.is_datetime64_any_dtype, "datetime"),
        (types.is_string_dtype, "string"),
    ):
        if is_family(dtype):
            return family
    return "string" if isinstance(dtype, pd.CategoricalDtype) else "other"


def _dtype_check(family: str) -> Callable[[Series], Series | bool]:
    def check(series: Series) -> Series | bool:  # pandera passes the non-null values only
        actual = frame_family(series)
        if actual == "empty" or actual in ACCEPTS[family]:
            if family == "integer" and actual == "floating":
                values = as_floats(series)
                return pd.Series(~np.isfinite(values) | (values == np.round(values)), series.index)
            return True
        if family not in ("integer", "floating"):
            return False
        not_numbers = np.isnan(as_floats(series))  # name the values that are not numbers
        return pd.Series(~not_numbers, series.index) if not_numbers.any() else False

    return check


def _category_check(family: str, allowed: frozenset[str]) -> Callable[[Series], Series | bool]:
    def check(series: Series) -> Series | bool:
        if not _readable(series, family):
            return True  # the dtype check reports it
        return series.astype(str).isin(allowed)

    return check


def _range_check(family: str, lo: float, hi: float) -> Callable[[Series], Series | bool]:
    def check(series: Series) -> Series | bool:
        if not _readable(series, family):
            return True  # the dtype check reports it
        values = as_floats(series)
        return pd.Series(~np.isfinite(values) | ((values >= lo) & (values <= hi)), series.index)

    return check


def _readable(series: Series, family: str) -> bool:
    """Whether the column's values can be compared with the reference's (same family)."""
    return family == "other" or frame_family(series) in ACCEPTS[family] | {"empty"}


def _bounds(col: ColumnProfile, tolerance: float) -> tuple[float, float] | None:
    if col.kind != "numeric" or col.min is None or col.max is None:
        return None
    widen = tolerance * (col.max - col.min)
    return col.min - widen, col.max + widen


def _categories(col: ColumnProfile) -> frozenset[str] | None:
    complete = col.distinct is not None and col.distinct <= len(col.top)
    return frozenset(v for v, _ in col.top) if col.kind == "categorical" and complete else None


# --- validating -----------------------------------------------------------------------------


def validate_frame(
    frame: pd.DataFrame,
    reference: TableProfile,
    thresholds: Thresholds | None = None,
    *,
    columns: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> ValidationReport:
    """Check a table against a reference profile: its schema, then its distributions.

    Args:
        frame: The table to check, as read (e.g. `LocalDataset.to_pandas(path)`).
        reference: The profile of the reference table.
        thresholds: When checks fail; default `Thresholds()`.
        columns: Check only these columns (default: all); the table's others are ignored.
        exclude: Check all columns but these.

    Returns:
        A `ValidationReport` naming every failing column and check, with a few failing rows.

    Raises:
        InvalidInput: `columns` or `exclude` names a column neither table has, or leaves none.

    Example:
        >>> report = validate_frame(frame, train.version.tables[0])  # doctest: +SKIP
        >>> report.ok, [(f.column, f.check) for f in report.failures]  # doctest: +SKIP
        (False, [('price', 'range'), ('region', 'category')])
    """
    limits = thresholds or Thresholds()
    frame, reference = select_columns(frame, reference, columns, exclude)
    failures: list[CheckFailure] = []
    try:
        infer_schema(reference, tolerance=limits.tolerance).validate(frame, lazy=True)
    except SchemaErrors as exc:
        failures.extend(_schema_failures(exc.failure_cases, frame, reference, limits.tolerance))
    unread = {f.column for f in failures if f.check in ("dtype", "missing_column")}
    shifts, notes = distribution_failures(frame, reference, limits, unread)
    order = {c.name: i for i, c in enumerate(reference.columns)}
    failures = sorted([*failures, *shifts], key=lambda f: order.get(f.column or "", len(order)))
    return ValidationReport(
        not failures, tuple(failures), len(frame), len(frame.columns), reference.path, notes=notes
    )


def _schema_failures(
    cases: pd.DataFrame, frame: pd.DataFrame, reference: TableProfile, tolerance: float
) -> list[CheckFailure]:
    """Pandera's failure cases (one row per failing value) grouped by column and check."""
    whole = cases["check"].isin(["column_in_schema", "column_in_dataframe"])
    found: list[tuple[str | None, str, list[Any]]] = [  # a column missing or not expected:
        (str(case), _RENAMED[check], [])  # the failure case is the column's name
        for check, case in zip(cases["check"][whole], cases["failure_case"][whole], strict=True)
    ]
    for (column, check), group in cases[~whole].groupby(["column", "check"], dropna=False):
        labels = [i for i in group["index"] if not is_missing(i)]
        found.append((None if is_missing(column) else str(column), str(check), labels))
    failures = []
    for column, check, labels in found:
        name = _RENAMED.get(check, check)
        message = _message(column, name, len(labels), frame, reference, tolerance)
        failures.append(
            CheckFailure(column, name, message, failing_rows(frame, labels, column), len(labels))
        )
    return failures


def _message(
    column: str | None, check: str, n: int, frame: pd.DataFrame, ref: TableProfile, tol: float
) -> str:
    col = ref.column(column) if column is not None else None
    values = f"{n} value{'' if n == 1 else 's'}"
    if col is None:
        if check == "extra_column":
            return f"column {column!r} is not in the reference table {ref.path}"
        return f"{values} fail the check {check}"
    if check == "missing_column":
        return f"column {column!r} is missing; the reference has it ({col.dtype})"
    if check == "nulls":
        return f"{n} null value{'' if n == 1 else 's'}; the reference column has no nulls"
    if check == "dtype":
        dtype, family = frame[col.name].dtype, frame_family(frame[col.name])
        if not n:
            return f"the column holds {family} values ({dtype}); the reference is {col.dtype}"
        if family == "floating":
            return f"{values} with a fractional part; the reference is {col.dtype}"
        return f"{values} not readable as numbers (column {dtype}, reference {col.dtype})"
    if check == "range" and col.min is not None and col.max is not None:
        lo, hi = _bounds(col, tol) or (col.min, col.max)
        widened = f", the reference range [{col.min:g}, {col.max:g}] widened by {tol:.0%}"
        return f"{values} outside [{lo:g}, {hi:g}]{widened if tol else ''}"
    if check == "category":
        known = ", ".join(sorted(v for v, _ in col.top))
        return f"{values} not among the reference's categories: {known}"
    return f"{values} fail the check {check}"


class DataValidator:
    """Validate a dataset version's tables against another version's recorded profiles.

    Example:
        >>> reports = DataValidator(project.data).validate("sales:5")  # doctest: +SKIP
        >>> all(report.ok for _, report in reports)  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        data: DataService,
        thresholds: Thresholds | None = None,
        columns: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
    ) -> None:
        self.data = data
        self.thresholds = thresholds or Thresholds()
        self.columns = columns
        self.exclude = exclude

    def validate(
        self, ref: str, against: str | None = None, *, joined: bool = False
    ) -> list[tuple[str, ValidationReport]]:
        """Validate every table file of `ref` against the same-path table of `against`.

        When each version holds exactly one table, the two are compared whatever their paths
        (this month's file against last month's). A table with no reference table fails,
        unless `joined`: the tables are rows of one table, as a model that read the version
        whole saw them (`to_pandas` concatenates them), so a file landed beside them is
        compared with the reference's largest table, the bulk of the rows before.

        Args:
            ref: The version to check: `NAME` (the latest) or `NAME:V`.
            against: The reference version; default: the version before `ref`.
            joined: Compare a table the reference lacks with its largest table.

        Returns:
            (path, report) for each table file of `ref`, in path order.

        Raises:
            InvalidInput: `ref` has no tables, or is a first version and `against` is None,
                or `columns`/`exclude` name a column a table does not have.
            NotFound: A dataset or version does not exist.

        Example:
            >>> validator.validate("sales:2", against="sales:1")[0][1].ok  # doctest: +SKIP
            True
        """
        target = self.data.get(ref, files=True)
        baseline = self._reference(target, against)
        paths = [f.path for f in target.files if is_table_path(f.path)]
        if not paths:
            raise InvalidInput(
                f"{target.ref} has no CSV or Parquet file to validate",
                f"see its files with `mloop data show {target.ref} --files`",
            )
        tables = {t.path: t for t in baseline.tables}
        if len(paths) == 1 and len(tables) == 1:
            tables = {paths[0]: baseline.tables[0]}
        bulk = max(baseline.tables, key=lambda t: t.rows, default=None) if joined else None
        local = self.data.open(target.name, target.version)
        results = []
        for path in paths:
            if (table := tables.get(path, bulk)) is None:
                known = ", ".join(sorted(t.path for t in baseline.tables)) or "none"
                message = f"{baseline.ref} has no table {path!r} to compare with (it has {known})"
                report = _failed(CheckFailure(None, "missing_reference", message))
            else:
                try:
                    frame = local.to_pandas(path)
                except InvalidInput as exc:
                    report = _failed(CheckFailure(None, "unreadable", exc.message), table.path)
                else:
                    report = validate_frame(
                        frame, table, self.thresholds, columns=self.columns, exclude=self.exclude
                    )
            named = dataclasses.replace(report, version=target.ref, reference=baseline.ref)
            results.append((path, named))
        return results

    def _reference(self, target: DatasetVersion, against: str | None) -> DatasetVersion:
        if against is not None:
            return self.data.get(against)
        earlier = [v.version for v in self.data.versions(target.name) if v.version < target.version]
        if not earlier:
            raise InvalidInput(
                f"{target.ref} is the first version of {target.name!r}: "
                "there is nothing to validate it against",
                f"name a reference version: mloop data validate {target.ref} --against NAME:V",
            )
        return self.data.get(f"{target.name}:{max(earlier)}")


def _failed(failure: CheckFailure, reference_path: str = "") -> ValidationReport:
    return ValidationReport(False, (failure,), 0, 0, reference_path)
