"""Read a CSV or Parquet table and profile it: schema, row count and per-column statistics.

The profile is recorded when a dataset version is added and later serves as the reference that
serving traffic is compared against for drift, so it has to be cheap enough to compute on every
`mloop data add` and plain enough to store as JSON: every number is a Python `int` or `float`,
and anything not finite becomes `None`.

Reading goes through pyarrow (multi-threaded, typed columns) and only falls back to pandas for
CSV that pyarrow's stricter parser refuses, such as quoted values with line breaks or a column
whose type changes after the first block. Statistics are computed on Arrow columns with numpy,
one vectorised pass per statistic, so a million rows cost tens of milliseconds per column.

Missing values: nulls and float NaN both count as `nulls`. Infinite values count towards
`count`, but are left out of min, max, mean, std, quantiles and the histogram, which would
otherwise all be infinite or undefined.

This module imports pandas and pyarrow at the top, so the CLI must import it lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mloop.domain.dataset import TABLE_SUFFIXES, ColumnKind, ColumnProfile, Histogram, TableProfile
from mloop.errors import InvalidInput

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

_CSV_SUFFIXES = (".csv",)
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_CONVERT = pcsv.ConvertOptions(strings_can_be_null=True)
_MAX_REASON = 200  # keep error messages to one readable line

# Arrow spells some types differently from numpy/pandas; we record the familiar names.
_DTYPE_NAMES = {
    "double": "float64",
    "float": "float32",
    "halffloat": "float16",
    "large_string": "string",
    "string_view": "string",
    "large_binary": "binary",
    "binary_view": "binary",
}


def read_table(path: Path, rel_path: str) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame, choosing the format by `rel_path`'s suffix.

    `path` may be a content-addressed object without a suffix; `rel_path` is the file's path
    inside the dataset version and decides the format.

    Args:
        path: Where the bytes are.
        rel_path: The file's name in the dataset (`.csv`, `.parquet` or `.pq`).

    Returns:
        The table as a pandas DataFrame.

    Raises:
        InvalidInput: The suffix is not a table's, or the file cannot be parsed.

    Example:
        >>> read_table(Path(".mloop/objects/ab/cdef"), "data/train.csv").shape  # doctest: +SKIP
        (1000, 8)
    """
    table = _read(path, rel_path)
    return table if isinstance(table, pd.DataFrame) else _to_pandas(table, rel_path)


def profile_table(path: Path, rel_path: str, *, bins: int = 20, top: int = 10) -> TableProfile:
    """Profile a CSV or Parquet file: row count, and per column its type and statistics.

    Numeric columns (integers, floats, decimals) get min, max, mean, sample std, quantiles at
    `QUANTILES` and an equal-width histogram; categorical ones (strings, booleans, dictionary
    columns) get their `top` most common values and the number of distinct values; any other
    type (timestamps, dates, binary, nested) only its counts.

    Args:
        path: Where the bytes are (may have no suffix).
        rel_path: The file's name in the dataset; its suffix decides the format and it becomes
            the profile's `path`.
        bins: Number of histogram bins for numeric columns (at least 1).
        top: Number of most common values kept for categorical columns.

    Returns:
        The `TableProfile`, with JSON-safe plain Python numbers only.

    Raises:
        InvalidInput: The file cannot be read as a table, or `bins`/`top` are out of range.

    Example:
        >>> profile = profile_table(Path("train.csv"), "train.csv")  # doctest: +SKIP
        >>> profile.rows, profile.column("age").mean  # doctest: +SKIP
        (1000, 41.3)
    """
    if bins < 1:
        raise InvalidInput(
            f"histogram bins must be at least 1, got {bins}", "pass bins=20, the default"
        )
    if top < 0:
        raise InvalidInput(f"top values must be 0 or more, got {top}", "pass top=10, the default")
    table = _read(path, rel_path)
    if isinstance(table, pd.DataFrame):
        table = _to_arrow(table, rel_path)
    hidden = _pandas_index_columns(table)
    columns = tuple(
        _profile_column(str(name), table.column(i), bins=bins, top=top)
        for i, name in enumerate(table.column_names)
        if name not in hidden
    )
    return TableProfile(path=rel_path, rows=int(table.num_rows), columns=columns)


