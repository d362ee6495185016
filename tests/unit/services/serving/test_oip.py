"""Open Inference Protocol requests: one shape check for every tensor, datatypes held to their
word, and the binary tensor data extension as tritonclient writes it, every size checked
against the body."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from mloop.domain.model import ColumnSpec, Signature
from mloop.errors import InvalidInput, ValidationFailed
from mloop.server import oip
from mloop.services.serving.requests import RequestReader

NUMBERS = Signature(
    (ColumnSpec("a", "float64"), ColumnSpec("b", "float64"), ColumnSpec("n", "int64"))
)
MIXED = Signature(
    (
        ColumnSpec("age", "int64"),
        ColumnSpec("region", "string"),
        ColumnSpec("member", "bool"),
    )
)


def tensor(name: str, data: Any, datatype: str = "FP64", shape: list[Any] | None = None) -> Any:
    shape = shape if shape is not None else [len(data)]
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def refused(reader: RequestReader, payload: Any) -> ValidationFailed:
    body = json.dumps(payload).encode()
    with pytest.raises(ValidationFailed) as caught:
        oip.read_request(reader, body)
    return caught.value


# one shape check ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([2**32, 2**32], [], "shape [4294967296, 4294967296] needs 18446744073709551616 values"),
        ([2**62, 4], [], "needs 18446744073709551616 values, got 0"),
        ([3, 12297829382473034411], [1.0], "needs 36893488147419103233 values, got 1"),
        ([2**64], [1.0], "shape must be a list of sizes"),  # JSON parsers read it as a float
        ([1] * 70, [1.0], "a column is [rows] or [rows, 1]"),
        ([], [1.0], "a column is [rows] or [rows, 1]"),
        ([True], [1.0], "shape must be a list of sizes"),
        ([-1], [1.0], "shape must be a list of sizes"),
        ([1.0], [1.0], "shape must be a list of sizes"),
    ],
    ids=[
        "2^64",
        "wraps-negative",
        "wraps-to-1",
        "one-2^64",
        "70-dims",
        "scalar",
        "bool",
        "neg",
        "float",
    ],
)
def test_every_shape_is_checked_exactly_before_any_reshape(
    shape: list[Any], data: list[Any], message: str
) -> None:
    error = refused(RequestReader(NUMBERS), {"inputs": [tensor("x", data, shape=shape)]})
    assert message in error.message
    assert "-2 values" not in error.message


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP64", [1.0, True], "datatype FP64 but the data holds a bool"),
        ("INT64", [True], "datatype INT64 but the data holds a bool"),
        ("BOOL", [1], "datatype BOOL but the data holds 1"),
        ("INT64", [1.5], "datatype INT64 but the data holds 1.5"),
        ("INT8", [300], "300 is out of range for INT8"),
        ("UINT8", [-1], "-1 is out of range for UINT8"),
        ("FP32", [1e39], "1e+39 is out of range for FP32"),
        ("INT64", [2**64], "datatype INT64 but the data holds 1.8446744073709552e+19"),
        ("FP64", ["1.5"], "datatype FP64 but the data holds text"),
    ],
)
def test_json_data_must_be_what_its_datatype_says(
    datatype: str, data: list[Any], message: str
) -> None:
    reader = RequestReader(Signature((ColumnSpec("x", "float64"),)))
    error = refused(reader, {"inputs": [tensor("x", data, datatype)]})
    assert message in error.message
    assert error.message.startswith("input 'x'")


def test_json_tensors_keep_integers_exact() -> None:
    reader = RequestReader(Signature((ColumnSpec("n", "int64"),)), wants_frame=True)
    body = json.dumps({"inputs": [tensor("n", [2**63 - 1, -(2**63)], "INT64")]}).encode()
    assert oip.read_request(reader, body).batch.data["n"].tolist() == [2**63 - 1, -(2**63)]


# the binary tensor data extension, as tritonclient sends it --------------------------------
def client_body(inputs: list[Any], **options: Any) -> tuple[bytes, int | None]:
    body, header = triton.InferenceServerClient.generate_request_body(inputs, **options)
    return body, header


def binary_input(name: str, array: np.ndarray, datatype: str) -> Any:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)  # binary_data=True: tritonclient's default
    return tensor


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        ("UINT8", "uint8"),
        ("UINT16", "uint16"),
        ("UINT32", "uint32"),
        ("UINT64", "uint64"),
        ("INT8", "int8"),
        ("INT16", "int16"),
        ("INT32", "int32"),
        ("INT64", "int64"),
        ("FP16", "float16"),
        ("FP32", "float32"),
        ("FP64", "float64"),
    ],
)
def test_every_numeric_datatype_arrives_in_binary(datatype: str, dtype: str) -> None:
    values = np.array([0, 1, 7, 100], dtype=dtype)
    body, header = client_body([binary_input("x", values, datatype)])
    assert header is not None and header < len(body)
    reader = RequestReader(Signature((ColumnSpec("x", "float64"),)))
    request = oip.read_request(reader, body, str(header).encode())
    assert request.batch.data[:, 0].tolist() == [0.0, 1.0, 7.0, 100.0]
    assert request.binary_output  # tritonclient asks for binary outputs when it names none


def test_a_table_tensor_bools_and_bytes_arrive_in_binary() -> None:
    rows = np.array([[0.5, 1.5, 3], [2.5, 3.5, 4]], dtype=np.float64)
    body, header = client_body([binary_input("input-0", rows, "FP64")])
    request = oip.read_request(RequestReader(NUMBERS), body, str(header).encode())
    np.testing.assert_array_equal(request.batch.data, rows)

    inputs = [
        binary_input("age", np.array([30, 40], dtype=np.int64), "INT64"),
        binary_input("region", np.array([b"north", "s\u00fcd".encode()], dtype=object), "BYTES"),
        binary_input("member", np.array([True, False]), "BOOL"),
    ]
    body, header = client_body(inputs, request_id="r-1")
    request = oip.read_request(RequestReader(MIXED, True), body, str(header).encode())
    frame = request.batch.data
    assert frame["age"].tolist() == [30, 40]
    assert frame["region"].tolist() == ["north", "s\u00fcd"]
    assert frame["member"].tolist() == [True, False]
    assert request.id == "r-1"


def test_binary_and_json_tensors_mix_in_one_request() -> None:
    inputs = [binary_input("a", np.array([1.0]), "FP64")]
    json_tensor = triton.InferInput("b", [1], "FP64")
    json_tensor.set_data_from_numpy(np.array([2.0]), binary_data=False)
    inputs += [json_tensor, binary_input("n", np.array([3], dtype=np.int64), "INT64")]
    body, header = client_body(inputs)
    request = oip.read_request(RequestReader(NUMBERS), body, str(header).encode())
    assert request.batch.data.tolist() == [[1.0, 2.0, 3.0]]


def head_and_tail(inputs: list[dict[str, Any]], tail: bytes, **extra: Any) -> tuple[bytes, bytes]:
    head = json.dumps({"inputs": inputs, **extra}).encode()
    return head + tail, str(len(head)).encode()


def raw(name: str, size: Any, datatype: str = "FP64", shape: list[int] | None = None) -> Any:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape or [1],
        "parameters": {"binary_data_size": size},
    }


ONE = struct.pack("<d", 1.0)


@pytest.mark.parametrize(
    ("inputs", "tail", "header", "message"),
    [
        ([raw("x", 8)], ONE, b"abc", "Inference-Header-Content-Length must be a whole number"),
        ([raw("x", 8)], ONE, b"-1", "Inference-Header-Content-Length must be a whole number"),
        ([raw("x", 8)], ONE, b"999999", "says the JSON is 999999 bytes, but the body is only"),
        ([raw("x", 8)], ONE, b"9" * 40, "says the JSON is"),
        ([raw("x", -8)], ONE, None, "binary_data_size must be a whole number of bytes"),
        ([raw("x", True)], ONE, None, "binary_data_size must be a whole number of bytes"),
        ([raw("x", "8")], ONE, None, "binary_data_size must be a whole number of bytes"),
        ([raw("x", 2**63)], ONE, None, "binary_data_size 9223372036854775808 is past the end"),
        ([raw("x", 2**70)], ONE, None, "binary_data_size must be a whole number of bytes"),
        ([raw("x", 16)], ONE, None, "binary_data_size 16 is past the end"),
        ([raw("x", 4)], ONE[:4], None, "FP64 shape [1] is 8 bytes, binary_data_size says 4"),
        ([raw("x", 8)], ONE + b"\0", None, "1 byte after the last tensor"),
        ([raw("x", 8, shape=[2**61])], ONE, None, "shape [2305843009213693952] is"),
        ([{**raw("x", 8), "data": [1.0]}], ONE, None, "both 'data' and binary_data_size"),
        ([raw("x", 0, "BYTES")], b"", None, "BYTES shape [1] has 1 element, the bytes hold 0"),
        ([raw("x", 3, "BYTES")], b"\x05\x00\x00", None, "4-byte length"),
        ([raw("x", 6, "BYTES")], b"\xff\xff\xff\xff\x00\x00", None, "4294967295 bytes"),
        ([raw("x", 10, "BYTES")], b"\x01\x00\x00\x00a\x01\x00\x00\x00b", None, "has 1 element"),
    ],
    ids=[
        "header-text",
        "header-negative",
        "header-too-long",
        "header-huge",
        "size-negative",
        "size-bool",
        "size-text",
        "size-huge",
        "size-float",
        "size-past-end",
        "size-vs-shape",
        "trailing-byte",
        "shape-huge",
        "data-and-binary",
        "bytes-empty",
        "bytes-short-prefix",
        "bytes-over-read",
        "bytes-count",
    ],
)
def test_a_crafted_size_is_a_400_never_an_over_read(
    inputs: list[dict[str, Any]], tail: bytes, header: bytes | None, message: str
) -> None:
    body, length = head_and_tail(inputs, tail)
    reader = RequestReader(Signature((ColumnSpec("x", "float64"),)))
    with pytest.raises(InvalidInput) as caught:
        oip.read_request(reader, body, header if header is not None else length)
    assert caught.value.http_status == 400
    assert message in caught.value.message


def test_binary_data_without_the_header_is_a_400() -> None:
    body, _ = head_and_tail([raw("x", 8)], ONE)
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        oip.read_request(RequestReader(Signature((ColumnSpec("x", "float64"),))), body)


@pytest.mark.parametrize(
    ("datatype", "tail", "message"),
    [
        ("BOOL", b"\x02", "input 'x': BOOL bytes are 0 or 1, got 2"),
        ("BYTES", b"\x02\x00\x00\x00\xff\xfe", "input 'x': element 0 is not UTF-8 text"),
    ],
)
def test_binary_content_that_is_no_value_is_a_422(datatype: str, tail: bytes, message: str) -> None:
    body, header = head_and_tail([raw("x", len(tail), datatype)], tail)
    reader = RequestReader(Signature((ColumnSpec("x", "bool"),)), wants_frame=True)
    with pytest.raises(ValidationFailed, match=message):
        oip.read_request(reader, body, header)


# which outputs come back in binary ---------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "binary"),
    [
        ({}, False),
        ({"parameters": {"binary_data_output": True}}, True),
        (
            {
                "parameters": {"binary_data_output": True},
                "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
            },
            False,
        ),
        ({"outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}, True),
        ({"outputs": [{"name": "predict"}]}, False),
    ],
)
def test_the_request_chooses_binary_or_json_outputs(extra: dict[str, Any], binary: bool) -> None:
    payload = {"inputs": [tensor("x", [1.0])], **extra}
    reader = RequestReader(Signature((ColumnSpec("x", "float64"),)))
    assert oip.read_request(reader, json.dumps(payload).encode()).binary_output is binary


@pytest.mark.parametrize(
    "extra",
    [
        {"parameters": [1]},
        {"parameters": {"binary_data_output": "yes"}},
        {"outputs": {"name": "predict"}},
        {"outputs": [{"name": "predict", "parameters": {"binary_data": 1}}]},
    ],
)
def test_malformed_output_options_are_422(extra: dict[str, Any]) -> None:
    reader = RequestReader(Signature((ColumnSpec("x", "float64"),)))
    refused(reader, {"inputs": [tensor("x", [1.0])], **extra})


@pytest.mark.parametrize(
    ("predictions", "datatype"),
    [
        (np.array([1, 0, 2**62], dtype=np.int64), "INT64"),
        (np.array([[0.25, 0.75]]), "FP64"),
        (np.array([True, False]), "BOOL"),
        (np.array(["yes", "n\u00f6"], dtype=object), "BYTES"),
    ],
)
def test_binary_responses_read_back_with_tritonclient(predictions: Any, datatype: str) -> None:
    body, header = oip.infer_response(predictions, "m", 2, "r1", "predict", binary=True)
    assert header is not None
    result = triton.InferenceServerClient.parse_response_body(body, header_length=header)
    assert result.get_response()["id"] == "r1"
    output = result.get_output("predict")
    assert output["datatype"] == datatype and "data" not in output
    got = result.as_numpy("predict")
    if datatype == "BYTES":
        assert [v.decode() for v in got] == list(predictions)
    else:
        np.testing.assert_array_equal(got, predictions)
    body, header = oip.infer_response(predictions, "m", 2, None, "predict", binary=False)
    assert header is None and json.loads(body)["outputs"][0]["datatype"] == datatype
