"""The Open Inference Protocol (KServe v2) wire format: tensors in, tensors out.

A tabular model takes either one tensor per column (named like the column, shape `[rows]` or
`[rows, 1]`, as MLServer's pandas codec sends) or one `[rows, columns]` tensor in signature
order (as its numpy codec sends). Both become the same `Batch` through `RequestReader`, so the
signature checks and their messages are the ones `/invocations` gives.

A tensor is checked once, whatever carries it: its shape exactly (Python integers, so a
product past 64 bits is a size like any other, never a wrapped-around one), then its data as
its datatype says (JSON data must be what the datatype declares: no `true` in an FP64 tensor,
no 300 in an INT8 one), in JSON or in binary (`tensors.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mloop.domain.model import ColumnSpec, Signature
from mloop.errors import InvalidInput, ValidationFailed
from mloop.server.tensors import DATATYPES, HEADER, NUMERIC, Cursor, decode, encode, split_body
from mloop.services.serving.columns import describe
from mloop.services.serving.requests import Batch, RequestReader, parse_body

_BY_DTYPE = {np.dtype(t).str[1:]: name for name, t in NUMERIC.items()}
EXAMPLE = '{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]}]}'
SHAPES = "a column is [rows] or [rows, 1], and a whole table is one [rows, columns] tensor"


@dataclass(frozen=True, slots=True)
class InferRequest:
    """An infer request read: its batch, its id, and whether outputs go back in binary."""

    batch: Batch
    id: str | None = None
    binary_output: bool = False


def datatype(spec: ColumnSpec) -> str:
    """The OIP datatype of a signature column (text and dates travel as BYTES).

    Example:
        >>> datatype(ColumnSpec("age", "int64"))
        'INT64'
    """
    return _BY_DTYPE.get(np.dtype(spec.dtype).str[1:], "BYTES") if spec.numeric else "BYTES"


def _flat(data: Any) -> list[Any]:
    """Nested JSON lists as one row-major list (the values `np.asarray(data).ravel()` holds)."""
    if not isinstance(data, list):
        return [data]
    return [value for item in data for value in _flat(item)]


def _json_data(where: str, kind: str, data: Any, bools: bool = True) -> Any:
    """JSON data as an array of the tensor's datatype, every value what the datatype says
    (`bools=False`: the JSON text holds no true/false, so none hides among the numbers)."""
    try:
        array = np.asarray(data, dtype=object if kind == "BYTES" else None)
    except (ValueError, TypeError):
        raise ValidationFailed(
            f"{where}: data is ragged; send it flat, in row-major order"
        ) from None
    if kind == "BYTES":
        return array
    if array.dtype.kind not in "biuf":
        raise ValidationFailed(
            f"{where}: datatype {kind} but the data holds "
            + ("text" if array.dtype.kind in "US" else "values that are not numbers"),
            "send numbers for numeric datatypes (NaN and Inf are not allowed), text as BYTES",
        )
    if kind == "BOOL" or array.dtype.kind == "b":
        if (kind == "BOOL") != (array.dtype.kind == "b"):
            bad = next(v for v in _flat(data) if isinstance(v, bool) != (kind == "BOOL"))
            raise ValidationFailed(f"{where}: datatype {kind} but the data holds {describe(bad)}")
        return array
    if bools and ((array == 0) | (array == 1)).any():  # a bool merges into numbers unseen
        bad = next((v for v in _flat(data) if isinstance(v, bool)), None)
        if bad is not None:
            raise ValidationFailed(f"{where}: datatype {kind} but the data holds {describe(bad)}")
    target: Any = np.dtype(NUMERIC[kind])
    if target.kind in "iu":
        if array.dtype.kind == "f":
            bad = next((v for v in _flat(data) if isinstance(v, float)), array.ravel()[0])
            raise ValidationFailed(f"{where}: datatype {kind} but the data holds {describe(bad)}")
        info = np.iinfo(target)
        outside = (array < info.min) | (array > info.max)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            outside = np.isinf(array.astype(target)) & np.isfinite(array)
    if outside.any():
        bad = array.ravel()[np.flatnonzero(outside.ravel())[0]].item()
        raise ValidationFailed(f"{where}: {describe(bad)} is out of range for {kind}")
    return array.astype(target)


def _tensor(raw: Any, index: int, cursor: Cursor, bools: bool) -> tuple[str, str, Any]:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"inputs[{index}] must be an object", f"e.g. {EXAMPLE}")
    name, shape, kind = (raw.get(k) for k in ("name", "shape", "datatype"))
    where = f"input {name!r}" if isinstance(name, str) else f"inputs[{index}]"
    parameters = raw.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ValidationFailed(f"{where}: 'parameters' must be an object")
    binary = "binary_data_size" in parameters
    if not isinstance(name, str) or kind not in DATATYPES or ("data" not in raw and not binary):
        raise ValidationFailed(
            f"{where} needs 'name', 'shape', 'datatype' (one of {', '.join(DATATYPES)}) and 'data'",
            f"e.g. {EXAMPLE}",
        )
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValidationFailed(f"{where}: shape must be a list of sizes, e.g. [2, 30]")
    if len(shape) not in (1, 2):
        shown = str(shape) if len(shape) <= 8 else f"of {len(shape)} dimensions"
        raise ValidationFailed(f"{where}: shape {shown}; {SHAPES}")
    size = math.prod(shape)  # exact: no wrap-around past 64 bits
    if binary:
        if "data" in raw:
            raise InvalidInput(f"{where} has both 'data' and binary_data_size: send one")
        chunk = cursor.take(where, parameters["binary_data_size"])
        array = decode(where, kind, shape, size, chunk)
    else:
        array = _json_data(where, kind, raw["data"], bools)
        if array.size != size:
            raise ValidationFailed(f"{where}: shape {shape} needs {size} values, got {array.size}")
    return name, kind, array.reshape(shape)


def read_request(
    reader: RequestReader, body: bytes, header_length: bytes | None = None
) -> InferRequest:
    """An infer request from its body, JSON or JSON then binary tensors (`header_length`: the
    request's Inference-Header-Content-Length, if any).

    Example:
        >>> read_request(reader, EXAMPLE.encode()).batch.rows  # doctest: +SKIP
        1
    """
    head, binary = split_body(body, header_length)
    try:
        payload = parse_body(head)
    except InvalidInput:
        if binary is None and b'"binary_data_size"' in body:
            raise InvalidInput(
                f"the body is JSON followed by binary tensor data, but the request has no "
                f"{HEADER} header saying where the JSON ends",
                "send the header (tritonclient does), or every tensor as JSON",
            ) from None
        raise
    return read_infer(reader, payload, binary, b"true" in head or b"false" in head)


def read_infer(
    reader: RequestReader, payload: Any, binary: memoryview | None = None, bools: bool = True
) -> InferRequest:
    """The request an OIP payload carries (`binary`: the bytes after its JSON, if any;
    `bools=False`: its JSON text holds no true/false)."""
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise ValidationFailed(
            "an infer request is an object with a non-empty 'inputs' list", EXAMPLE
        )
    cursor = Cursor(binary)
    tensors = [_tensor(raw, i, cursor, bools) for i, raw in enumerate(inputs)]
    cursor.finish()
    binary_output = _binary_output(payload, output_name(reader.signature))
    request_id = payload.get("id")
    request_id = request_id if isinstance(request_id, str) else None
    name, kind, array = tensors[0]
    if len(tensors) == 1 and array.ndim == 2 and name not in reader.specs and array.shape[1] != 1:
        rows = array if array.dtype.kind in "biuf" else array.tolist()
        batch = reader.rows(rows, None, f"input {name!r}")
        return InferRequest(batch, request_id, binary_output)
    columns: dict[str, Any] = {}
    for name, kind, array in tensors:
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValidationFailed(
                f"input {name!r}: shape {list(array.shape)}; a column is [rows] or [rows, 1], "
                f"and a whole table is one [rows, {len(reader.names) or 'columns'}] tensor"
            )
        spec = reader.specs.get(name)
        if spec is not None and (kind == "BYTES") == spec.numeric:
            raise ValidationFailed(
                f"input {name!r}: datatype {kind} does not fit the column's {spec.dtype}",
                f"send it as {datatype(spec)}",
            )
        if spec is not None or reader.signature is None:
            columns[name] = array if array.dtype.kind in "biuf" else array.tolist()
    return InferRequest(reader.columns(columns, "inputs"), request_id, binary_output)


def _binary_output(payload: dict[str, Any], output: str) -> bool:
    """Whether the output goes back as binary: its own `binary_data` parameter, else the
    request's `binary_data_output` (tritonclient sets it when it names no outputs)."""
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ValidationFailed("'parameters' must be an object")
    chosen = parameters.get("binary_data_output", False)
    if not isinstance(chosen, bool):
        raise ValidationFailed("parameters.binary_data_output must be true or false")
    outputs = payload.get("outputs")
    if outputs is None:
        return chosen
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ValidationFailed('\'outputs\' must be a list of objects, e.g. [{"name": "predict"}]')
    for requested in outputs:
        options = requested.get("parameters", {})
        if not isinstance(options, dict):
            raise ValidationFailed(
                f"output {requested.get('name')!r}: 'parameters' must be an object"
            )
        flag = options.get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise ValidationFailed(
                f"output {requested.get('name')!r}: parameters.binary_data must be true or false"
            )
        if requested.get("name") == output and flag is not None:
            chosen = flag
    return chosen


def _datatype_of(array: Any) -> str:
    return _BY_DTYPE.get(array.dtype.str[1:], "BYTES")


def infer_response(
    predictions: Any,
    name: str,
    version: int,
    request_id: str | None,
    output: str,
    binary: bool = False,
) -> tuple[bytes, int | None]:
    """The OIP response: one output tensor, flat in row-major order, as JSON data or as raw
    bytes after the JSON; with the JSON's length when there are bytes after it.

    Example:
        >>> infer_response(np.array([1, 0]), "churn", 3, None, "predict")[0][:40]
        b'{"model_name":"churn","model_version":"3'
    """
    array = np.asarray(predictions.to_numpy() if hasattr(predictions, "to_numpy") else predictions)
    kind = _datatype_of(array)
    flat = np.ascontiguousarray(array).ravel()
    body: dict[str, Any] = {"model_name": name, "model_version": str(version)}
    if request_id is not None:
        body["id"] = request_id
    tensor: dict[str, Any] = {"name": output, "datatype": kind, "shape": list(array.shape)}
    raw = b""
    if binary:
        raw = encode(kind, flat if kind != "BYTES" else flat.astype(object))
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = flat if kind != "BYTES" else [str(v) for v in flat.tolist()]
    body["outputs"] = [tensor]
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return (head + raw, len(head)) if binary else (head, None)


def metadata(name: str, version: int, signature: Signature | None) -> dict[str, Any]:
    """Model metadata (`GET /v2/models/{name}`): its inputs and outputs as tensors.

    Example:
        >>> metadata("churn", 3, None)["versions"]
        ['3']
    """
    inputs = signature.inputs if signature is not None else ()
    outputs = signature.outputs if signature is not None else ()
    return {
        "name": name,
        "versions": [str(version)],
        "platform": "mloop",
        "inputs": [{"name": c.name, "datatype": datatype(c), "shape": [-1]} for c in inputs],
        "outputs": [{"name": c.name, "datatype": datatype(c), "shape": [-1]} for c in outputs],
    }


def output_name(signature: Signature | None) -> str:
    return signature.outputs[0].name if signature is not None and signature.outputs else "predict"


def error_body(envelope: bytes) -> bytes:
    """mloop's error envelope in the protocol's shape: `{"error": "<message>"}`, with the code
    and the hint beside it (clients read `error`; the rest is for people).

    Example:
        >>> error_body(b'{"error":{"code":"x","message":"bad","hint":null}}')
        b'{"error":"bad","code":"x","hint":null}'
    """
    inner = orjson.loads(envelope)["error"]
    return orjson.dumps({"error": inner["message"], "code": inner["code"], "hint": inner["hint"]})
