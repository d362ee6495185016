"""The Open Inference Protocol (KServe v2) wire format: tensors in, tensors out.

A tabular model takes either one tensor per column (named like the column, shape `[rows]` or
`[rows, 1]`, as MLServer's pandas codec sends) or one `[rows, columns]` tensor in signature
order (as its numpy codec sends). Both become the same `Batch` through `RequestReader`, so the
signature checks and their messages are the ones `/invocations` gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from mloop.domain.model import ColumnSpec, Signature
from mloop.errors import ValidationFailed
from mloop.services.serving.requests import Batch, RequestReader

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = (*NUMERIC, "BYTES")
_BY_DTYPE = {np.dtype(t).str[1:]: name for name, t in NUMERIC.items()}
EXAMPLE = '{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]}]}'


def datatype(spec: ColumnSpec) -> str:
    """The OIP datatype of a signature column (text and dates travel as BYTES).

    Example:
        >>> datatype(ColumnSpec("age", "int64"))
        'INT64'
    """
    return _BY_DTYPE.get(np.dtype(spec.dtype).str[1:], "BYTES") if spec.numeric else "BYTES"


def _tensor(raw: Any, index: int) -> tuple[str, str, np.ndarray[Any, Any]]:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"inputs[{index}] must be an object", f"e.g. {EXAMPLE}")
    name, shape, kind, data = (raw.get(k) for k in ("name", "shape", "datatype", "data"))
    where = f"input {name!r}" if isinstance(name, str) else f"inputs[{index}]"
    if not isinstance(name, str) or kind not in DATATYPES or data is None:
        raise ValidationFailed(
            f"{where} needs 'name', 'shape', 'datatype' (one of {', '.join(DATATYPES)}) and 'data'",
            f"e.g. {EXAMPLE}",
        )
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValidationFailed(f"{where}: shape must be a list of sizes, e.g. [2, 30]")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise ValidationFailed(
            f"{where}: data is ragged; send it flat, in row-major order"
        ) from None
    if kind == "BYTES":
        array = array.astype(object)
    elif array.dtype.kind not in "biuf":
        raise ValidationFailed(
            f"{where}: datatype {kind} but the data holds "
            + ("text" if array.dtype.kind in "US" else "values that are not numbers"),
            "send numbers for numeric datatypes (NaN and Inf are not allowed), text as BYTES",
        )
    size = int(np.prod(shape))
    if array.size != size:
        raise ValidationFailed(f"{where}: shape {shape} needs {size} values, got {array.size}")
    return name, kind, array.reshape(shape)


def read_infer(reader: RequestReader, payload: Any) -> Batch:
    """The batch an OIP infer request carries.

    Example:
        >>> read_infer(reader, orjson.loads(EXAMPLE)).rows  # doctest: +SKIP
        1
    """
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise ValidationFailed(
            "an infer request is an object with a non-empty 'inputs' list", EXAMPLE
        )
    tensors = [_tensor(raw, i) for i, raw in enumerate(inputs)]
    name, kind, array = tensors[0]
    if len(tensors) == 1 and array.ndim == 2 and name not in reader.specs and array.shape[1] != 1:
        rows = array if array.dtype.kind in "biuf" else array.tolist()
        return reader.rows(rows, None, f"input {name!r}")
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
    return reader.columns(columns, "inputs")


def _datatype_of(array: np.ndarray[Any, Any]) -> str:
    return _BY_DTYPE.get(array.dtype.str[1:], "BYTES")


def infer_response(predictions: Any, name: str, version: int, payload: Any, output: str) -> bytes:
    """The OIP response: one output tensor, data flat in row-major order.

    Example:
        >>> infer_response(np.array([1, 0]), "churn", 3, {}, "predict")[:40]
        b'{"model_name":"churn","model_version":"3'
    """
    array = np.asarray(predictions.to_numpy() if hasattr(predictions, "to_numpy") else predictions)
    kind = _datatype_of(array)
    flat = np.ascontiguousarray(array).ravel()
    body: dict[str, Any] = {"model_name": name, "model_version": str(version)}
    if isinstance(payload, dict) and isinstance(payload.get("id"), str):
        body["id"] = payload["id"]
    body["outputs"] = [
        {
            "name": output,
            "datatype": kind,
            "shape": list(array.shape),
            "data": flat if kind != "BYTES" else [str(v) for v in flat.tolist()],
        }
    ]
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


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
