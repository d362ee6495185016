"""Request payloads against a signature: every MLflow shape, OIP tensors, and the 422s."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from mloop.domain.model import ColumnSpec, Signature
from mloop.errors import InvalidInput, ValidationFailed
from mloop.server import oip
from mloop.services.serving.requests import RequestReader, mlflow_response, parse_body
from tests.unit.services.serving.signatures import MIXED
from tests.unit.services.serving.signatures import NUMBERS as SIGNATURE

ROWS = [[1.0, 2.0, 3], [4.0, 5.0, 6]]
RECORDS = [{"a": 1.0, "b": 2.0, "n": 3}, {"a": 4.0, "b": 5.0, "n": 6}]


@pytest.fixture
def reader() -> RequestReader:
    return RequestReader(SIGNATURE)


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["a", "b", "n"], "data": ROWS}},
        {"dataframe_split": {"data": ROWS}},
        {
            "dataframe_split": {
                "index": [0, 1],
                "columns": ["n", "extra", "a", "b"],
                "data": [[3, "x", 1.0, 2.0], [6, "y", 4.0, 5.0]],
            }
        },
        {"dataframe_records": RECORDS},
        {"dataframe_records": [{**r, "extra": "ignored"} for r in RECORDS]},
        {"instances": ROWS},
        {"instances": RECORDS},
        {"inputs": ROWS},
        {"inputs": {"a": [1.0, 4.0], "b": [2.0, 5.0], "n": [3, 6]}},
        {"inputs": ROWS, "params": {"ignored": True}},
    ],
    ids=[
        "split",
        "split-no-columns",
        "split-reordered-extra",
        "records",
        "records-extra",
        "instances-rows",
        "instances-records",
        "inputs-rows",
        "inputs-columns",
        "with-params",
    ],
)
def test_every_mlflow_shape_gives_one_matrix_in_signature_order(
    reader: RequestReader, payload: dict[str, Any]
) -> None:
    batch = reader.mlflow(payload)
    assert batch.rows == 2
    assert isinstance(batch.data, np.ndarray) and batch.data.dtype == np.float64
    np.testing.assert_array_equal(batch.data, np.array(ROWS, dtype=float))


def test_null_in_a_nullable_column_is_nan(reader: RequestReader) -> None:
    batch = reader.mlflow({"dataframe_split": {"data": [[1.0, None, 3]]}})
    assert math.isnan(batch.data[0, 1])


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [
        (10**30, "int64", "out of range: expected an integer from -9223372036854775808 to 922"),
        (2**63, "int64", "9223372036854775808 is out of range"),
        (40_000, "int16", "40000 is out of range: expected an integer from -32768 to 32767"),
        (-1, "uint8", "expected an integer from 0 to 255"),
    ],
)
def test_integers_outside_their_columns_range_are_422_not_wrapped(
    value: int, dtype: str, message: str
) -> None:
    reader = RequestReader(Signature((ColumnSpec("n", dtype),)), wants_frame=True)
    with pytest.raises(ValidationFailed, match=re.escape(message)):
        reader.mlflow({"inputs": [[value]]})
    edge = reader.mlflow({"inputs": [[int(np.iinfo(np.dtype(dtype)).min)]]})
    assert edge.data["n"].tolist() == [int(np.iinfo(np.dtype(dtype)).min)]


def test_only_numeric_signatures_without_nullable_columns_promise_finite_batches() -> None:
    # The server tells scikit-learn to skip its own NaN/Inf check only on this promise.
    strict = Signature((ColumnSpec("a", "float64"), ColumnSpec("n", "int64")))
    assert RequestReader(strict).finite
    assert not RequestReader(SIGNATURE).finite  # b is nullable: NaN can reach the model
    assert not RequestReader(MIXED).finite
    assert not RequestReader(None).finite  # nothing is checked without a signature
    with pytest.raises(ValidationFailed, match="got inf"):
        RequestReader(strict).mlflow({"inputs": [[math.inf, 1]]})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, "missing column 'n'"),
        ({"dataframe_records": [{"a": 1, "b": 2}]}, "row 0: missing column 'n'"),
        ({"inputs": {"a": [1], "b": [2]}}, "missing column 'n'"),
        (
            {"inputs": [[1.0, 2.0, 3], ["x", 5.0, 6]]},
            "column 'a' (row 1): expected float64, got string 'x'",
        ),
        ({"inputs": [[1.0, 2.0, 3], ["1.5", 5.0, 6]]}, "column 'a' (row 1): expected float64"),
        ({"inputs": [[1.0, 2.0, [3]]]}, "column 'n' (row 0): expected int64, got a list"),
        ({"inputs": [[float("nan"), 2.0, 3]]}, "column 'a' (row 0): got a missing value"),
        ({"inputs": [[None, 2.0, 3]]}, "column 'a' (row 0): got a missing value"),
        ({"inputs": [[1.0, float("inf"), 3]]}, "column 'b' (row 0): got inf"),
        ({"inputs": [[1.0, 2.0, 3.5]]}, "column 'n' (row 0): expected an integer, got 3.5"),
        ({"inputs": [[1.0, 2.0, 3], [4.0, 5.0]]}, "row 1 has 2 values, expected 3"),
        ({"inputs": []}, "expected a non-empty list of rows"),
        ({"inputs": "abc"}, "expected a non-empty list of rows, got string"),
        ({"dataframe_split": [[1, 2, 3]]}, "dataframe_split must be an object"),
        ({"dataframe_records": [[1, 2, 3]]}, "row 0 is a list, not an object"),
        ({"inputs": {"a": [1, 2], "b": [1], "n": [1]}}, "columns have different lengths"),
        (
            {"dataframe_split": {"columns": ["a", "a", "b", "n"], "data": [[1, 1, 2, 3]]}},
            "'a' appears more than once",
        ),
        ({"data": ROWS}, "exactly one of dataframe_split"),
        ({"inputs": ROWS, "instances": ROWS}, "exactly one of"),
        ([1, 2, 3], "a JSON object"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_content_errors_are_422_naming_the_column(
    reader: RequestReader, payload: Any, message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        reader.mlflow(payload)
    assert caught.value.http_status == 422
    assert message in caught.value.message


def test_a_missing_column_hint_lists_the_inputs(reader: RequestReader) -> None:
    with pytest.raises(ValidationFailed) as caught:
        reader.mlflow({"dataframe_records": [{"a": 1}]})
    assert caught.value.hint == "the model's inputs are 'a', 'b', 'n'"


def test_mixed_signature_gives_a_typed_frame() -> None:
    rows = [
        {"age": 30, "income": None, "region": "north", "member": True},
        {"age": 41, "income": 2.5, "region": "south", "member": False},
    ]
    frame = RequestReader(MIXED, wants_frame=True).mlflow({"dataframe_records": rows}).data
    assert list(frame.columns) == ["age", "income", "region", "member"]
    dtypes = [str(t) for t in frame.dtypes]
    assert dtypes[:2] + dtypes[3:] == ["int64", "float64", "bool"]
    assert dtypes[2] in ("object", "str")  # pandas 3 infers its string dtype
    assert frame["region"].tolist() == ["north", "south"]
    assert math.isnan(frame["income"][0])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"age": 30.5, "income": 1.0, "region": "n", "member": True},
            "column 'age' (row 0): expected an integer",
        ),
        (
            {"age": "30", "income": 1.0, "region": "n", "member": True},
            "column 'age' (row 0): expected int64",
        ),
        (
            {"age": 30, "income": 1.0, "region": 5, "member": True},
            "column 'region' (row 0): expected string",
        ),
        (
            {"age": 30, "income": 1.0, "region": None, "member": True},
            "column 'region' (row 0): got a missing value",
        ),
        (
            {"age": 30, "income": 1.0, "region": "n", "member": 2},
            "column 'member' (row 0): expected a bool",
        ),
        ({"age": 30, "income": 1.0, "member": True}, "missing column 'region'"),
    ],
    ids=["int-fraction", "int-string", "string-number", "string-null", "bool-2", "missing"],
)
def test_mixed_signature_errors_name_the_column(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationFailed, match=None) as caught:
        RequestReader(MIXED, wants_frame=True).mlflow({"dataframe_records": [row]})
    assert message in caught.value.message


def test_a_numeric_model_that_wants_a_frame_gets_typed_columns() -> None:
    frame = RequestReader(SIGNATURE, wants_frame=True).mlflow({"inputs": ROWS}).data
    assert list(frame.columns) == ["a", "b", "n"]
    assert [str(t) for t in frame.dtypes] == ["float64", "float64", "int64"]


def test_without_a_signature_rows_pass_through() -> None:
    batch = RequestReader(None).mlflow({"inputs": [[1, 2], [3, 4]]})
    np.testing.assert_array_equal(batch.data, [[1.0, 2.0], [3.0, 4.0]])
    frame = RequestReader(None).mlflow({"dataframe_records": [{"x": "a"}]}).data
    assert frame["x"].tolist() == ["a"]


def test_parse_body_accepts_nan_literals_and_refuses_what_is_not_json() -> None:
    assert math.isnan(parse_body(b'{"inputs": [[NaN]]}')["inputs"][0][0])
    for body in (b"", b"{", b"[" * 10_000 + b"]" * 10_000, b"\xff\xfe", b'{"a": NaN'):
        with pytest.raises(InvalidInput) as caught:
            parse_body(body)
        assert caught.value.http_status == 400
        assert caught.value.message.startswith("the body is not valid JSON")


def test_mlflow_response_writes_numpy_and_frames() -> None:
    import pandas as pd

    assert mlflow_response(np.array([1, 0])) == b'{"predictions":[1,0]}'
    assert mlflow_response(np.array([[0.25, 0.75]])) == b'{"predictions":[[0.25,0.75]]}'
    assert mlflow_response(np.array(["yes"], dtype=object)) == b'{"predictions":["yes"]}'
    frame = pd.DataFrame({"p": [0.5]})
    assert mlflow_response(frame) == b'{"predictions":[{"p":0.5}]}'


# Open Inference Protocol -------------------------------------------------------------------
def tensor(
    name: str, data: list[Any], datatype: str = "FP64", shape: list[int] | None = None
) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def test_oip_one_tensor_per_column(reader: RequestReader) -> None:
    payload = {
        "inputs": [tensor("n", [3, 6], "INT64"), tensor("a", [1.0, 4.0]), tensor("b", [2.0, 5.0])]
    }
    np.testing.assert_array_equal(oip.read_infer(reader, payload).batch.data, ROWS)


def test_oip_one_table_tensor_flat_or_nested(reader: RequestReader) -> None:
    flat = {"inputs": [tensor("input-0", [1.0, 2.0, 3, 4.0, 5.0, 6], shape=[2, 3])]}
    nested = {"inputs": [tensor("input-0", ROWS, shape=[2, 3])]}
    for payload in (flat, nested):
        np.testing.assert_array_equal(oip.read_infer(reader, payload).batch.data, ROWS)


def test_oip_mixed_columns_with_bytes() -> None:
    payload = {
        "inputs": [
            tensor("age", [30], "INT64"),
            tensor("income", [1.5]),
            tensor("region", ["north"], "BYTES"),
            tensor("member", [True], "BOOL", [1, 1]),
        ]
    }
    frame = oip.read_infer(RequestReader(MIXED, True), payload).batch.data
    assert frame.iloc[0].tolist() == [30, 1.5, "north", True]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": []}, "non-empty 'inputs' list"),
        ({"inputs": [{"name": "a", "data": [1]}]}, "needs 'name', 'shape', 'datatype'"),
        ({"inputs": [tensor("a", [1.0], "FP99")]}, "needs 'name', 'shape', 'datatype'"),
        ({"inputs": [tensor("a", [1.0, 2.0], shape=[3])]}, "shape [3] needs 3 values, got 2"),
        ({"inputs": [tensor("a", ["x"])]}, "datatype FP64 but the data holds text"),
        ({"inputs": [tensor("a", [1.0]), tensor("b", [1.0])]}, "missing column 'n'"),
        (
            {"inputs": [tensor("a", [1.0]), tensor("b", [1.0]), tensor("n", ["3"], "BYTES")]},
            "datatype BYTES does not fit",
        ),
        ({"inputs": [tensor("x", [1.0] * 8, shape=[2, 2, 2])]}, "a column is [rows] or [rows, 1]"),
    ],
    ids=["empty", "no-shape", "datatype", "size", "text-as-fp64", "missing", "bytes-for-int", "3d"],
)
def test_oip_errors_are_422(reader: RequestReader, payload: Any, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        oip.read_infer(reader, payload)
    assert message in caught.value.message


def test_oip_response_and_metadata() -> None:
    body, header = oip.infer_response(np.array([[0.2, 0.8]]), "m", 2, "r1", "proba")
    assert header is None
    assert body == (
        b'{"model_name":"m","model_version":"2","id":"r1","outputs":[{"name":"proba",'
        b'"datatype":"FP64","shape":[1,2],"data":[0.2,0.8]}]}'
    )
    meta = oip.metadata("m", 2, MIXED)
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("age", "INT64"),
        ("income", "FP64"),
        ("region", "BYTES"),
        ("member", "BOOL"),
    ]
