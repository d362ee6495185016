"""The OpenAPI 3.1 document of one model server, built once from the model's signature.

Static on purpose: the server has a fixed set of routes and one model, so the document is a
dict made at start-up and served as bytes, with the signature's columns spelled out in the
request schemas (names, JSON types, which may be null).
"""

from __future__ import annotations

from typing import Any

from mloop.domain.model import ColumnSpec, Signature

_ERROR = {"$ref": "#/components/schemas/Error"}
_V2_ERROR = {"$ref": "#/components/schemas/InferError"}


def _json_type(spec: ColumnSpec) -> dict[str, Any]:
    if spec.dtype == "bool":
        kind: Any = "boolean"
    elif "int" in spec.dtype:
        kind = "integer"
    elif spec.numeric:
        kind = "number"
    else:
        kind = "string"
    return {"type": [kind, "null"] if spec.nullable else kind, "description": spec.dtype}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int, schema: dict[str, Any] = _ERROR) -> dict[str, Any]:
    what = {
        400: "the body is not JSON",
        404: "no such model",
        413: "the body is over the size limit",
        415: "the Content-Type is not application/json",
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
    row = {
        "type": "object",
        "properties": {c.name: _json_type(c) for c in inputs},
        "required": [c.name for c in inputs],
    }
    value = {"type": ["number", "integer", "boolean", "string", "null"]}
    split = {
        "type": "object",
        "required": ["dataframe_split"],
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array", "items": value}},
                    "index": {"type": "array"},
                },
            }
        },
    }
    records = {
        "type": "object",
        "required": ["dataframe_records"],
        "properties": {"dataframe_records": {"type": "array", "items": row}},
    }
    tensors = {"oneOf": [{"type": "array"}, {"type": "object"}]}
    instances = {"type": "object", "required": ["instances"], "properties": {"instances": tensors}}
    plain = {"type": "object", "required": ["inputs"], "properties": {"inputs": tensors}}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "data": {"type": "array"},
        },
    }
    infer_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": tensor}},
    }
    infer_response = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": tensor},
        },
    }
    predictions = {"type": "object", "properties": {"predictions": {"type": "array"}}}
    status = {"type": "object"}
    infer = {
        "summary": "Predict (Open Inference Protocol)",
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
