"""The OpenAPI 3.1 document of one model server, built once from the model's signature.

Static on purpose: the server has a fixed set of routes and one model, so the document is a
dict made at start-up and served as bytes, with the signature's columns spelled out in the
request schemas: names, JSON types with the ranges the column rules hold them to
(`services/serving/columns.py`), which may be null, which are required, and no empty lists
of rows or tensors. What JSON Schema cannot say is left to the 422's message: rows as long as
the column list when one is given, columns of one length, a tensor's data as many values as
its shape, NaN (not JSON, though Python writes it), and a float past 2**53 in an int column
(JSON Schema cannot tell 1e17 from 100000000000000000). The CSV and binary-tensor bodies are
described in words: a schema tool would take any text as a valid CSV.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mloop.domain.model import ColumnSpec, Signature
from mloop.server.tensors import DATATYPES

_ERROR = {"$ref": "#/components/schemas/Error"}
_V2_ERROR = {"$ref": "#/components/schemas/InferError"}
EXACT = 2**53  # a float in an int column must be below this (columns.py)


def _json_type(spec: ColumnSpec) -> dict[str, Any]:
    """One column's values, as the column rules take them."""
    schema: dict[str, Any]
    if spec.dtype == "bool":
        schema = {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}]}
    elif "int" in spec.dtype:
        info = np.iinfo(np.dtype(spec.dtype))
        schema = {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    elif spec.numeric:
        limit = float(np.finfo(np.dtype(spec.dtype)).max)
        schema = {"type": "number", "minimum": -limit, "maximum": limit}
    else:
        schema = {"type": "string"}
    if spec.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "description": spec.dtype + (", nullable" if spec.nullable else "")}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int, schema: dict[str, Any] = _ERROR) -> dict[str, Any]:
    what = {
        400: "the body is not JSON (or CSV), or a binary tensor size does not add up",
        404: "no such model",
        413: "the body is over the size limit",
        415: "the Content-Type is not one this route takes",
        422: "the input does not fit the model's signature; the message names the column",
        503: "too many requests in flight; retry after `Retry-After` seconds",
        504: "the request took longer than the time-out",
    }
    return {str(s): _json(schema, what[s]) for s in statuses}


