"""Request payloads in, predictions out: the model server's wire formats, checked in bulk.

Accepted bodies: MLflow's `/invocations` (`dataframe_split`, `dataframe_records`, `instances`,
`inputs`) and, through `mloop.server.oip`, Open Inference Protocol infer requests. Each
becomes one `Batch`: a float64 matrix in signature order when every input is numeric and the
model takes arrays, or a DataFrame when the model wants one or the signature mixes types. The
matrix comes from one `np.asarray` over all rows, checked by vectorised NaN/Inf tests:
per-column pandas work is where MLflow's server spends most of a one-row request
(perf-baselines.md, section 2a), so it happens here only for signatures that need it. Unusual
input (nulls, strings, ragged rows) falls to a slow path whose job is to name the culprit.

Errors: a body that is not JSON is a 400 (`InvalidInput`); everything about content (missing
column, wrong type, NaN where not allowed, wrong shape) is a 422 (`ValidationFailed`) whose
message names the column and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from mloop.domain.model import ColumnSpec, Signature
from mloop.errors import InvalidInput, ValidationFailed

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
STRING_DTYPES = ("string", "str", "object", "category")
Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Batch:
    """What `Predictor.predict` takes: an ndarray (rows x inputs) or a DataFrame, and its rows."""

    data: Any
    rows: int


def parse_body(body: bytes) -> Any:
    """Parse a JSON body; NaN/Infinity literals (Python's json.dumps writes them) are accepted.

    orjson refuses those literals and nesting deeper than 1,024, so only a body that mentions
    them is parsed again by the standard library, whose recursion limit is caught too.

    Example:
        >>> parse_body(b'{"inputs": [[1, 2]]}')
        {'inputs': [[1, 2]]}
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if b"NaN" in body or b"Infinity" in body:
            try:
                return json.loads(body)
            except (ValueError, RecursionError):
                pass
        raise InvalidInput(
            f"the body is not valid JSON: {exc}",
            'send a JSON object, e.g. {"dataframe_split": {"columns": [...], "data": [[...]]}}',
        ) from None


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list | tuple):
        return "a list"
    return "an object" if isinstance(value, dict) else repr(value)[:40]


def _as_array(values: Any) -> np.ndarray[Any, Any] | None:
    try:
        return np.asarray(values)
    except (ValueError, TypeError):  # ragged rows, or values numpy cannot hold
        return None


