"""What a validation reports: thresholds, failing checks with example rows, and the report.

Shared by the schema checks (`validation.py`) and the distribution checks (`shift.py`).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mloop.domain.dataset import TableProfile
from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from typing import TypeAlias

    Series: TypeAlias = pd.Series[Any]

MAX_ROWS_SHOWN = 5
# What a reference family accepts; an all-null column ("empty") is always accepted.
ACCEPTS = {
    "integer": {"integer", "floating"},  # floats must then be whole numbers
    "floating": {"integer", "floating"},
    "boolean": {"boolean"},
    "string": {"string", "integer", "boolean"},
    "datetime": {"datetime"},
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


# --- columns --------------------------------------------------------------------------------


def select_columns(
    frame: pd.DataFrame,
    reference: TableProfile,
    columns: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> tuple[pd.DataFrame, TableProfile]:
    """The table and its reference narrowed to the columns a validation checks.

    `columns` checks only those (other columns of the table are ignored, not "extra");
    `exclude` checks all but those. A name that is in neither the reference nor the table is
    refused: a typo must not quietly check less than asked.

    Example:
        >>> frame, profile = select_columns(frame, profile, exclude=["year"])  # doctest: +SKIP
    """
    if columns is None and not exclude:
        return frame, reference
    known = [c.name for c in reference.columns]
    unknown = [n for n in columns or () if n not in known]
    unknown += [n for n in exclude if n not in known and n not in frame.columns]
    if unknown:
        raise InvalidInput(
            f"the reference table {reference.path} has no column "
            + ", ".join(repr(n) for n in dict.fromkeys(unknown)),
            f"its columns are: {', '.join(known)}",
        )
    keep = set(known if columns is None else columns) - set(exclude)
    if not keep:
        raise InvalidInput(
            f"no column of {reference.path} is left to validate",
            "name columns to check (columns=[...], --columns) or fewer to leave out",
        )
    narrowed = dataclasses.replace(
        reference, columns=tuple(c for c in reference.columns if c.name in keep)
    )
    if columns is None:
        return frame.drop(columns=[n for n in exclude if n in frame.columns]), narrowed
    return frame[[c for c in frame.columns if c in keep]], narrowed


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


# --- schema ---------------------------------------------------------------------------------


def as_floats(series: Series) -> npt.NDArray[np.float64]:
    """Values as floats; what is not a number becomes NaN."""
    return np.asarray(pd.Series(pd.to_numeric(series, errors="coerce")), dtype=np.float64)


def is_missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def failing_rows(
    frame: pd.DataFrame, labels: Any, column: str | None
) -> tuple[dict[str, Any], ...]:
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
            "row": json_scalar(label),
            "values": {str(c): json_scalar(v) for c, v in zip(order, row, strict=True)},
        }
        for label, row in rows
    )


def json_scalar(value: Any) -> Any:
    """A JSON-ready scalar: NaN and NaT become None, infinities and other objects text."""
    if isinstance(value, np.generic):
        value = value.item()
    if is_missing(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return value.isoformat() if isinstance(value, datetime.date) else str(value)