# --- reading -------------------------------------------------------------------------------


def _read(path: Path, rel_path: str) -> Any:  # pa.Table | pd.DataFrame; pyarrow is untyped
    suffix = Path(rel_path).suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        try:
            return pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise _unreadable(rel_path, "Parquet", exc) from exc
    if suffix in _CSV_SUFFIXES:
        try:
            # Empty fields are missing values, as in pandas, also in string columns.
            table = pcsv.read_csv(path, convert_options=_CSV_CONVERT)
        except pa.ArrowInvalid:
            pass  # pyarrow's parser is strict; pandas reads more dialects, so give it a try
        except OSError as exc:
            raise _unreadable(rel_path, "CSV", exc) from exc
        else:
            _check_utf8(table, rel_path)
            return table
        try:
            return pd.read_csv(path, low_memory=False)
        except (ValueError, OSError) as exc:  # ParserError, EmptyDataError, UnicodeDecodeError
            raise _unreadable(rel_path, "CSV", exc) from exc
    suffixes = ", ".join(TABLE_SUFFIXES)
    raise InvalidInput(
        f"cannot read {rel_path!r} as a table: its suffix is not one of {suffixes}",
        "only CSV and Parquet files are profiled; rename the file or convert it",
    )


def _check_utf8(table: Any, rel_path: str) -> None:
    """pyarrow reads text that is not UTF-8 as binary columns; pandas refuses it. We refuse too,
    since a silently binary column profiles as nothing."""
    for field in table.schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            raise InvalidInput(
                f"cannot read {rel_path!r} as CSV: column {field.name!r} is not valid UTF-8 text",
                "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 in.csv > out.csv",
            )


def _unreadable(rel_path: str, fmt: str, exc: BaseException) -> InvalidInput:
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 1] + "…"
    hint = (
        "check that the file is valid CSV with one header row and the same number of fields "
        "on every line"
        if fmt == "CSV"
        else "check that the file is a complete Parquet file (it may be truncated or not Parquet)"
    )
    return InvalidInput(f"cannot read {rel_path!r} as {fmt}: {reason}", hint)


def _to_pandas(table: Any, rel_path: str) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = table.to_pandas()
    except (pa.ArrowException, ValueError) as exc:
        raise InvalidInput(
            f"cannot convert {rel_path!r} to a DataFrame: {exc}",
            "read it with pyarrow directly, or rewrite it with plainer column types",
        ) from exc
    return frame


def _to_arrow(frame: pd.DataFrame, rel_path: str) -> Any:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise _unreadable(rel_path, "CSV", exc) from exc


def _pandas_index_columns(table: Any) -> frozenset[str]:
    """Columns pandas wrote to store a DataFrame's index; they are not data, so not profiled."""
    meta = table.schema.pandas_metadata or {}
    return frozenset(c for c in meta.get("index_columns", ()) if isinstance(c, str))


# --- profiling -----------------------------------------------------------------------------


def dtype_name(arrow_type: Any) -> str:
    """The type name we record: Arrow's, with numpy's spelling for floats and one `string`.

    Example:
        >>> dtype_name(pa.float64()), dtype_name(pa.large_string())
        ('float64', 'string')
    """
    if pa.types.is_dictionary(arrow_type):
        return f"dictionary<{dtype_name(arrow_type.value_type)}>"
    name = str(arrow_type)
    return _DTYPE_NAMES.get(name, name)


def _kind(arrow_type: Any) -> ColumnKind:
    t = pa.types
    if t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return ColumnKind.NUMERIC
    if (
        t.is_boolean(arrow_type)
        or t.is_string(arrow_type)
        or t.is_large_string(arrow_type)
        or t.is_string_view(arrow_type)
        or t.is_dictionary(arrow_type)
    ):
        return ColumnKind.CATEGORICAL
    return ColumnKind.OTHER


