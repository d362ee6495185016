"""Request payloads in, predictions out: the model server's wire formats, checked in bulk.

Accepted bodies: MLflow's `/invocations` (`dataframe_split`, `dataframe_records`, `instances`,
`inputs`), a CSV body or file read into a DataFrame (`frame`), and, through `mloop.server.oip`,
Open Inference Protocol infer requests. Each becomes one `Batch`: a float64 matrix in
signature order when every input is numeric and the model takes arrays, or a DataFrame when
the model wants one or the signature mixes types. The matrix comes from one `np.asarray` over
all rows, checked by vectorised tests: per-column pandas work is where MLflow's server spends
most of a one-row request (perf-baselines.md, section 2a), so it happens here only for
signatures that need it. Whatever does not fit the fast path (nulls, strings, ragged rows,
integers past 2**53) goes column by column through `columns.convert`, which names the culprit.
The rules themselves live in `columns.py`, once, for every format.

Errors: a body that is not JSON is a 400 (`InvalidInput`); everything about content (missing
column, wrong type, NaN where not allowed, wrong shape) is a 422 (`ValidationFailed`) whose
message names the column and what was expected.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from mloop.domain.model import Signature
from mloop.errors import InvalidInput, ValidationFailed
from mloop.services.serving.columns import EXACT, NumericRules, Origin, convert, describe

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class UnknownCategory:
    """A value of a text column that training never saw, and in how many rows it came."""

    column: str
    value: str
    count: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What `Predictor.predict` takes: an ndarray (rows x inputs) or a DataFrame, its rows, and
    the categories in it that training never saw (reported, not refused)."""

    data: Any
    rows: int
    unknown: tuple[UnknownCategory, ...] = ()


def describe_unknown(unknown: Sequence[UnknownCategory], limit: int = 3) -> str:
    """The categories training never saw, for a warning line or header, a few per column.

    Example:
        >>> describe_unknown([UnknownCategory("contract", "weekly", 2)])
        "categories training never saw (predicted anyway): column 'contract': 'weekly' (2 rows)"
    """
    by_column: dict[str, list[UnknownCategory]] = {}
    for found in unknown:
        by_column.setdefault(found.column, []).append(found)
    parts = []
    for column, values in by_column.items():
        shown = ", ".join(
            f"{v.value[:40]!r} ({v.count} row{'s' if v.count != 1 else ''})" for v in values[:limit]
        )
        more = f" and {len(values) - limit} more" if len(values) > limit else ""
        parts.append(f"column {column!r}: {shown}{more}")
    return "categories training never saw (predicted anyway): " + "; ".join(parts)


