"""Which slot answers a predict request, and its body read for that slot.

With one slot there is nothing to choose (`InferenceApp` reads with it directly). With more,
the table's chooser picks by the request's sticky key: a header's value, or a payload field's,
whose body is then parsed once, for the key and for the slot's reader alike.

The sticky key read from a payload field (`--sticky field:NAME`):

The key is the value of input column NAME in the request's first row, as bytes (text as
UTF-8, anything else as its JSON), so a user whose id travels in the payload always lands on
the same version. Where the field is found:

- MLflow: `dataframe_split` (its `columns` and first `data` row), `dataframe_records` and
  `instances`/`inputs` given as records (the first record's key), or as columns (the column's
  first value); rows without column names carry no key.
- Open Inference Protocol: the JSON `data` of the input tensor named NAME (its first value); a
  binary tensor, or one table tensor, carries no key.
- CSV: the header names the column; the first data row gives the value.

A request without the field has no key and is routed by weight alone, like a client that sends
no sticky header: routing never fails a request. With no sticky key at all, a request is routed
by its request id (`request_id`), which its answer carries.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import secrets
from typing import Any

import orjson

from mloop.server import oip
from mloop.server.media import CSV, INFER, Media
from mloop.server.slots import Headers, Slot, Table
from mloop.server.tensors import split_body
from mloop.services.serving.requests import Batch, mlflow_response, parse_body
from mloop.services.serving.tables import read_csv

REQUEST_ID = b"mloop-request-id"


def as_key(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    try:
        return orjson.dumps(value)
    except TypeError:
        return None


def _first(values: Any) -> Any:
    while isinstance(values, list):
        if not values:
            return None
        values = values[0]
    return values


def mlflow_key(payload: Any, name: str) -> bytes | None:
    """The key in an MLflow `/invocations` payload.

    Example:
        >>> mlflow_key({"dataframe_records": [{"user": "u7", "x": 1}]}, "user")
        b'u7'
    """
    if not isinstance(payload, dict):
        return None
    split = payload.get("dataframe_split")
    if isinstance(split, dict):
        columns, data = split.get("columns"), split.get("data")
        if isinstance(columns, list) and name in columns and isinstance(data, list) and data:
            row = data[0]
            at = columns.index(name)
            return as_key(row[at]) if isinstance(row, list) and at < len(row) else None
        return None
    for key in ("dataframe_records", "instances", "inputs"):
        value = payload.get(key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return as_key(value[0].get(name))
        if isinstance(value, dict):
            return as_key(_first(value.get(name)))
    return None


def oip_key(payload: Any, name: str) -> bytes | None:
    """The key in an Open Inference Protocol infer payload (JSON tensors only).

    Example:
        >>> oip_key({"inputs": [{"name": "user", "shape": [1], "data": ["u7"]}]}, "user")
        b'u7'
    """
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list):
        return None
    for tensor in inputs:
        if isinstance(tensor, dict) and tensor.get("name") == name:
            return as_key(_first(tensor.get("data")))
    return None


def csv_key(body: bytes, name: str) -> bytes | None:
    """The key in a CSV body: column NAME of its first data row.

    Example:
        >>> csv_key(b"user,x\\nu7,1\\n", "user")
        b'u7'
    """
    head = body[: body.find(b"\n", body.find(b"\n") + 1) + 1 or len(body)]
    try:
        rows = list(csv.reader(io.StringIO(head.decode("utf-8", errors="replace"))))
    except csv.Error:
        return None
    if len(rows) < 2 or name not in rows[0]:
        return None
    at = rows[0].index(name)
    return rows[1][at].encode() if at < len(rows[1]) else None


class _Ids:
    """New request ids: 64 random bits drawn once per process, then a counter.

    An id must be unique across every server process and restart (labels are joined to the
    log by it), not secret: the random prefix makes two processes' ids differ, the counter
    makes one process's differ. Drawing 128 random bits per request instead (`secrets`, a
    getrandom call) cost the server 4% of its requests/s at 32 clients. A forked worker draws
    its own prefix, so it never repeats its parent's ids.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = secrets.token_hex(8).encode()
        self.count = itertools.count()

    def new(self) -> bytes:
        return b"%s%016x" % (self.prefix, next(self.count))


_ids = _Ids()


def request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's id: the client's `mloop-request-id` header, or a new one (32 hex
    characters, unique across processes). With no sticky key, a request is routed by its id,
    so an outcome posted later with that id finds the version that answered (`feedback.py`)
    on any server.

    Example:
        >>> request_id([(b"mloop-request-id", b"order-17")]), len(request_id([]))
        (b'order-17', 32)
        >>> request_id([]) != request_id([])
        True
    """
    for name, value in headers:
        if name == REQUEST_ID:
            return value
    return _ids.new()


def read(slot: Slot, route: str, media: Media, body: bytes) -> tuple[Batch, Any]:
    """The batch a body holds, and what the answer needs to know of the request."""
    if route == INFER:
        request = oip.read_request(slot.reader, body, media.header_length)
        return request.batch, request
    if media.kind == CSV:
        frame = read_csv(body, slot.predictor.signature, "the CSV body")
        return slot.reader.frame(frame, "the CSV body"), None
    # no true/false in the text: no bool can hide among the numbers, none is looked for
    return slot.reader.mlflow(parse_body(body), b"true" in body or b"false" in body), None


def routed(
    table: Table, scope: dict[str, Any], route: str, media: Media, body: bytes
) -> tuple[Slot, Batch, Any]:
    """Choose the slot for a request, by its sticky key if the table has one, and read
    its body with that slot's reader (a payload field's key needs the body parsed first;
    it is parsed once)."""
    field = table.sticky_field
    if field is None:
        if table.sticky_header:
            key = table.header_key(scope["headers"])
        else:
            key = scope["mloop.request_id"] = request_id(scope["headers"])
        slot = table.pick(key)
        return slot, *read(slot, route, media, body)
    bools = b"true" in body or b"false" in body
    if route == INFER:
        head, binary = split_body(body, media.header_length)
        payload = parse_body(head)
        slot = table.pick(oip_key(payload, field))
        request = oip.read_infer(slot.reader, payload, binary, bools)
        return slot, request.batch, request
    if media.kind == CSV:
        slot = table.pick(csv_key(body, field))
        return slot, *read(slot, route, media, body)
    payload = parse_body(body)
    slot = table.pick(mlflow_key(payload, field))
    return slot, slot.reader.mlflow(payload, bools), None


def write(slot: Slot, result: Any, request: Any) -> tuple[bytes, Headers]:
    if request is None:
        return mlflow_response(result), slot.json
    predictor = slot.predictor
    body, length = oip.infer_response(
        result,
        predictor.name,
        predictor.version,
        request.id,
        slot.output,
        request.binary_output,
    )
    if length is None:
        return body, slot.json
    return body, [*slot.binary, (b"inference-header-content-length", b"%d" % length)]
