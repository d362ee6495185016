"""Payloads at a real model server on 127.0.0.1: crafted numbers and shapes (4xx naming the
column, never a 500), CSV bodies, Triton's binary tensors with tritonclient's defaults and by
hand, categories training never saw, and an OpenAPI document that refuses what the server
refuses."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from mloop.domain.model import ColumnSpec, Signature
from mloop.server.inference import ServeSettings, create_app
from mloop.services.serving.predictor import LoadedModel
from tests.integration.serving_helpers import MIXED_SIGNATURE, mixed_model, running

SIGNATURE = Signature(
    (
        ColumnSpec("a", "float64"),
        ColumnSpec("b", "float64", nullable=True),
        ColumnSpec("n", "int64"),
    )
)
BIG = "1" + "0" * 400
INFER = "/v2/models/clf/infer"
REGIONS = frozenset({"north", "south", "east"})


def clf_model() -> Any:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"a": rng.normal(size=200), "b": rng.normal(size=200), "n": rng.integers(0, 9, 200)}
    )
    frame.loc[::7, "b"] = np.nan  # b is nullable: the model imputes it
    model = make_pipeline(SimpleImputer(), LogisticRegression())
    return model.fit(frame, (frame.a + frame.n > 4).astype(int))


@pytest.fixture(scope="module")
def clf() -> LoadedModel:
    return LoadedModel("clf", 1, clf_model(), SIGNATURE, wants_frame=True)


@pytest.fixture(scope="module")
def url(clf: LoadedModel) -> Iterator[str]:
    with running(create_app(clf)) as base:
        yield base


def raw_post(url: str, path: str, body: bytes, content_type: str = "application/json") -> Any:
    """POST exact bytes (no client re-encoding of NaN or huge integers)."""
    headers = {"content-type": content_type} if content_type else {}
    return httpx.post(url + path, content=body, headers=headers, timeout=30)


def count(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


# crafted numbers and shapes (reliability probes F6, F14) -----------------------------------
NUMBERS = {
    "401 digits + NaN, records": (
        '{"dataframe_records": [{"a": 1, "b": 2, "n": BIG}], "x": NaN}',
        "column 'n' (row 0): 1000000…000 (401 digits) is out of range",
    ),
    "401 digits + NaN, split": (
        '{"dataframe_split": {"columns": ["a", "b", "n"], "data": [[1, 2, BIG]]}, "x": NaN}',
        "column 'n' (row 0): 1000000…000 (401 digits) is out of range",
    ),
    "401 digits + NaN, inputs": (
        '{"inputs": [[1, 2, BIG]], "x": NaN}',
        "column 'n' (row 0): 1000000…000 (401 digits) is out of range",
    ),
    "401 digits + Infinity, float column": (
        '{"dataframe_records": [{"a": BIG, "b": Infinity, "n": 3}]}',
        "column 'a' (row 0): 1000000…000 (401 digits) is out of range for float64",
    ),
    "401 digits alone": (
        '{"dataframe_records": [{"a": 1, "b": 2, "n": BIG}]}',
        "column 'n' (row 0): 1000000…000 (401 digits) is out of range",
    ),
    "-2**63-1": (
        '{"dataframe_records": [{"a": 1, "b": 2, "n": -9223372036854775809}]}',
        "column 'n' (row 0): -9.223372036854776e+18 is out of range",
    ),
    "false in int64": (
        '{"dataframe_records": [{"a": 1, "b": 2, "n": false}]}',
        "column 'n' (row 0): expected int64, got a bool (false)",
    ),
    "true in float64": (
        '{"dataframe_records": [{"a": true, "b": 2, "n": 3}]}',
        "column 'a' (row 0): expected float64, got a bool (true)",
    ),
    "true in float64, rows": (
        '{"instances": [[1.5, true, 3]]}',
        "column 'b' (row 0): expected float64, got a bool (true)",
    ),
}


@pytest.mark.parametrize("case", list(NUMBERS))
def test_crafted_numbers_are_422_naming_the_column(url: str, case: str) -> None:
    body, message = NUMBERS[case]
    before = count(url, "mloop_requests_total", endpoint="invocations", status="500")
    answer = raw_post(url, "/invocations", body.replace("BIG", BIG).encode())
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"]["message"]
    assert count(url, "mloop_requests_total", endpoint="invocations", status="500") == before


def test_int64_max_is_served_and_reaches_the_model_exactly(url: str, clf: LoadedModel) -> None:
    body = b'{"dataframe_records": [{"a": 1, "b": 2, "n": 9223372036854775807}]}'
    answer = raw_post(url, "/invocations", body)
    assert answer.status_code == 200, answer.text
    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "n": [2**63 - 1]})
    assert answer.json() == {"predictions": clf.predict(frame).tolist()}


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([2**32, 2**32], [], "needs 18446744073709551616 values, got 0"),
        ([3, 12297829382473034411], [1.0], "needs 36893488147419103233 values, got 1"),
        ([2**62, 4], [], "needs 18446744073709551616 values, got 0"),
        ([1] * 70, [1.0], "a column is [rows] or [rows, 1]"),
    ],
    ids=["2^64", "wraps-to-1", "wraps-negative", "70-dims"],
)
def test_oip_shapes_past_64_bits_are_422(
    url: str, shape: list[int], data: list[float], message: str
) -> None:
    tensor = {"name": "x", "shape": shape, "datatype": "FP64", "data": data}
    answer = raw_post(url, INFER, json.dumps({"inputs": [tensor]}).encode())
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"] and "input 'x'" in answer.json()["error"]
    assert count(url, "mloop_requests_total", endpoint="infer", status="500") == 0


# CSV bodies, as MLflow's scoring server takes them -----------------------------------------
def test_a_csv_body_is_read_as_mlflow_reads_it(url: str, clf: LoadedModel) -> None:
    from mlflow.pyfunc.scoring_server import parse_csv_input  # MLflow's own reader

    text = "n,extra,a,b\n3,x,0.5,1.5\n7,y,-1.0,\n"  # any column order; extras ignored
    answer = raw_post(url, "/invocations", text.encode(), "text/csv")
    assert answer.status_code == 200, answer.text
    frame = parse_csv_input(io.StringIO(text))[["a", "b", "n"]]
    assert answer.json() == {"predictions": clf.predict(frame).tolist()}
    again = raw_post(url, "/invocations", text.encode(), "text/csv; charset=utf-8")
    assert again.json() == answer.json()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"a,b,n\n1,2,x\n", "text/csv", 422, "the CSV body: column 'n' (row 0): expected int64"),
        (b"a,b,n\n1,2,3\n1,,4.5\n", "text/csv", 422, "column 'n' (row 1): expected an integer"),
        (b"a,b\n1,2\n", "text/csv", 422, "missing column 'n'"),
        (b"a,b,n\n", "text/csv", 422, "there are no rows to predict"),
        (b"", "text/csv", 400, "cannot read the CSV body as CSV"),
        (b'a,b,n\n1,2,"3\n', "text/csv", 400, "cannot read the CSV body as CSV"),
        (b"a,b,n\n1,2,3\n", "text/csv; charset=latin-1", 415, "only UTF-8"),
        (f"a,b,n\n1,2,{BIG}\n".encode(), "text/csv", 422, "(401 digits) is out of range"),
    ],
    ids=["text", "fraction", "missing", "no-rows", "empty", "bad-quote", "latin-1", "401-digits"],
)
def test_a_bad_csv_body_is_a_clear_4xx(
    url: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    answer = raw_post(url, "/invocations", body, content_type)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]["message"]
    assert answer.json()["error"]["hint"]


def test_csv_bodies_have_the_same_size_limit_and_only_invocations_takes_them(clf) -> None:
    with running(create_app(clf, ServeSettings(max_body_bytes=64))) as base:
        rows = "a,b,n\n" + "1.5,2.5,3\n" * 20
        assert raw_post(base, "/invocations", rows.encode(), "text/csv").status_code == 413
        assert raw_post(base, "/invocations", b"a,b,n\n1,2,3\n", "text/csv").status_code == 200
        refused = raw_post(base, INFER, b"a,b,n\n1,2,3\n", "text/csv")
        assert refused.status_code == 415


def test_a_csv_body_for_a_mixed_signature_keeps_text_as_text() -> None:
    model = LoadedModel("mixed", 1, mixed_model(), MIXED_SIGNATURE, wants_frame=True)
    text = "age,income,region,member\n61,,east,True\n30,52000,north,False\n"
    with running(create_app(model)) as base:
        answer = raw_post(base, "/invocations", text.encode(), "text/csv")
        assert answer.status_code == 200, answer.text
        frame = pd.read_csv(io.StringIO(text))
        assert answer.json() == {"predictions": model.predict(frame).tolist()}
        coded = raw_post(
            base, "/invocations", b"age,income,region,member\n1,2,007,True\n", "text/csv"
        )
        assert coded.status_code == 200  # '007' is read as text, as the signature says


# Triton's binary tensor data extension -----------------------------------------------------
def test_tritonclient_with_its_defaults_over_every_input_type() -> None:
    model = LoadedModel("mixed", 1, mixed_model(), MIXED_SIGNATURE, wants_frame=True)
    rows = pd.DataFrame(
        {
            "age": [61, 30, 45],
            "income": [52_000.0, 31_000.5, 47_250.0],
            "region": ["east", "north", "s\u00fcd"],
            "member": [True, False, True],
        }
    )
    expected = model.predict(rows).tolist()
    with running(create_app(model)) as base:
        client = triton.InferenceServerClient(base.removeprefix("http://"))
        inputs = []
        for name, datatype in (
            ("age", "INT64"),
            ("income", "FP64"),
            ("region", "BYTES"),
            ("member", "BOOL"),
        ):
            values = rows[name].to_numpy()
            tensor = triton.InferInput(name, [len(rows)], datatype)
            tensor.set_data_from_numpy(values.astype(object) if datatype == "BYTES" else values)
            inputs.append(tensor)
        answer = client.infer("mixed", inputs, request_id="r-9")  # binary in, binary out
        assert answer.get_response()["id"] == "r-9"
        assert answer.as_numpy("predict").tolist() == expected
        assert "binary_data_size" in answer.get_output("predict")["parameters"]
        as_json = client.infer(
            "mixed", inputs, outputs=[triton.InferRequestedOutput("predict", binary_data=False)]
        )
        assert as_json.get_output("predict")["data"] == expected
        client.close()


def test_tritonclient_gets_text_predictions_as_bytes_tensors() -> None:
    rows = np.random.default_rng(4).normal(size=(60, 2))
    labels = np.where(rows[:, 0] > 0, "yes", "n\u00f6")
    fitted = LogisticRegression().fit(rows, labels)
    signature = Signature((ColumnSpec("x", "float64"), ColumnSpec("y", "float64")))
    with running(create_app(LoadedModel("words", 2, fitted, signature))) as base:
        client = triton.InferenceServerClient(base.removeprefix("http://"))
        table = triton.InferInput("input-0", [60, 2], "FP64")
        table.set_data_from_numpy(rows)
        answer = client.infer("words", [table])
        assert answer.get_output("predict")["datatype"] == "BYTES"
        got = [v.decode() for v in answer.as_numpy("predict")]
        assert got == fitted.predict(rows).tolist()
        client.close()


def binary_request(url: str, head: dict[str, Any], tail: bytes, length: str | None = None) -> Any:
    """A hand-made binary-extension request: JSON of `length` bytes (default: its own), then
    `tail`, with no Content-Type, as tritonclient sends it."""
    text = json.dumps(head).encode()
    header = {"inference-header-content-length": length or str(len(text))}
    return httpx.post(url + INFER, content=text + tail, headers=header, timeout=30)


def sized(name: str, datatype: str, shape: list[int], size: Any) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


THREE = np.array([[0.5, 1.5, 3.0]]).tobytes()


@pytest.mark.parametrize(
    ("head", "tail", "length", "message"),
    [
        ({"inputs": [sized("t", "FP64", [1, 3], 24)]}, THREE, "99999", "says the JSON is 99999"),
        ({"inputs": [sized("t", "FP64", [1, 3], 24)]}, THREE, "-5", "whole number of bytes"),
        ({"inputs": [sized("t", "FP64", [1, 3], 2**40)]}, THREE, None, "past the end of the body"),
        ({"inputs": [sized("t", "FP64", [1, 3], 16)]}, THREE, None, "is 24 bytes, binary_data"),
        ({"inputs": [sized("t", "FP64", [1, 3], 24)]}, THREE + b"xx", None, "2 bytes after"),
        ({"inputs": [sized("t", "BYTES", [1], 8)]}, b"\xff\xff\xff\x7f" + b"abcd", None, "claims"),
        ({"inputs": [sized("t", "FP64", [2**40, 2**40], 24)]}, THREE, None, "bytes, binary_data"),
    ],
    ids=[
        "header-past-body",
        "header-negative",
        "size-past-end",
        "size-vs-shape",
        "leftover",
        "bytes-over-read",
        "huge-shape",
    ],
)
def test_a_crafted_binary_body_is_a_400_and_the_server_keeps_serving(
    url: str, head: dict[str, Any], tail: bytes, length: str | None, message: str
) -> None:
    answer = binary_request(url, head, tail, length)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
    good = binary_request(url, {"inputs": [sized("t", "FP64", [1, 3], 24)]}, THREE)
    assert good.status_code == 200 and good.json()["outputs"][0]["data"] in ([0], [1])
    assert count(url, "mloop_requests_total", endpoint="infer", status="500") == 0


def test_binary_bodies_have_the_same_size_limit(clf: LoadedModel) -> None:
    rows = np.zeros((200, 3))
    with running(create_app(clf, ServeSettings(max_body_bytes=2048))) as base:
        client = triton.InferenceServerClient(base.removeprefix("http://"))
        table = triton.InferInput("t", [200, 3], "FP64")
        table.set_data_from_numpy(rows)  # 4,800 bytes of tensor data
        with pytest.raises(triton.InferenceServerException) as refused:
            client.infer("clf", [table])
        assert refused.value.status() == "413"
        client.close()


# categories training never saw -------------------------------------------------------------
def test_an_unknown_category_is_predicted_with_a_warning_header_and_a_count() -> None:
    model = LoadedModel(
        "mixed", 1, mixed_model(), MIXED_SIGNATURE, True, categories={"region": REGIONS}
    )
    row = {"age": 61, "income": 52_000.0, "region": "west", "member": True}
    crafted = {**row, "region": "mars\r\nX-Injected: 1 \u00e9"}
    with running(create_app(model)) as base:
        assert count(base, "mloop_unknown_categories_total", column="region") == 0
        known = httpx.post(
            base + "/invocations", json={"dataframe_records": [{**row, "region": "east"}]}
        )
        assert known.status_code == 200 and "mloop-warning" not in known.headers
        answer = httpx.post(base + "/invocations", json={"dataframe_records": [row, row, crafted]})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
        warning = answer.headers["mloop-warning"]
        assert warning == (
            "categories training never saw (predicted anyway): column 'region': 'west' (2 rows), "
            "'mars\\r\\nX-Injected: 1 \\xe9' (1 row)"
        )
        assert "x-injected" not in answer.headers
        inputs = [
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [61]},
            {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["atlantis"]},
            {"name": "member", "shape": [1], "datatype": "BOOL", "data": [True]},
        ]
        infer = httpx.post(base + "/v2/models/mixed/infer", json={"inputs": inputs})
        assert infer.status_code == 200 and "'atlantis' (1 row)" in infer.headers["mloop-warning"]
        assert count(base, "mloop_unknown_categories_total", column="region") == 4


# the OpenAPI document refuses what the server refuses --------------------------------------
def _bodies() -> dict[str, tuple[str, Any, bool]]:
    """(path, body, whether the server takes it)"""
    row = {"a": 1.5, "b": None, "n": 3}
    tensor = {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.5]}
    columns = [
        tensor,
        {**tensor, "name": "b"},
        {**tensor, "name": "n", "datatype": "INT64", "data": [3]},
    ]
    return {
        "split": (
            "/invocations",
            {"dataframe_split": {"columns": ["n", "a", "b"], "data": [[3, 1.5, 2]]}},
            True,
        ),
        "split-no-columns": ("/invocations", {"dataframe_split": {"data": [[1.5, 2, 3]]}}, True),
        "records": ("/invocations", {"dataframe_records": [row]}, True),
        "instances": ("/invocations", {"instances": [[1.5, 2, 3]]}, True),
        "inputs-columns": ("/invocations", {"inputs": {"a": [1.5], "b": [2], "n": [3]}}, True),
        "oip": (INFER, {"inputs": columns, "parameters": {"binary_data_output": False}}, True),
        "oip-table": (
            INFER,
            {"inputs": [{**tensor, "name": "t", "shape": [1, 3], "data": [1, 2, 3]}]},
            True,
        ),
        "records-empty": ("/invocations", {"dataframe_records": []}, False),
        "instances-object-empty": ("/invocations", {"instances": {}}, False),
        "inputs-empty": ("/invocations", {"inputs": []}, False),
        "split-no-rows": (
            "/invocations",
            {"dataframe_split": {"columns": ["a", "b", "n"], "data": []}},
            False,
        ),
        "split-missing-column": (
            "/invocations",
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}},
            False,
        ),
        "split-duplicate-column": (
            "/invocations",
            {"dataframe_split": {"columns": ["a", "a", "b", "n"], "data": [[1, 1, 2, 3]]}},
            False,
        ),
        "split-short-row": ("/invocations", {"dataframe_split": {"data": [[1, 2]]}}, False),
        "records-missing": ("/invocations", {"dataframe_records": [{"a": 1, "b": 2}]}, False),
        "records-bool-in-int": (
            "/invocations",
            {"dataframe_records": [{**row, "n": False}]},
            False,
        ),
        "records-bool-in-float": (
            "/invocations",
            {"dataframe_records": [{**row, "a": True}]},
            False,
        ),
        "records-fraction": ("/invocations", {"dataframe_records": [{**row, "n": 1.5}]}, False),
        "records-2^63": ("/invocations", {"dataframe_records": [{**row, "n": 2**63}]}, False),
        "records-null-not-nullable": (
            "/invocations",
            {"dataframe_records": [{**row, "a": None}]},
            False,
        ),
        "records-text-number": (
            "/invocations",
            {"dataframe_records": [{**row, "a": "1.5"}]},
            False,
        ),
        "no-format": ("/invocations", {"rows": [[1, 2, 3]]}, False),
        "oip-datatype-empty": (INFER, {"inputs": [{**tensor, "datatype": ""}]}, False),
        "oip-shape-negative": (INFER, {"inputs": [{**tensor, "shape": [-1]}]}, False),
        "oip-shape-zero": (INFER, {"inputs": [{**tensor, "shape": [0], "data": []}]}, False),
        "oip-shape-3d": (INFER, {"inputs": [{**tensor, "shape": [1, 1, 1]}]}, False),
        "oip-no-inputs": (INFER, {"inputs": []}, False),
        "oip-no-data": (
            INFER,
            {"inputs": [{k: v for k, v in tensor.items() if k != "data"}]},
            False,
        ),
        "oip-parameters-list": (INFER, {"inputs": columns, "parameters": [1]}, False),
        "oip-binary-output-text": (
            INFER,
            {"inputs": columns, "parameters": {"binary_data_output": "yes"}},
            False,
        ),
    }


@pytest.mark.parametrize("case", list(_bodies()))
def test_the_openapi_document_agrees_with_the_server(url: str, case: str) -> None:
    path, body, taken = _bodies()[case]
    document = httpx.get(url + "/openapi.json").json()
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator(
        {**schema["schema"], "components": document["components"]}
    )
    answer = httpx.post(url + path, json=body)
    assert answer.is_success is taken, answer.text
    assert answer.status_code < 500
    assert validator.is_valid(body) is taken, list(validator.iter_errors(body))[:1]


def test_the_openapi_document_is_valid_openapi(url: str) -> None:
    from openapi_spec_validator import validate

    validate(httpx.get(url + "/openapi.json").json())
