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
import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mloop.domain.dataset import ColumnProfile, DatasetVersion, TableProfile, is_table_path
from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from typing import TypeAlias

    from mloop.services.data.versioning import DataService

    Series: TypeAlias = pd.Series[Any]

MAX_ROWS_SHOWN = 5
MIN_BIN_SHARE = 0.1
PSI_EPSILON = 1e-4  # the share an empty bin stands for, so PSI stays finite

# What a reference family accepts; an all-null column ("empty") is always accepted.
_ACCEPTS = {
    "integer": {"integer", "floating"},  # floats must then be whole numbers
    "floating": {"integer", "floating"},
    "boolean": {"boolean"},
    "string": {"string", "integer", "boolean"},
    "datetime": {"datetime"},
}
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


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When checks fail. `tolerance` defaults to 0.1 here (0 in `infer_schema`): a new sample
    of unchanged data often lands a little past the old extremes, and the outside-range share
    and PSI catch a real shift."""

    tolerance: float = 0.1
    max_psi: float = 0.2
    max_outside_share: float = 0.05
    max_null_shift: float = 0.10
    min_values: int = 50

    def __post_init__(self) -> None:
        shares = (self.max_outside_share, self.max_null_shift)
        if (
            self.tolerance < 0
            or self.max_psi <= 0
            or self.min_values < 1
            or not all(0 <= s <= 1 for s in shares)
        ):
            raise InvalidInput(
                f"invalid validation thresholds: {self}",
                "tolerance >= 0, max_psi > 0, min_values >= 1; shares lie between 0 and 1",
            )


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """One failing check; `column` is None for a table-level failure. `failure_count` counts
    the failing values (0 when the column fails as a whole, e.g. it is missing)."""

    column: str | None
    check: str
    message: str
    failing_rows: tuple[dict[str, Any], ...] = ()  # {"row": label, "values": {column: value}}
    failure_count: int = 0


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome for one table; `version` and `reference` name the dataset versions."""

    ok: bool
    failures: tuple[CheckFailure, ...]
    checked_rows: int
    checked_columns: int
    reference_path: str = ""
    version: str = ""
    reference: str = ""
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line saying why the table failed, e.g. for a stopped pipeline's reason."""
        if self.ok:
            return f"ok: {self.checked_rows} rows, {self.checked_columns} columns"
        checks = ", ".join(f"{f.column or '(table)'} {f.check}" for f in self.failures)
        return f"{len(self.failures)} checks failed: {checks}"


# --- schema ---------------------------------------------------------------------------------


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


def reference_family(dtype: str) -> str:
    """The family of a recorded type name: `int64` -> integer, `timestamp[s]` -> datetime.

    Example:
        >>> reference_family("dictionary<string>"), reference_family("decimal128(10, 2)")
        ('string', 'floating')
    """
    if dtype.startswith("dictionary<") or dtype in ("string", "large_string"):
        return "string"
    for prefixes, family in (
        (("int", "uint"), "integer"),
        (("float", "decimal"), "floating"),
        (("bool",), "boolean"),
        (("timestamp", "date"), "datetime"),
    ):
        if dtype.startswith(prefixes):
            return family
    return "other"


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
        if actual == "empty" or actual in _ACCEPTS[family]:
            if family == "integer" and actual == "floating":
                values = _floats(series)
                return pd.Series(~np.isfinite(values) | (values == np.round(values)), series.index)
            return True
        if family not in ("integer", "floating"):
            return False
        not_numbers = np.isnan(_floats(series))  # name the values that are not numbers
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
        values = _floats(series)
        return pd.Series(~np.isfinite(values) | ((values >= lo) & (values <= hi)), series.index)

    return check


def _readable(series: Series, family: str) -> bool:
    """Whether the column's values can be compared with the reference's (same family)."""
    return family == "other" or frame_family(series) in _ACCEPTS[family] | {"empty"}


