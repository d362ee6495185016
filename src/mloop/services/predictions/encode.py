"""Buffered records to one Arrow table and a Parquet file: the writer's conversion, off the loop.

A server hands the log what it already has: the inputs of a predict call as its reader and its
batcher made them (a 2-D numpy array in the signature's order, or a DataFrame), the model's
answers (an array, a list, a Series or a DataFrame), and which requests they hold, with their
rows. Converting request by request would cost tens of microseconds each, so records of the
same shape (same kind, same feature names) are stacked into one array or frame first and
converted once; shapes that differ (a model without a signature sent other columns) become
tables of their own, concatenated with their types promoted.

The writer runs in the serving process and holds the GIL while it works in Python, so what it
does per request is the log's price on the server's loop. Under load a record is a whole
predict call (tens of requests, stacked already by the batcher), so a flush of 10,000 requests
stacks a few hundred arrays, not 10,000; the usual flush (ndarrays under one feature list) is
stacked whole in one call (`_stacked`) and its requests flattened with no Python step per
request (`per_request`). Only a flush that mixes shapes is sorted record by record.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mloop.domain.prediction import FEATURE, PREDICTION

# Who wrote a file, in its Parquet key-value metadata: a spooled file names its batch by itself.
META_ENDPOINT = b"mloop.endpoint"
META_MODEL = b"mloop.model"
META_ROLE = b"mloop.role"
COMPRESSION = "zstd"
# (a batch of inputs as the model takes them, its rows) -> log column -> one score per row;
# {} when the batch gets none. Given by the writer, which keeps a model's failure to itself.
Score = Callable[[Any, int], dict[str, Any]]


class Entry(NamedTuple):
    """One record of the buffer: one answered request (`PredictionLog.record`), or the
    requests of one predict call (`record_batch`), whose inputs and answers are the call's
    own batch, stacked already (the key is the group's). A tuple, not a frozen dataclass: the
    writer makes one per record, and a tuple is made in a third of the time."""

    request_ids: Sequence[str]
    rows: Sequence[int] | None  # rows per request; None: one request, all of `result`
    firsts: Sequence[int] | None  # each request's first row (a request cut in parts); None: 0
    data: Any
    result: Any
    at: float
    names: Sequence[str] | None


class Requests(NamedTuple):
    """One group's buffered records as columns, one sequence per field of `Entry` (what
    `zip(*entries)` gives, made in C rather than by a Python step per record)."""

    request_ids: Sequence[Sequence[str]]
    rows: Sequence[Sequence[int] | None]
    firsts: Sequence[Sequence[int] | None]
    data: Sequence[Any]
    results: Sequence[Any]
    at: Sequence[float]
    names: Sequence[Sequence[str] | None]

    def entries(self) -> list[Entry]:
        return list(map(Entry, *self))


class PerRequest(NamedTuple):
    """A group's requests, flattened out of its records: ids, rows, first rows and times."""

    ids: list[str]
    counts: Any  # rows per request (int64)
    firsts: Any  # first row per request (int64), or None: every request starts at row 0
    at: Any  # seconds per request (float64)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A group's rows as Parquet bytes, with what its index row records."""

    endpoint: str
    model: str
    role: str
    parquet: bytes
    first_at: float
    last_at: float
    rows: int
    requests: int


def _rows(value: Any) -> int:
    if type(value) is np.ndarray:
        return value.shape[0] if value.ndim else 1
    return len(value) if hasattr(value, "__len__") else 1


def _is_frame(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "iloc")


def _width(value: Any) -> tuple[Any, ...]:
    """An array's kind and columns (an ndarray, as a server's reader makes, is read as is)."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    return ("array", array.shape[1] if array.ndim == 2 else 1)


def _shape(entry: Entry) -> tuple[Any, ...]:
    """Entries with the same shape stack into one array or frame. Called once per logged
    request, so the ndarray case is checked first and cheaply."""
    data, result, names = entry.data, entry.result, entry.names
    if type(data) is not np.ndarray and _is_frame(data):
        inputs: tuple[Any, ...] = ("frame", tuple(map(str, data.columns)))
    else:
        names = names if names is None or type(names) is tuple else tuple(names)
        inputs = (*_width(data), names)
    if type(result) is not np.ndarray and _is_frame(result):
        return (*inputs, "frame", tuple(map(str, result.columns)))
    return inputs + _width(result)


def pick(values: Any, index: Any) -> Any:
    """The rows `index` (an int array) of a batch of inputs or answers, keeping its kind: an
    array, a DataFrame or Series (by position), or a list."""
    if type(values) is np.ndarray:
        return values[index]
    iloc = getattr(values, "iloc", None)
    if iloc is not None:
        return iloc[index]
    return [values[i] for i in index.tolist()]


def stack(values: list[Any]) -> Any:
    """Several requests' inputs (or answers) of one shape as one batch: frames concatenated,
    arrays stacked. The inputs' batch is also what the scores are computed from."""
    if _is_frame(values[0]):
        import pandas as pd  # a frame came in, so pandas is here

        return pd.concat(values, ignore_index=True) if len(values) > 1 else values[0]
    return np.concatenate([np.asarray(a) for a in values]) if len(values) > 1 else values[0]