class RequestReader:
    """Turns parsed payloads into a `Batch` checked against one model's signature.

    Built once per served model, so the column list, its lookups and the masks used by the
    vectorised checks are computed once rather than per request.
    """

    def __init__(self, signature: Signature | None, wants_frame: bool = False) -> None:
        self.signature = signature
        self.wants_frame = wants_frame
        inputs = signature.inputs if signature is not None else ()
        self.names = [c.name for c in inputs]
        self.specs = {c.name: c for c in inputs}
        self.numeric = signature is not None and signature.all_numeric
        # Every batch this reader lets through is finite numbers (no NaN, no Inf).
        self.finite = self.numeric and not any(c.nullable for c in inputs)
        self._nullable = np.array([c.nullable for c in inputs], dtype=bool)
        self._ints = np.array([i for i, c in enumerate(inputs) if "int" in c.dtype], dtype=int)
        self._int_ranges = _int_ranges([c.dtype for c in inputs if "int" in c.dtype])
        self._bools = np.array([i for i, c in enumerate(inputs) if c.dtype == "bool"], dtype=int)
        self._getter = itemgetter(*self.names) if len(self.names) > 1 else None
        self._casts = {c.name: c.dtype for c in inputs if c.numeric and c.dtype != "float64"}
        self._orders: dict[tuple[str, ...], list[int]] = {}

    # MLflow --------------------------------------------------------------------------------
    def mlflow(self, payload: Any) -> Batch:
        """A batch from an MLflow `/invocations` body.

        Example:
            >>> reader.mlflow({"inputs": [[0.1, 0.2]]}).rows  # doctest: +SKIP
            1
        """
        found = [k for k in MLFLOW_FORMATS if k in payload] if isinstance(payload, dict) else []
        if len(found) != 1:
            raise ValidationFailed(
                f"the body must be a JSON object with exactly one of {', '.join(MLFLOW_FORMATS)}",
                'e.g. {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}',
            )
        key = found[0]
        value = payload[key]
        if key == "dataframe_split":
            if not isinstance(value, dict) or "data" not in value:
                raise ValidationFailed(
                    "dataframe_split must be an object with 'columns' and 'data'",
                    'e.g. {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}',
                )
            return self.rows(value["data"], value.get("columns"), key)
        if key == "dataframe_records":
            return self.records(value, key)
        if isinstance(value, dict):
            return self.columns(value, key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return self.records(value, key)
        return self.rows(value, None, key)

    # shapes --------------------------------------------------------------------------------
    def rows(self, data: Any, columns: Any, where: str) -> Batch:
        """Rows (lists of values) whose columns are `columns`, or the signature's order."""
        if self.signature is None:
            return self._unchecked(data, columns, where)
        if self.numeric:
            matrix = self._matrix(data, columns, where)
            return Batch(self._frame(matrix) if self.wants_frame else matrix, len(matrix))
        names = self._names(columns, where)
        table = self._table(data, len(names), where)
        position = {n: i for i, n in enumerate(names)}
        return self._mixed({n: [row[position[n]] for row in table] for n in self.names}, where)

    def records(self, records: Any, where: str) -> Batch:
        """Rows as objects mapping column names to values."""
        if not isinstance(records, list) or not records:
            raise ValidationFailed(f"{where} must be a non-empty list of objects, one per row")
        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise ValidationFailed(f"{where}: row {bad} is {_kind(records[bad])}, not an object")
        if self.signature is None:
            import pandas as pd

            return Batch(pd.DataFrame.from_records(records), len(records))
        try:
            if self._getter is not None:
                table: list[Any] = list(map(self._getter, records))
            else:
                table = [[r[self.names[0]]] for r in records]
        except KeyError as exc:
            row = next(i for i, r in enumerate(records) if exc.args[0] not in r)
            raise self._missing([str(exc.args[0])], f"{where}: row {row}") from None
        return self.rows(table, None, where)

    def columns(self, mapping: dict[str, Any], where: str) -> Batch:
        """Columns: a mapping from column name to its values (a scalar is a one-row column)."""
        values = {k: (v if isinstance(v, list | np.ndarray) else [v]) for k, v in mapping.items()}
        lengths = {len(v) for v in values.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k!r}: {len(v)}" for k, v in values.items())
            raise ValidationFailed(f"{where}: columns have different lengths ({sizes})")
        if self.signature is None:
            import pandas as pd

            return Batch(pd.DataFrame(values), lengths.pop() if lengths else 0)
        missing = [n for n in self.names if n not in values]
        if missing:
            raise self._missing(missing, where)
        if self.numeric:
            stacked = _as_array([values[n] for n in self.names])
            if stacked is not None and stacked.ndim == 2 and stacked.dtype.kind in "biuf":
                matrix = np.ascontiguousarray(stacked.T, dtype=np.float64)
            else:
                matrix = np.column_stack(
                    [self._column(self.specs[n], values[n], where) for n in self.names]
                )
            if not len(matrix):
                raise ValidationFailed(f"{where}: there are no rows to predict")
            self._check(
                matrix, self.names, self._nullable, self._ints, self._bools, where, self._int_ranges
            )
            return Batch(self._frame(matrix) if self.wants_frame else matrix, len(matrix))
        return self._mixed({n: values[n] for n in self.names}, where)

    # numeric fast path ---------------------------------------------------------------------
    def _matrix(self, data: Any, columns: Any, where: str) -> Matrix:
        names = self._names(columns, where)
        array = _as_array(data)
        usable = array is not None and array.ndim == 2 and array.shape[1] == len(names)
        if array is None or not usable or array.dtype.kind not in "biuf" or not len(array):
            table = self._table(data, len(names), where)
            position = {n: i for i, n in enumerate(names)}
            matrix = np.column_stack(
                [
                    self._column(self.specs[n], [r[position[n]] for r in table], where)
                    for n in self.names
                ]
            )
        else:
            order = None if names is self.names else self._order(names)
            matrix = np.asarray(array if order is None else array[:, order], dtype=np.float64)
        self._check(
            matrix, self.names, self._nullable, self._ints, self._bools, where, self._int_ranges
        )
        return matrix

    def _names(self, columns: Any, where: str) -> list[str]:
        """The incoming column order (the signature's when not given); checks none is missing."""
        if columns is None or columns == self.names:
            return self.names
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ValidationFailed(f"{where}: 'columns' must be a list of column names")
        if len(set(columns)) != len(columns):
            twice = sorted({c for c in columns if columns.count(c) > 1})
            raise ValidationFailed(f"{where}: column {twice[0]!r} appears more than once")
        missing = [n for n in self.names if n not in set(columns)]
        if missing:
            raise self._missing(missing, where)
        return columns

    def _order(self, names: list[str]) -> list[int]:
        key = tuple(names)
        order = self._orders.get(key)
        if order is None:
            position = {n: i for i, n in enumerate(names)}
            order = [position[n] for n in self.names]
            if len(self._orders) < 64:  # clients reuse a few orders; never grow without bound
                self._orders[key] = order
        return order

    def _missing(self, missing: list[str], where: str) -> ValidationFailed:
        noun = "column" if len(missing) == 1 else "columns"
        return ValidationFailed(
            f"{where}: missing {noun} {_listing(missing)}",
            f"the model's inputs are {_listing(self.names, 12)}",
        )

    @staticmethod
    def _table(data: Any, width: int, where: str) -> list[Any]:
        if not isinstance(data, list | np.ndarray) or not len(data):
            raise ValidationFailed(f"{where}: expected a non-empty list of rows, got {_kind(data)}")
        table = [r if isinstance(r, list | tuple | np.ndarray) else [r] for r in data]
        for i, row in enumerate(table):
            if len(row) != width:
                raise ValidationFailed(
                    f"{where}: row {i} has {len(row)} values, expected {width} (one per column)",
                    "every row lists one value per column, in the order of 'columns'",
                )
        return table

    def _column(self, spec: ColumnSpec, values: Any, where: str) -> Matrix:
        """One numeric column as float64, found value by value (the slow path names the row)."""
        array = _as_array(values)
        if array is not None and array.ndim == 1 and array.dtype.kind in "biuf":
            return np.asarray(array, dtype=np.float64)
        out = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            if value is None:
                out[i] = np.nan  # reported below as a missing value unless the column is nullable
            elif isinstance(value, int | float):
                out[i] = value
            else:
                raise ValidationFailed(
                    f"{where}: column {spec.name!r} (row {i}): expected {spec.dtype}, "
                    f"got {_kind(value)}",
                    "send numbers for numeric columns (null only where the column is nullable)",
                )
        return out

    @staticmethod
    def _check(
        matrix: Matrix,
        names: Sequence[str],
        nullable: npt.NDArray[np.bool_],
        ints: npt.NDArray[np.int_],
        bools: npt.NDArray[np.int_],
        where: str,
        int_ranges: tuple[Matrix, Matrix] | None = None,
    ) -> None:
        """NaN only where nullable, never Inf, integers in int columns (and within their
        dtype's range: a cast would wrap around silently), 0/1 in bool columns."""
        finite = np.isfinite(matrix)
        if not finite.all():
            wrong = np.isinf(matrix) | (~finite & ~nullable)
            if wrong.any():
                row, col = np.argwhere(wrong)[0]
                value = matrix[row, col]
                what = "a missing value (null or NaN)" if np.isnan(value) else f"{value}"
                raise ValidationFailed(
                    f"{where}: column {names[col]!r} (row {row}): got {what}, expected a finite "
                    "number" + ("" if np.isinf(value) else " (the column is not nullable)"),
                    "send finite numbers; NaN and null are accepted only in nullable columns",
                )
        for indices, expected in ((ints, "an integer"), (bools, "a bool")):
            if len(indices):
                values = matrix[:, indices]
                if expected == "a bool":
                    wrong = (values != 0) & (values != 1) & ~np.isnan(values)
                else:
                    wrong = (values != np.round(values)) & ~np.isnan(values)
                if wrong.any():
                    row, col = np.argwhere(wrong)[0]
                    raise ValidationFailed(
                        f"{where}: column {names[indices[col]]!r} (row {row}): expected "
                        f"{expected}, got {matrix[row, indices[col]]}"
                    )
                if expected == "an integer" and int_ranges is not None:
                    low, high = int_ranges
                    outside = (values < low) | (values >= high)
                    if outside.any():
                        row, col = np.argwhere(outside)[0]
                        raise ValidationFailed(
                            f"{where}: column {names[indices[col]]!r} (row {row}): "
                            f"{matrix[row, indices[col]]:.0f} is out of range: expected an "
                            f"integer from {int(low[col])} to {int(high[col]) - 1}"
                        )

    def _frame(self, matrix: Matrix) -> Any:
        import pandas as pd

        frame = pd.DataFrame(matrix, columns=self.names, copy=False)
        return frame.astype(self._casts) if self._casts else frame

    # mixed types ---------------------------------------------------------------------------
    def _mixed(self, columns: dict[str, Any], where: str) -> Batch:
        import pandas as pd

        data: dict[str, Any] = {}
        for name in self.names:
            spec = self.specs[name]
            values = columns[name]
            if spec.numeric:
                column = self._column(spec, values, where).reshape(-1, 1)
                self._check(
                    column,
                    [name],
                    np.array([spec.nullable]),
                    np.array([0] if "int" in spec.dtype else [], dtype=int),
                    np.array([0] if spec.dtype == "bool" else [], dtype=int),
                    where,
                    _int_ranges([spec.dtype] if "int" in spec.dtype else []),
                )
                series = column[:, 0]
                has_nan = bool(np.isnan(series).any())
                data[name] = (
                    series if has_nan or spec.dtype == "float64" else series.astype(spec.dtype)
                )
            else:
                data[name] = self._other(spec, list(values), where)
        rows = len(next(iter(data.values()))) if data else 0
        if not rows:
            raise ValidationFailed(f"{where}: there are no rows to predict")
        return Batch(pd.DataFrame(data), rows)

    @staticmethod
    def _other(spec: ColumnSpec, values: list[Any], where: str) -> Any:
        text = spec.dtype in STRING_DTYPES or spec.dtype.startswith("datetime")
        for i, value in enumerate(values):
            if value is None and not spec.nullable:
                raise ValidationFailed(
                    f"{where}: column {spec.name!r} (row {i}): got null, expected {spec.dtype} "
                    "(the column is not nullable)"
                )
            if text and value is not None and not isinstance(value, str):
                raise ValidationFailed(
                    f"{where}: column {spec.name!r} (row {i}): expected {spec.dtype} "
                    f"(a JSON string), got {_kind(value)}"
                )
        if spec.dtype.startswith("datetime"):
            import pandas as pd

            try:
                return pd.to_datetime(values)
            except (ValueError, TypeError) as exc:
                raise ValidationFailed(
                    f"{where}: column {spec.name!r}: expected a date-time string: {exc}",
                    "send ISO 8601 text, e.g. '2024-05-01T12:00:00'",
                ) from None
        return np.asarray(values, dtype=object)

    def _unchecked(self, data: Any, columns: Any, where: str) -> Batch:
        """No signature: pass what came, as a matrix when it is numeric."""
        array = _as_array(data)
        numeric = array is not None and array.ndim == 2 and array.dtype.kind in "biuf"
        if array is not None and numeric and len(array) and (not self.wants_frame or not columns):
            return Batch(np.asarray(array, dtype=np.float64), len(array))
        import pandas as pd

        first = data[0] if isinstance(data, list) and data else None
        width = len(columns) if columns else len(first) if isinstance(first, list) else 1
        table = self._table(data, width, where)
        return Batch(pd.DataFrame(table, columns=columns), len(table))


def _int_ranges(dtypes: Sequence[str]) -> tuple[Matrix, Matrix]:
    """Per int column, the lowest value and one past the highest, as floats (2**63 is exact)."""
    bounds = [np.iinfo(np.dtype(d)) for d in dtypes]
    low = np.array([float(b.min) for b in bounds], dtype=np.float64)
    high = np.array([float(b.max) + 1 for b in bounds], dtype=np.float64)
    return low, high


def jsonable(predictions: Any) -> Any:
    """Predictions as something orjson writes (with OPT_SERIALIZE_NUMPY) in one call."""
    if isinstance(predictions, np.ndarray):
        if predictions.dtype.kind in "biuf":
            return np.ascontiguousarray(predictions)
        return predictions.tolist()
    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return predictions.to_dict(orient="records")  # a DataFrame, as MLflow answers it
    if hasattr(predictions, "tolist"):
        return predictions.tolist()
    return predictions


def mlflow_response(predictions: Any) -> bytes:
    """MLflow's response body: `{"predictions": [...]}`.

    Example:
        >>> mlflow_response(np.array([1, 0]))
        b'{"predictions":[1,0]}'
    """
    return orjson.dumps({"predictions": jsonable(predictions)}, option=orjson.OPT_SERIALIZE_NUMPY)