def _floats(series: Series) -> npt.NDArray[np.float64]:
    """Values as floats; what is not a number becomes NaN."""
    return np.asarray(pd.Series(pd.to_numeric(series, errors="coerce")), dtype=np.float64)


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
    frame: pd.DataFrame, reference: TableProfile, thresholds: Thresholds | None = None
) -> ValidationReport:
    """Check a table against a reference profile: its schema, then its distributions.

    Args:
        frame: The table to check, as read (e.g. `LocalDataset.to_pandas(path)`).
        reference: The profile of the reference table.
        thresholds: When checks fail; default `Thresholds()`.

    Returns:
        A `ValidationReport` naming every failing column and check, with a few failing rows.

    Example:
        >>> report = validate_frame(frame, train.version.tables[0])  # doctest: +SKIP
        >>> report.ok, [(f.column, f.check) for f in report.failures]  # doctest: +SKIP
        (False, [('price', 'range'), ('region', 'category')])
    """
    limits = thresholds or Thresholds()
    failures: list[CheckFailure] = []
    try:
        infer_schema(reference, tolerance=limits.tolerance).validate(frame, lazy=True)
    except SchemaErrors as exc:
        failures.extend(_schema_failures(exc.failure_cases, frame, reference, limits.tolerance))
    unread = {f.column for f in failures if f.check in ("dtype", "missing_column")}
    shifts, notes = _distribution_failures(frame, reference, limits, unread)
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
        labels = [i for i in group["index"] if not _missing(i)]
        found.append((None if _missing(column) else str(column), str(check), labels))
    failures = []
    for column, check, labels in found:
        name = _RENAMED.get(check, check)
        message = _message(column, name, len(labels), frame, reference, tolerance)
        failures.append(
            CheckFailure(column, name, message, _rows(frame, labels, column), len(labels))
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


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _rows(frame: pd.DataFrame, labels: Any, column: str | None) -> tuple[dict[str, Any], ...]:
    """Up to MAX_ROWS_SHOWN rows by index label as JSON-ready dicts, `column` first."""
    labels = list(labels)[:MAX_ROWS_SHOWN]
    if not labels:
        return ()
    order = [column] if column in frame.columns else []
    order += [c for c in frame.columns if c != column]
    shown = frame.loc[labels, order].iloc[:MAX_ROWS_SHOWN]
    rows = zip(shown.index, shown.itertuples(index=False, name=None), strict=True)
    return tuple(
        {
            "row": _plain(label),
            "values": {str(c): _plain(v) for c, v in zip(order, row, strict=True)},
        }
        for label, row in rows
    )


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: NaN and NaT become None, infinities and other objects text."""
    if isinstance(value, np.generic):
        value = value.item()
    if _missing(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


# --- distribution checks --------------------------------------------------------------------


def population_stability_index(
    expected: npt.ArrayLike, actual: npt.ArrayLike, *, epsilon: float = PSI_EPSILON
) -> float:
    """PSI = sum((a - e) * ln(a / e)) over the bins' shares; an empty bin counts as `epsilon`.

    Below 0.1 is usually read as no shift, 0.1 to 0.2 as moderate, above 0.2 as a real one.

    Args:
        expected: Counts (or shares) per bin in the reference.
        actual: Counts (or shares) per bin in the data checked, for the same bins.
        epsilon: The share an empty bin stands for, which keeps the logarithm finite.

    Returns:
        The index; 0 for identical shares.

    Raises:
        ValueError: The inputs differ in length, are negative, or one sums to zero.

    Example:
        >>> round(population_stability_index([50, 50], [90, 10]), 4)
        0.8789
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or (e < 0).any() or (a < 0).any():
        raise ValueError("expected and actual must be equally long lists of non-negative counts")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("expected and actual must each count at least one value")
    p = np.maximum(e / e.sum(), epsilon)
    q = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def merge_bins(
    edges: npt.ArrayLike, counts: npt.ArrayLike, min_share: float = MIN_BIN_SHARE
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Merge adjacent histogram bins until each holds at least `min_share` of the values.

    A short loop over the (at most a few dozen) bins, not the values; a last bin short of the
    share joins the one before it.

    Example:
        >>> merge_bins([0, 1, 2, 3, 4], [5, 10, 80, 5], 0.1)
        (array([0., 2., 4.]), array([15, 85]))
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    need, cuts, held = min_share * c.sum(), [0], 0
    for i, count in enumerate(c[:-1].tolist(), start=1):
        held += count
        if held >= need and held > 0:
            cuts.append(i)
            held = 0
    if len(cuts) > 1 and c[cuts[-1] :].sum() < need:
        cuts.pop()
    return e[[*cuts, len(c)]], np.add.reduceat(c, cuts)


def _distribution_failures(
    frame: pd.DataFrame, reference: TableProfile, limits: Thresholds, skip: set[str | None]
) -> tuple[list[CheckFailure], tuple[str, ...]]:
    failures: list[CheckFailure] = []
    few: list[str] = []
    for col in reference.columns:
        if col.name in skip or col.name not in frame.columns:
            continue
        failures.extend(_null_shift(frame, col, limits))
        if col.kind not in ("numeric", "categorical"):
            continue
        if min(int(frame[col.name].notna().sum()), col.count) < limits.min_values:
            few.append(col.name)
        elif col.histogram is not None:
            edges, ref_counts = merge_bins(col.histogram.edges, col.histogram.counts)
            failures.extend(_numeric_shift(frame, col, edges, ref_counts, limits))
        elif col.top:
            failures.extend(_categorical_shift(frame, col, limits))
    skipped = f"PSI skipped for {', '.join(few)}: fewer than {limits.min_values} values"
    return failures, (skipped,) if few else ()


def _null_shift(frame: pd.DataFrame, col: ColumnProfile, limits: Thresholds) -> list[CheckFailure]:
    """Only for columns that had nulls: new nulls elsewhere already fail the `nulls` check."""
    if not col.nullable or frame.empty:
        return []
    nulls = frame[col.name].isna().to_numpy()
    share, before = float(nulls.mean()), col.nulls / (col.count + col.nulls)
    if abs(share - before) <= limits.max_null_shift:
        return []
    message = (
        f"{share:.0%} of values are null, {before:.0%} in the reference "
        f"(allowed change: {limits.max_null_shift * 100:g} percentage points)"
    )
    more = share > before
    shown = _rows(frame, frame.index[nulls] if more else [], col.name)
    return [CheckFailure(col.name, "null_share", message, shown, int(nulls.sum()) if more else 0)]


def _numeric_shift(
    frame: pd.DataFrame,
    col: ColumnProfile,
    edges: npt.NDArray[np.float64],
    ref_counts: npt.NDArray[np.int64],
    limits: Thresholds,
) -> list[CheckFailure]:
    values = _floats(frame[col.name])
    finite = np.isfinite(values)
    k, lo, hi = len(ref_counts), float(edges[0]), float(edges[-1])
    # bin 0 is below the reference range, 1..k the reference bins, k+1 above; -1 not counted
    inner = np.searchsorted(edges[1:-1], values, side="right") + 1
    bins = np.where(~finite, -1, np.where(values < lo, 0, np.where(values > hi, k + 1, inner)))
    outside = (bins == 0) | (bins == k + 1)
    failures = []
    if (share := float(outside.sum() / max(finite.sum(), 1))) > limits.max_outside_share:
        message = (
            f"{share:.0%} of values lie outside the reference range [{lo:g}, {hi:g}] "
            f"(allowed: {limits.max_outside_share:.0%})"
        )
        shown = _rows(frame, frame.index[outside], col.name)
        failures.append(CheckFailure(col.name, "outside_range", message, shown, int(outside.sum())))

    def label(i: int) -> str:
        if i in (0, k + 1):
            return f"{'below' if i == 0 else 'above'} the reference range"
        return f"in [{edges[i - 1]:.4g}, {edges[i]:.4g}{']' if i == k else ')'}"

    expected = np.concatenate(([0], ref_counts, [0]))
    return failures + _psi_failure(frame, col, expected, bins, label, limits)


def _categorical_shift(
    frame: pd.DataFrame, col: ColumnProfile, limits: Thresholds
) -> list[CheckFailure]:
    names = [v for v, _ in col.top]
    expected = np.array([n for _, n in col.top] + [col.count - sum(n for _, n in col.top)])
    series = frame[col.name]
    codes = pd.Index(names).get_indexer(pd.Index(series.astype(str)))  # -1: not a top value
    bins = np.where(series.isna().to_numpy(), -1, np.where(codes < 0, len(names), codes))

    def label(i: int) -> str:
        return repr(names[i]) if i < len(names) else "outside the reference's top values"

    return _psi_failure(frame, col, expected, bins, label, limits)


def _psi_failure(
    frame: pd.DataFrame,
    col: ColumnProfile,
    expected: npt.NDArray[Any],
    bins: npt.NDArray[Any],
    label: Callable[[int], str],
    limits: Thresholds,
) -> list[CheckFailure]:
    """A PSI failure names the bin that gained most; its count is the values in excess of the
    reference shares, summed over the bins that gained."""
    counts = np.bincount(bins[bins >= 0], minlength=len(expected))
    if counts.sum() == 0 or expected.sum() == 0:
        return []
    if (psi := population_stability_index(expected, counts)) <= limits.max_psi:
        return []
    p, q = expected / expected.sum(), counts / counts.sum()
    worst = int(np.argmax(q - p))
    excess = round(float(np.clip(counts - p * counts.sum(), 0, None).sum()))
    message = (
        f"PSI {psi:.2f} > {limits.max_psi:g}: {q[worst]:.0%} of values are {label(worst)} "
        f"({p[worst]:.0%} in the reference)"
    )
    shown = _rows(frame, frame.index[bins == worst], col.name)
    return [CheckFailure(col.name, "psi", message, shown, excess)]


# --- versions -------------------------------------------------------------------------------


class DataValidator:
    """Validate a dataset version's tables against another version's recorded profiles.

    Example:
        >>> reports = DataValidator(project.data).validate("sales:5")  # doctest: +SKIP
        >>> all(report.ok for _, report in reports)  # doctest: +SKIP
        True
    """

    def __init__(self, data: DataService, thresholds: Thresholds | None = None) -> None:
        self.data = data
        self.thresholds = thresholds or Thresholds()

    def validate(self, ref: str, against: str | None = None) -> list[tuple[str, ValidationReport]]:
        """Validate every table file of `ref` against the same-path table of `against`.

        When each version holds exactly one table, the two are compared whatever their paths
        (this month's file against last month's). A table with no reference table fails.

        Args:
            ref: The version to check: `NAME` (the latest) or `NAME:V`.
            against: The reference version; default: the version before `ref`.

        Returns:
            (path, report) for each table file of `ref`, in path order.

        Raises:
            InvalidInput: `ref` has no tables, or is a first version and `against` is None.
            NotFound: A dataset or version does not exist.

        Example:
            >>> validator.validate("sales:2", against="sales:1")[0][1].ok  # doctest: +SKIP
            True
        """
        target = self.data.show(ref, files=True)
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
        local = self.data.get(target.name, target.version)
        results = []
        for path in paths:
            if (table := tables.get(path)) is None:
                known = ", ".join(sorted(t.path for t in baseline.tables)) or "none"
                message = f"{baseline.ref} has no table {path!r} to compare with (it has {known})"
                report = _failed(CheckFailure(None, "missing_reference", message))
            else:
                try:
                    frame = local.to_pandas(path)
                except InvalidInput as exc:
                    report = _failed(CheckFailure(None, "unreadable", exc.message), table.path)
                else:
                    report = validate_frame(frame, table, self.thresholds)
            named = dataclasses.replace(report, version=target.ref, reference=baseline.ref)
            results.append((path, named))
        return results

    def _reference(self, target: DatasetVersion, against: str | None) -> DatasetVersion:
        if against is not None:
            return self.data.show(against)
        earlier = [v.version for v in self.data.versions(target.name) if v.version < target.version]
        if not earlier:
            raise InvalidInput(
                f"{target.ref} is the first version of {target.name!r}: "
                "there is nothing to validate it against",
                f"name a reference version: mloop data validate {target.ref} --against NAME:V",
            )
        return self.data.show(f"{target.name}:{max(earlier)}")


def _failed(failure: CheckFailure, reference_path: str = "") -> ValidationReport:
    return ValidationReport(False, (failure,), 0, 0, reference_path)