def openapi_document(name: str, version: int, signature: Signature | None) -> dict[str, Any]:
    """The OpenAPI document served at `/openapi.json`.

    Example:
        >>> openapi_document("churn", 3, None)["info"]["title"]
        'churn:3 (mloop model server)'
    """
    inputs = signature.inputs if signature is not None else ()
    names = [c.name for c in inputs]
    cells = {c.name: _json_type(c) for c in inputs}
    row = {"type": "object", "properties": cells, "required": names}
    value = {"type": ["number", "integer", "boolean", "string", "null"]}
    listed = {"type": "array", "items": value, "minItems": 1}
    if names:  # without 'columns', a row has one value per input, in signature order
        listed = {**listed, "minItems": len(names), "maxItems": len(names)}
    split = {
        "type": "object",
        "required": ["dataframe_split"],
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "columns": {
                        "type": "array",
                        "items": {"type": "string"},
                        "uniqueItems": True,
                        **({"allOf": [{"contains": {"const": n}} for n in names]} if names else {}),
                    },
                    "data": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "array", "items": value},
                    },
                    "index": {"type": "array"},
                },
                "if": {"not": {"required": ["columns"]}},
                "then": {"properties": {"data": {"items": listed}}},
            }
        },
    }
    records = {
        "type": "object",
        "required": ["dataframe_records"],
        "properties": {"dataframe_records": {"type": "array", "minItems": 1, "items": row}},
    }
    by_column = {
        "type": "object",
        "required": names,
        "minProperties": 1,
        "properties": {
            n: {"anyOf": [cell, {"type": "array", "minItems": 1, "items": cell}]}
            for n, cell in cells.items()
        },
    }
    one_row = [listed, row, *cells.values()] if len(names) == 1 else [listed, row]
    tensors = {"oneOf": [{"type": "array", "minItems": 1, "items": {"anyOf": one_row}}, by_column]}
    instances = {"type": "object", "required": ["instances"], "properties": {"instances": tensors}}
    plain = {"type": "object", "required": ["inputs"], "properties": {"inputs": tensors}}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "maxItems": 2,
                "description": "[rows] or [rows, 1] per column; [rows, columns] for a table",
            },
            "datatype": {"enum": list(DATATYPES)},
            "data": {"type": "array", "minItems": 1},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
        },
        "anyOf": [
            {"required": ["data"]},
            {
                "required": ["parameters"],
                "properties": {"parameters": {"required": ["binary_data_size"]}},
            },
        ],
    }
    flag = {"type": "boolean"}
    infer_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "items": tensor},
            "parameters": {"type": "object", "properties": {"binary_data_output": flag}},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": flag},
                        },
                    },
                },
            },
        },
    }
    output = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"enum": list(DATATYPES)},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }
    infer_response = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": output},
        },
    }
    predictions = {"type": "object", "properties": {"predictions": {"type": "array"}}}
    status = {"type": "object"}
    infer = {
        "summary": "Predict (Open Inference Protocol)",
        "description": "Also takes Triton's binary tensor data extension (tritonclient's "
        "default): the JSON object, then each tensor's raw bytes, with the header "
        "`Inference-Header-Content-Length` giving the JSON's length and `binary_data_size` "
        "in each such tensor's parameters; outputs come back that way when asked with "
        "`binary_data_output` or an output's `binary_data`.",
        "requestBody": {"required": True, **_json(infer_request, "one tensor per column")},
        "responses": {
            "200": _json(infer_response, "the predictions"),
            **_errors(400, 404, 413, 415, 422, 503, 504, schema=_V2_ERROR),
        },
    }

    def get(
        summary: str, schema: dict[str, Any], media: str = "application/json"
    ) -> dict[str, Any]:
        response = {"description": summary, "content": {media: {"schema": schema}}}
        return {"get": {"summary": summary, "responses": {"200": response}}}

    model = f"/v2/models/{name}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{name}:{version} (mloop model server)",
            "version": str(version),
            "description": "Every response carries the header `mloop-model: NAME:VERSION`.",
        },
        "paths": {
            "/invocations": {
                "post": {
                    "summary": "Predict (MLflow scoring protocol)",
                    "description": "Also takes `Content-Type: text/csv`: a header row naming "
                    "the columns, then one row per line, as MLflow's scoring server reads it "
                    "(pandas.read_csv); the same checks apply.",
                    "requestBody": {
                        "required": True,
                        **_json({"oneOf": [split, records, instances, plain]}, "rows to predict"),
                    },
                    "responses": {
                        "200": _json(predictions, "one prediction per row"),
                        **_errors(400, 413, 415, 422, 503, 504),
                    },
                }
            },
            f"/v1/models/{name}:predict": {
                "post": {
                    "summary": "Predict (KServe V1 protocol)",
                    "requestBody": {"required": True, **_json(instances, "rows to predict")},
                    "responses": {
                        "200": _json(predictions, "one prediction per row"),
                        **_errors(400, 413, 415, 422, 503, 504),
                    },
                }
            },
            f"/v1/models/{name}": get("Whether the model is ready (KServe V1)", status),
            f"{model}/infer": {"post": infer},
            f"{model}/versions/{version}/infer": {"post": infer},
            model: get("Model metadata: inputs and outputs", status),
            f"{model}/ready": get("Whether the model is ready", status),
            "/v2": get("Server metadata", status),
            "/v2/health/live": get("Liveness (Open Inference Protocol)", status),
            "/v2/health/ready": get("Readiness (Open Inference Protocol)", status),
            "/healthz": get("Liveness", status),
            "/readyz": get("Readiness: the model is loaded and the server is not stopping", status),
            "/ping": get("Liveness (MLflow)", status),
            "/metrics": get("Prometheus metrics", {"type": "string"}, "text/plain"),
            "/openapi.json": get("This document", status),
            "/feedback": {
                "post": {
                    "summary": "Outcomes of earlier answers (an A/B test's conversions or values)",
                    "requestBody": {"required": True, **_json(FEEDBACK, "outcomes by key")},
                    "responses": {
                        "200": _json(FEEDBACK_COUNTED, "outcomes counted per version"),
                        **_errors(400, 413),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "hint": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
                "InferError": {
                    "type": "object",
                    "required": ["error"],
                    "description": "The Open Inference Protocol's error; mloop adds code and hint",
                    "properties": {
                        "error": {"type": "string"},
                        "code": {"type": "string"},
                        "hint": {"type": ["string", "null"]},
                    },
                },
                "Row": row,
            }
        },
    }


_ITEM = {
    "type": "object",
    "required": ["outcome"],
    "properties": {
        "key": {
            "type": ["string", "number"],
            "description": "the sticky key's value, or the answer's mloop-request-id",
        },
        "request_id": {"type": "string", "description": "the answer's mloop-request-id"},
        "outcome": {
            "type": ["number", "boolean"],
            "description": "0 or 1 for a rate test, any number for a mean test",
        },
    },
}
FEEDBACK = {
    "oneOf": [
        {"type": "array", "items": _ITEM},
        {
            "type": "object",
            "required": ["feedback"],
            "properties": {"feedback": {"type": "array", "items": _ITEM}},
        },
    ]
}
FEEDBACK_COUNTED = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "versions": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