def parse_body(body: bytes) -> Any:
    """Parse a JSON body; NaN/Infinity literals (Python's json.dumps writes them) are accepted.

    orjson refuses those literals, numbers past a double and nesting deeper than 1,024, so a
    body it refuses for a number is parsed again by the standard library (its recursion and
    4,300-digit limits are caught too): a number too large for its column is then a 422 that
    names the column, not a 400 about JSON.

    Example:
        >>> parse_body(b'{"inputs": [[1, 2]]}')
        {'inputs': [[1, 2]]}
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if b"NaN" in body or b"Infinity" in body or "as double" in str(exc):
            try:
                return json.loads(body.decode("utf-8"))
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
    return "null" if value is None else describe(value)


def _as_array(values: Any) -> Array | None:
    try:
        return np.asarray(values)
    except (ValueError, TypeError):  # ragged rows, or values numpy cannot hold
        return None


class RequestReader:
    """Turns parsed payloads into a `Batch` checked against one model's signature.

    Built once per served model, so the column list, its lookups and the masks used by the
    vectorised checks are computed once rather than per request. `categories`: per text
    column, the values training saw; others are counted in `Batch.unknown`.
    """

    def __init__(
        self,
        signature: Signature | None,
        wants_frame: bool = False,
        categories: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.signature = signature
        self.wants_frame = wants_frame
        inputs = signature.inputs if signature is not None else ()
        self.names = [c.name for c in inputs]
        self.specs = {c.name: c for c in inputs}
        self.numeric = signature is not None and signature.all_numeric
        # Every batch this reader lets through is finite numbers (no NaN, no Inf).
        self.finite = self.numeric and not any(c.nullable for c in inputs)
        self.rules = NumericRules(inputs)
        self.categories = {
            name: frozenset(known)
            for name, known in (categories or {}).items()
            if name in self.specs and not self.specs[name].numeric
        }
        self._getter = itemgetter(*self.names) if len(self.names) > 1 else None
        self._orders: dict[tuple[str, ...], list[int]] = {}
        self._casts: dict[str, dict[str, str]] = {}

    # MLflow --------------------------------------------------------------------------------
    def mlflow(self, payload: Any, bools: bool = True) -> Batch:
        """A batch from an MLflow `/invocations` body. `bools=False` says the JSON text holds
        no `true` or `false` at all (the server looks at its bytes), so no value is looked at
        for one hiding in a number column.

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
            return self.rows(value["data"], value.get("columns"), key, bools)
        if key == "dataframe_records":
            return self.records(value, key, bools)
        if isinstance(value, dict):
            return self.columns(value, key, bools)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return self.records(value, key, bools)
        return self.rows(value, None, key, bools)

    # shapes --------------------------------------------------------------------------------
    def rows(self, data: Any, columns: Any, where: str, bools: bool = True) -> Batch:
        """Rows (lists of values) whose columns are `columns`, or the signature's order."""
        if self.signature is None:
            return self._unchecked(data, columns, where)
        names = self._names(columns, where)
        if self.numeric:
            array = _as_array(data)
            if (
                array is not None
                and array.ndim == 2
                and array.shape[1] == len(names)
                and array.dtype.kind in "biuf"
                and len(array)
            ):
                order = None if names is self.names else self._order(names)
                typed = array if order is None else array[:, order]
                origin = None
                if not isinstance(data, np.ndarray):  # Python values: a bool may hide in them
                    at = order or range(len(names))
                    origin = Origin(
                        lambda r, c: data[r][at[c]],
                        lambda: bools and any(bool in map(type, row) for row in data),
                    )
                batch = self._fast(typed, where, origin)
                if batch is not None:
                    return batch
        table = self._table(data, len(names), where)
        position = {n: i for i, n in enumerate(names)}
        return self._convert({n: [row[position[n]] for row in table] for n in self.names}, where)

    def records(self, records: Any, where: str, bools: bool = True) -> Batch:
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
        return self.rows(table, None, where, bools)

    def columns(self, mapping: dict[str, Any], where: str, bools: bool = True) -> Batch:
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
        if lengths == {0}:
            raise ValidationFailed(f"{where}: there are no rows to predict")
        # a typed bool array merges into numbers unseen: those columns take the exact path
        merged_bool = any(
            isinstance(v, np.ndarray) and v.dtype.kind == "b" and self.specs[n].dtype != "bool"
            for n, v in ((n, values[n]) for n in self.names)
        )
        if self.numeric and not merged_bool:
            stacked = _as_array([values[n] for n in self.names])
            if stacked is not None and stacked.ndim == 2 and stacked.dtype.kind in "biuf":
                lists = [values[n] for n in self.names if not isinstance(values[n], np.ndarray)]
                origin = None
                if lists:  # Python values: a bool may hide in them
                    origin = Origin(
                        lambda r, c: values[self.names[c]][r],
                        lambda: bools and any(bool in map(type, column) for column in lists),
                    )
                batch = self._fast(np.ascontiguousarray(stacked.T), where, origin)
                if batch is not None:
                    return batch
        return self._convert({n: values[n] for n in self.names}, where)

    def frame(self, frame: Any, where: str) -> Batch:
        """A pandas DataFrame (a CSV body, a file to score): its columns, checked by name."""
        return self.columns({str(n): frame[n].to_numpy() for n in frame.columns}, where)

    # numeric fast path ---------------------------------------------------------------------
    def _fast(self, typed: Array, where: str, origin: Origin | None) -> Batch | None:
        """A numeric batch checked in bulk, or None when only the exact path can tell."""
        if origin is not None and self.rules.inexact(typed):
            return None
        self.rules.check(typed, where, origin)
        if self.wants_frame:
            return Batch(self._frame(typed), len(typed))
        return Batch(np.asarray(typed, dtype=np.float64), len(typed))

    def _frame(self, typed: Array) -> Any:
        import pandas as pd

        if typed.dtype.kind in "biu" and not (np.abs(typed) >= EXACT).any():
            typed = typed.astype(np.float64)  # one cast, not one per float column
        frame = pd.DataFrame(typed, columns=self.names, copy=False)
        casts = self._casts.get(typed.dtype.str)
        if casts is None:
            casts = {c.name: c.dtype for c in self.specs.values() if c.dtype != typed.dtype.name}
            self._casts[typed.dtype.str] = casts
        if typed.dtype.kind == "f" and casts:  # int and bool columns cannot hold NaN
            holes: Any = np.isnan(typed).any(axis=0)
            if holes.any():
                at = {n: i for i, n in enumerate(self.names)}
                casts = {n: d for n, d in casts.items() if d[0] == "f" or not holes[at[n]]}
        return frame.astype(casts) if casts else frame

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

    # column by column ----------------------------------------------------------------------
    def _convert(self, columns: dict[str, Any], where: str) -> Batch:
        data = {n: convert(self.specs[n], columns[n], where) for n in self.names}
        rows = len(data[self.names[0]]) if data else 0
        if not rows:
            raise ValidationFailed(f"{where}: there are no rows to predict")
        unknown = tuple(
            UnknownCategory(name, value, count)
            for name, known in self.categories.items()
            for value, count in Counter(
                v for v in data[name] if isinstance(v, str) and v not in known
            ).most_common()
        )
        if self.numeric and not self.wants_frame:
            matrix = np.column_stack([np.asarray(c, dtype=np.float64) for c in data.values()])
            return Batch(matrix, rows, unknown)
        import pandas as pd

        return Batch(pd.DataFrame(data), rows, unknown)

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
