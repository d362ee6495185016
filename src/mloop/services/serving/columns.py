"""One column of a request, checked and converted: the rules every payload format shares.

MLflow's JSON shapes, Open Inference Protocol tensors (JSON or binary), a CSV body and the rows
of a file given to `mloop models predict` all end here, so a value is accepted or refused, with
the same message, whatever carried it. Per signature dtype:

- int columns take whole numbers within the dtype's range, compared exactly: 2**63 - 1 fits
  int64 and -2**63 - 1 does not. A float counts when it is whole and below 2**53: from there on,
  floats skip integers, so the number may not be the one the client meant (a JSON parser turns
  integers past 64 bits into floats, too).
- float columns take numbers the dtype holds (a 401-digit integer does not fit float64).
- bool columns take true/false, or 0 and 1; no other column takes a bool, so JSON's `false` is
  never read as the number 0.
- a missing value (null, NaN, an empty CSV cell, pandas' NA) only where the column is nullable;
  Inf never.
- text columns take strings; date-time columns strings pandas reads as date-times, or
  date-times.

Two ways in, one set of rules. `NumericRules.check` runs them vectorised over a numeric array
(the fast path: one `np.asarray` over a whole request, perf-baselines.md section 2a); `convert`
runs them on one column of anything else, value by value where it must, and names the first
value that breaks one. Missing text becomes NaN, the marker pandas gives the training data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mloop.domain.model import ColumnSpec
from mloop.errors import ValidationFailed

Array = np.ndarray[Any, Any]
EXACT = 2.0**53  # floats hold every integer below this, and skip some from here on


def is_missing(value: Any) -> bool:
    """None, NaN (Python's or numpy's), pandas' NA and NaT: what every format means by "no value".

    Example:
        >>> is_missing(float("nan")), is_missing(0)
        (True, False)
    """
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return type(value).__name__ in ("NAType", "NaTType")


def describe(value: Any) -> str:
    """A value as a message shows it, whatever format carried it (no numpy reprs).

    Example:
        >>> describe(10**400)
        '1000000…000 (401 digits)'
    """
    if is_missing(value):
        return "a missing value"
    if isinstance(value, bool | np.bool_):
        return f"a bool ({'true' if value else 'false'})"
    if isinstance(value, str):
        return f"string {value[:40]!r}" + ("…" if len(value) > 40 else "")
    if isinstance(value, int | np.integer):
        try:
            text = str(int(value))
        except ValueError:  # past Python's limit for int-to-text conversions
            return "an integer of thousands of digits"
        digits = len(text.lstrip("-"))
        return text if digits <= 24 else f"{text[: -digits + 7]}…{text[-3:]} ({digits} digits)"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, list | tuple | np.ndarray):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def column_error(where: str, name: str, row: int, problem: str) -> ValidationFailed:
    """No hint of its own: the server points at its metadata, batch scoring at `models show`."""
    return ValidationFailed(f"{where}: column {name!r} (row {row}): {problem}")


def _int_bounds(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def _out_of_range(value: Any, dtype: str) -> str:
    if "int" in dtype:
        low, high = _int_bounds(dtype)
        return f"{describe(value)} is out of range: expected an integer from {low} to {high}"
    return f"{describe(value)} is out of range for {dtype}"


class Origin(NamedTuple):
    """The Python values a number array was made from, where a bool can hide: numpy reads
    `true` as 1. `cell(row, column)`: the value behind one cell; `any_bool()`: whether any
    value is a bool at all, in one C-speed pass (`bool in map(type, row)`), so a request
    without bools pays no Python loop over its 0s and 1s."""

    cell: Callable[[int, int], Any]
    any_bool: Callable[[], bool]


class NumericRules:
    """The rules for numeric columns `specs`, with their masks computed once (per model)."""

    def __init__(self, specs: Sequence[ColumnSpec]) -> None:
        self.specs = tuple(specs)
        self.names = [s.name for s in specs]
        self.nullable = np.array([s.nullable for s in specs], dtype=bool)
        self.bools = np.array([s.dtype == "bool" for s in specs], dtype=bool)
        self.any_bools = bool(self.bools.any())  # reductions done once, not per request
        self.only_bools = bool(self.bools.all())
        self.all_nullable = bool(self.nullable.all())
        groups: dict[str, list[int]] = {}
        for i, spec in enumerate(specs):
            if "int" in spec.dtype or (spec.dtype.startswith("float") and spec.dtype != "float64"):
                groups.setdefault(spec.dtype, []).append(i)
        self.groups = [(dtype, np.array(idx, dtype=int)) for dtype, idx in groups.items()]
        self.ints = np.array([i for i, s in enumerate(specs) if "int" in s.dtype], dtype=int)

    def inexact(self, array: Array) -> bool:
        """Whether a float array, made from Python numbers, holds an int-column value past
        2**53: numpy may have rounded a Python int there, so only the values say."""
        if not len(self.ints) or array.dtype.kind != "f":
            return False
        return bool((np.abs(array[:, self.ints]) >= EXACT).any())

    def check(self, array: Array, where: str, origin: Origin | None = None) -> None:
        """Raise at the first value of `array` (rows x these columns, any numeric dtype) that
        breaks a rule. `origin`: the Python values behind the array (None for typed arrays,
        which hold no hidden bool)."""
        kind = array.dtype.kind
        if kind == "b":
            if not self.only_bools:
                col = int(np.flatnonzero(~self.bools)[0])
                self._fail(where, col, 0, bool(array[0, col]))
            return
        finite = None
        if kind == "f":
            finite = np.isfinite(array)
            if not finite.all():
                wrong = np.isinf(array)
                if not self.all_nullable:
                    wrong |= ~finite & ~self.nullable
                if wrong.any():
                    row, col = (int(i) for i in np.argwhere(wrong)[0])
                    self._fail(where, col, row, float(array[row, col]))
        if origin is not None and not self.only_bools and self._may_hide_bool(array, origin):
            hidden = ((array == 0) | (array == 1)) & ~self.bools
            for row, col in np.argwhere(hidden).tolist():
                value = origin.cell(row, col)
                if isinstance(value, bool | np.bool_):
                    self._fail(where, col, row, value)
        if self.any_bools:
            flags = array[:, self.bools]
            wrong = (flags != 0) & (flags != 1)
            if finite is not None:
                wrong &= finite[:, self.bools]
            if wrong.any():
                row, col = (int(i) for i in np.argwhere(wrong)[0])
                col = int(np.flatnonzero(self.bools)[col])
                self._fail(where, col, row, array[row, col].item())
        for dtype, idx in self.groups:
            self._check_range(array[:, idx], idx, dtype, where)

    def _may_hide_bool(self, array: Array, origin: Origin) -> bool:
        """Whether a cell of `array` may be a bool, by the cheapest test for its size."""
        if self.any_bools or array.size <= 64:  # one C-speed pass over the Python values
            return origin.any_bool()
        return bool(((array == 0) | (array == 1)).any()) and origin.any_bool()

    def _check_range(
        self, values: Array, idx: npt.NDArray[np.int_], dtype: str, where: str
    ) -> None:
        kind = values.dtype.kind
        if "int" in dtype:
            low, high = _int_bounds(dtype)
            if kind == "f":
                with np.errstate(invalid="ignore"):
                    fraction = (values != np.floor(values)) & np.isfinite(values)
                if fraction.any():
                    row, col = (int(i) for i in np.argwhere(fraction)[0])
                    self._fail(where, int(idx[col]), row, float(values[row, col]))
                # whole floats: within the dtype's range, and below 2**53, where they are exact
                with np.errstate(invalid="ignore"):
                    outside = (values < low) | (values > high) | (np.abs(values) >= EXACT)
            else:
                have = np.iinfo(values.dtype)
                outside = np.zeros(values.shape, dtype=bool)
                if low > have.min:
                    outside |= values < np.array(low).astype(values.dtype)
                if high < have.max:
                    outside |= values > np.array(high).astype(values.dtype)
        else:  # float32, float16: what the dtype can hold
            limit = float(np.finfo(np.dtype(dtype)).max)
            with np.errstate(invalid="ignore"):
                outside = np.abs(values.astype(np.float64)) > limit
        if outside.any():
            row, col = (int(i) for i in np.argwhere(outside)[0])
            self._fail(where, int(idx[col]), row, values[row, col].item())

    def _fail(self, where: str, col: int, row: int, value: Any) -> None:
        raise column_error(where, self.names[col], row, number_problem(self.specs[col], value))


def number_problem(spec: ColumnSpec, value: Any) -> str:
    """What is wrong with `value` (known to break a rule) in the numeric column `spec`."""
    dtype = spec.dtype
    if is_missing(value):
        return (
            "got a missing value (null or NaN), expected a finite number "
            "(the column is not nullable)"
        )
    if isinstance(value, bool | np.bool_):
        return f"expected {dtype}, got {describe(value)}"
    if not isinstance(value, int | float | np.integer | np.floating):
        return f"expected {dtype}, got {describe(value)}"
    if isinstance(value, float | np.floating) and math.isinf(value):
        return f"got {float(value)}, expected a finite number"
    if dtype == "bool":
        return f"expected a bool, got {describe(value)}"
    if "int" in dtype and isinstance(value, float | np.floating):
        number = float(value)
        if not number.is_integer():
            return f"expected an integer, got {describe(value)}"
        low, high = _int_bounds(dtype)
        if low <= number <= high and EXACT <= abs(number) < 2.0**63:
            return (
                f"{describe(value)} is a float past 2**53, where floats skip integers: "
                "send the number as an integer"
            )
    return _out_of_range(value, dtype)


@functools.lru_cache(maxsize=256)
def _rules(spec: ColumnSpec) -> NumericRules:
    return NumericRules((spec,))


def convert(spec: ColumnSpec, values: Any, where: str) -> Array:
    """One column as the model takes it, every value checked against `spec`.

    `values`: a list of Python values (parsed JSON) or a numpy array (a pandas column, a
    tensor). Numbers come back as the column's dtype (float64 where a nullable column has
    missing values), text as an object array (NaN where missing), date-times as datetime64.

    Example:
        >>> convert(ColumnSpec("n", "int64"), [2**63 - 1], "inputs").tolist()
        [9223372036854775807]
    """
    if spec.numeric:
        return _numbers(spec, values, where)
    if spec.dtype.startswith("datetime"):
        return _datetimes(spec, values, where)
    return _texts(spec, values, where)


def _numbers(spec: ColumnSpec, values: Any, where: str) -> Array:
    python = not isinstance(values, np.ndarray)
    try:
        array = np.asarray(values) if python else values
    except (ValueError, TypeError):  # values numpy cannot hold side by side
        array = None
    if array is not None and array.ndim == 1 and array.dtype.kind in "biuf":
        matrix = array.reshape(-1, 1)
        rules = _rules(spec)
        if not (python and rules.inexact(matrix)):
            origin = Origin(lambda r, _: values[r], lambda: bool in map(type, values))
            rules.check(matrix, where, origin if python else None)
            return typed(spec, array)
    return _one_by_one(spec, values, where)


def typed(spec: ColumnSpec, array: Array) -> Array:
    """A numeric column that passed the rules, in the column's dtype (float64 with NaN where
    a nullable column has missing values, since int and bool arrays hold none)."""
    if spec.dtype.startswith("float") or (array.dtype.kind == "f" and np.isnan(array).any()):
        return np.asarray(array, dtype=np.float64)
    return array.astype(spec.dtype, copy=False)


def _one_by_one(spec: ColumnSpec, values: Any, where: str) -> Array:
    """The exact path: Python ints of any size, strings, lists; names the first bad value."""
    dtype = spec.dtype
    whole = "int" in dtype
    low, high = _int_bounds(dtype) if whole else (0, 0)
    out: list[Any] = []
    missing = False
    for row, value in enumerate(values):
        if is_missing(value):
            if not spec.nullable:
                raise column_error(where, spec.name, row, number_problem(spec, None))
            out.append(math.nan)
            missing = True
            continue
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            if dtype == "bool" and isinstance(value, bool | np.bool_):
                out.append(bool(value))
                continue
            raise column_error(where, spec.name, row, number_problem(spec, value))
        if isinstance(value, int | np.integer):
            number: Any = int(value)
            fits = low <= number <= high if whole else dtype != "bool" or number in (0, 1)
            if fits and not whole:
                try:
                    fits = abs(float(number)) <= _float_limit(dtype)
                except OverflowError:
                    fits = False
        else:
            number = float(value)
            fits = math.isfinite(number)
            if fits and whole:
                fits = number.is_integer() and low <= number <= high and abs(number) < EXACT
            elif fits:
                fits = dtype != "bool" or number in (0.0, 1.0)
                fits = fits and abs(number) <= _float_limit(dtype)
        if not fits:
            raise column_error(where, spec.name, row, number_problem(spec, value))
        out.append(number)
    if missing or dtype.startswith("float"):
        return np.array(out, dtype=np.float64)
    return np.array(out, dtype=dtype)


def _float_limit(dtype: str) -> float:
    return float(np.finfo(np.dtype(dtype)).max) if dtype.startswith("float") else math.inf


def _texts(spec: ColumnSpec, values: Any, where: str) -> Array:
    out = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):
        if isinstance(value, str):
            out[row] = value
        elif is_missing(value):
            if not spec.nullable:
                raise column_error(where, spec.name, row, _missing_text(spec))
            out[row] = math.nan
        else:
            raise column_error(where, spec.name, row, _not_text(spec, value))
    return out


def _missing_text(spec: ColumnSpec) -> str:
    return f"got a missing value, expected {spec.dtype} (the column is not nullable)"


def _not_text(spec: ColumnSpec, value: Any) -> str:
    number = isinstance(value, int | float | np.integer | np.floating)
    number = number and not isinstance(value, bool | np.bool_)
    return f"expected {spec.dtype}, got {'the number ' if number else ''}{describe(value)}"


def _datetimes(spec: ColumnSpec, values: Any, where: str) -> Array:
    import pandas as pd

    if not (isinstance(values, np.ndarray) and values.dtype.kind == "M"):
        for row, value in enumerate(values):
            if is_missing(value):
                if not spec.nullable:
                    raise column_error(where, spec.name, row, _missing_text(spec))
            elif not isinstance(value, str) and not hasattr(value, "isoformat"):
                raise column_error(where, spec.name, row, _not_text(spec, value))
    try:
        stamps: Array = pd.to_datetime(pd.Series(values, dtype=object)).to_numpy()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValidationFailed(
            f"{where}: column {spec.name!r}: expected a date-time: {exc}",
            "send ISO 8601 text, e.g. '2024-05-01T12:00:00'",
        ) from None
    if not spec.nullable and np.isnat(stamps).any():
        row = int(np.flatnonzero(np.isnat(stamps))[0])
        raise column_error(where, spec.name, row, _missing_text(spec))
    return stamps