def _profile_column(name: str, column: Any, *, bins: int, top: int) -> ColumnProfile:
    dtype = dtype_name(column.type)
    kind = _kind(column.type)
    if kind == "numeric":
        return _profile_numeric(name, dtype, column, bins=bins)
    nulls = int(column.null_count)
    count = len(column) - nulls
    if kind == "categorical":
        top_values, distinct = _top_values(column, top)
        return ColumnProfile(name, dtype, kind, count, nulls, top=top_values, distinct=distinct)
    return ColumnProfile(name, dtype, kind, count, nulls)


def _profile_numeric(name: str, dtype: str, column: Any, *, bins: int) -> ColumnProfile:
    values, count, nulls = _finite_values(column)
    if len(values) == 0:
        return ColumnProfile(name, dtype, ColumnKind.NUMERIC, count, nulls)
    # Arrow's kernels make one pass without temporaries (numpy's std allocates two copies).
    extremes = pc.min_max(values)
    lo, hi = float(extremes["min"].as_py()), float(extremes["max"].as_py())
    mean = _json_float(pc.mean(values).as_py())
    std = _json_float(pc.stddev(values, ddof=1).as_py()) if len(values) >= 2 else None
    qvalues = pc.quantile(values, q=QUANTILES, interpolation="linear").to_pylist()
    quantiles = tuple((q, float(v)) for q, v in zip(QUANTILES, qvalues, strict=True))
    array = np.asarray(values.to_numpy())  # ints stay ints: numpy bins them without a copy
    return ColumnProfile(
        name,
        dtype,
        ColumnKind.NUMERIC,
        count,
        nulls,
        min=lo,
        max=hi,
        mean=mean,
        std=std,
        quantiles=quantiles,
        histogram=_histogram(array, lo, hi, bins),
    )


def _finite_values(column: Any) -> tuple[Any, int, int]:
    """The column's finite values as an Arrow array, with `count` and `nulls` as documented:
    NaN counts as null, infinity counts but is not among the values."""
    nulls = int(column.null_count)
    present = column.drop_null()
    if pa.types.is_integer(column.type):  # no NaN or infinity; keep ints for fast quantiles
        return present, len(present), nulls
    # floats of any width and decimals; safe=False rounds decimals to the nearest float
    floats = pc.cast(present, pa.float64(), safe=False)
    array = np.asarray(floats.to_numpy(), dtype=np.float64)
    finite_mask = np.isfinite(array)
    if bool(finite_mask.all()):
        return floats, int(array.size), nulls
    nans = int(np.count_nonzero(np.isnan(array)))
    return pa.array(array[finite_mask]), int(array.size) - nans, nulls + nans


def _histogram(finite: npt.NDArray[Any], lo: float, hi: float, bins: int) -> Histogram:
    """Equal-width bins over [lo, hi]; the last bin also holds `hi`. One bin if all are equal."""
    if lo == hi:
        return Histogram(edges=(lo, hi), counts=(int(finite.size),))
    if np.isfinite(hi - lo):
        counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
    else:  # the span overflows float64: interpolate the edges instead of stepping by the width
        steps = np.linspace(0.0, 1.0, bins + 1)
        edges = lo * (1.0 - steps) + hi * steps
        edges[0], edges[-1] = lo, hi
        counts, edges = np.histogram(finite, bins=edges)
    return Histogram(edges=tuple(float(e) for e in edges), counts=tuple(int(c) for c in counts))


def _top_values(column: Any, top: int) -> tuple[tuple[tuple[str, int], ...], int]:
    """The `top` most frequent non-null values as strings, ties in order of first appearance."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    counted = pc.value_counts(column.drop_null())
    distinct = len(counted)
    if distinct == 0 or top == 0:
        return (), distinct
    counts = np.asarray(counted.field("counts").to_numpy(), dtype=np.int64)
    order = np.argsort(-counts, kind="stable")[:top]
    values = counted.field("values").take(pa.array(order)).to_pylist()
    return tuple((str(v), int(counts[i])) for v, i in zip(values, order, strict=True)), distinct


def _json_float(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None
