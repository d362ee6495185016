"""What a validation reports: thresholds, failing checks with example rows, and the report.

Shared by the schema checks (`validation.py`) and the distribution checks (`shift.py`).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from typing import TypeAlias

    Series: TypeAlias = pd.Series[Any]

MAX_ROWS_SHOWN = 5
MIN_BIN_SHARE = 0.1
PSI_EPSILON = 1e-4  # the share an empty bin stands for, so PSI stays finite


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