def _frame_columns(frame: Any, prefix: str) -> dict[str, pa.Array]:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return {prefix + str(n): table.column(i) for i, n in enumerate(frame.columns)}


def _array_columns(stacked: Any, names: Sequence[str] | None, prefix: str) -> dict[str, Any]:
    stacked = np.asarray(stacked)
    if stacked.ndim == 1:
        return {prefix + (names[0] if names else "0"): stacked}
    stacked = stacked.reshape(len(stacked), -1)
    labels = list(names) if names and len(names) == stacked.shape[1] else None
    return {
        prefix + (labels[i] if labels else str(i)): stacked[:, i] for i in range(stacked.shape[1])
    }


def _inputs(data: Any, names: Sequence[str] | None) -> dict[str, Any]:
    if _is_frame(data):
        return _frame_columns(data, FEATURE)
    return _array_columns(data, names, FEATURE)


def _outputs(answers: Any) -> dict[str, Any]:
    if _is_frame(answers):
        found = _frame_columns(answers, PREDICTION + ".")
    else:
        found = _array_columns(answers, None, PREDICTION + ".")
    if len(found) == 1:  # one answer per row: the column is `prediction`
        return {PREDICTION: next(iter(found.values()))}
    return found


def _column(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types (a model without a signature)
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def table_of(
    endpoint: str, model: str, role: str, requests: Requests, score: Score | None = None
) -> pa.Table:
    """The log rows of `requests`, which all belong to one endpoint, model version and role;
    `score` adds each row's class scores (once per shape, over the stacked inputs)."""
    stacked = _stacked(requests)
    if stacked is not None:
        return _table(endpoint, model, role, per_request(requests), *stacked, requests, score)
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    for entry in requests.entries():
        groups.setdefault(_shape(entry), []).append(entry)
    tables = []
    for same in groups.values():
        columns = Requests(*zip(*same, strict=True))
        data, answers = stack(list(columns.data)), stack(list(columns.results))
        found = per_request(columns)
        tables.append(_table(endpoint, model, role, found, data, answers, columns, score))
    return concat(tables)


def per_request(requests: Requests) -> PerRequest:
    """The requests of a group's records, one value each. A flush of single requests (a
    client at a time) and one of whole predict calls (many clients, batched) both come out
    with no Python step per request."""
    ids, rows, firsts = requests.request_ids, requests.rows, requests.firsts
    records = len(ids)
    sizes = np.fromiter(map(len, ids), np.int64, records)
    flat = list(chain.from_iterable(ids))
    at = np.array(requests.at, np.float64)
    if len(flat) != records:
        at = np.repeat(at, sizes)
    if rows.count(None) == records:  # single requests: each answer is one request's
        counts = np.fromiter(map(_rows, requests.results), np.int64, records)
    else:
        counts = np.fromiter(
            chain.from_iterable(
                [_rows(result)] if n is None else n
                for n, result in zip(rows, requests.results, strict=True)
            ),
            np.int64,
            len(flat),
        )
    first = None
    if firsts.count(None) != records:
        first = np.fromiter(
            chain.from_iterable(
                [0] * size if f is None else f for f, size in zip(firsts, sizes, strict=True)
            ),
            np.int64,
            len(flat),
        )
    return PerRequest(flat, counts, first, at)


def _stacked(requests: Requests) -> tuple[Any, Any] | None:
    """The inputs and answers of a group whose records are all 2-D ndarrays of one width
    under one list of names (what a server's reader makes), each stacked in one call; None
    when they are not, for `table_of` to sort them by shape."""
    data, results, names = requests.data, requests.results, requests.names
    if set(map(type, data)) != {np.ndarray} or set(map(type, results)) != {np.ndarray}:
        return None
    if names.count(names[0]) != len(names) or data[0].ndim != 2 or results[0].ndim == 0:
        return None
    try:  # one width and one number of dimensions, or ValueError
        if len(data) == 1:
            return data[0], results[0]
        return np.concatenate(data), np.concatenate(results)
    except (ValueError, TypeError):  # a width or a rank differs (0-d answers have no len)
        return None


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """One table of several whose columns may differ: a column missing from one is null
    there, numbers widen (int to float), and a column whose types cannot merge (text in one
    file, numbers in another: a model without a signature) is read as text in all of them."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            types.setdefault(field.name, set()).add(field.type)
    mixed = {name for name, found in types.items() if len(found) > 1}
    as_text = [
        table.select(table.column_names).cast(
            pa.schema(
                [
                    pa.field(f.name, pa.large_string()) if f.name in mixed else f
                    for f in table.schema
                ],
                metadata=table.schema.metadata,
            )
        )
        for table in tables
    ]
    return pa.concat_tables(as_text, promote_options="permissive")


def _table(
    endpoint: str,
    model: str,
    role: str,
    found: PerRequest,
    data: Any,
    answers: Any,
    requests: Requests,
    score: Score | None,
) -> pa.Table:
    """The table of one shape's requests, their inputs and answers stacked."""
    counts = found.counts
    total = int(counts.sum())
    ids: Any = found.ids
    at = found.at
    if total == len(counts) and found.firsts is None:  # one row per request, row 0 each
        row = np.zeros(total, np.int32)
    else:
        starts = np.cumsum(counts) - counts
        ids = np.repeat(np.array(ids, dtype=object), counts)
        at, row = np.repeat(at, counts), np.arange(total) - np.repeat(starts, counts)
        if found.firsts is not None:
            row += np.repeat(found.firsts, counts)
    columns: dict[str, Any] = {
        "request_id": pa.array(ids, pa.string()),
        "row": pa.array(row, pa.int32()),
        "at": pa.array(at),
        "endpoint": pa.array(np.full(total, endpoint, dtype=object), pa.string()),
        "model": pa.array(np.full(total, model, dtype=object), pa.string()),
        "role": pa.array(np.full(total, role, dtype=object), pa.string()),
    }
    found_columns = _inputs(data, requests.names[0]) | _outputs(answers)
    if score is not None:  # the rows' scores, or none (the writer says why, once)
        found_columns |= score(data, total)
    for name, values in found_columns.items():
        column = _column(values)
        if len(column) != total:
            raise ValueError(f"{name} has {len(column)} rows where the answers have {total}")
        columns[name] = column
    return pa.table(columns)


def encode(
    endpoint: str, model: str, role: str, requests: Requests, score: Score | None = None
) -> Encoded:
    """One Parquet file of `requests`, its writer named in the file's metadata."""
    table = table_of(endpoint, model, role, requests, score)
    meta = {META_ENDPOINT: endpoint.encode(), META_MODEL: model.encode(), META_ROLE: role.encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    return _encoded(table, endpoint, model, role)


def _dictionary_columns(table: pa.Table) -> list[str]:
    """Columns worth a dictionary: text, whole numbers, categories, the constant endpoint,
    model and role. Measured features (floats) almost never repeat, so a dictionary for them
    is built, found too large and dropped for every page: that tripled the time to write a
    flush's file (10,000 requests of 30 floats: 25 ms against 9 ms) and made it larger."""
    return [f.name for f in table.schema if not pa.types.is_floating(f.type)]


def _encoded(table: pa.Table, endpoint: str, model: str, role: str) -> Encoded:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=COMPRESSION, use_dictionary=_dictionary_columns(table))
    at = table.column("at")
    import pyarrow.compute as pc

    bounds = pc.min_max(at)
    return Encoded(
        endpoint,
        model,
        role,
        sink.getvalue(),
        float(bounds["min"].as_py()),
        float(bounds["max"].as_py()),
        table.num_rows,
        len(pc.unique(table.column("request_id"))),
    )


def decode(parquet: bytes) -> Encoded:
    """A file `encode` wrote (a spooled one, read back at start), with its index facts."""
    table = pq.read_table(pa.BufferReader(parquet), columns=["request_id", "at"])
    meta = pq.read_schema(pa.BufferReader(parquet)).metadata or {}
    try:
        names = [meta[k].decode() for k in (META_ENDPOINT, META_MODEL, META_ROLE)]
    except KeyError:
        raise ValueError("not a prediction log file: it names no endpoint") from None
    endpoint, model, role = names
    found = _encoded(table, endpoint, model, role)
    return Encoded(
        endpoint, model, role, parquet, found.first_at, found.last_at, found.rows, found.requests
    )
