"""The one set of column rules every payload format shares: numbers that fit their column,
no JSON bool standing in for a number, missing values only where nullable, text as text, and
categories training never saw reported, not refused."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloop.domain.model import ColumnSpec, Signature
from mloop.errors import ValidationFailed
from mloop.services.serving.requests import RequestReader, parse_body
from tests.unit.services.serving import signatures
from tests.unit.services.serving.signatures import NUMBERS

MIXED = Signature((*signatures.MIXED.inputs, ColumnSpec("sex", "string", nullable=True)))
BIG = "1" + "0" * 400  # 401 digits: no float holds it


def refused(reader: RequestReader, body: bytes) -> str:
    """The message of the 422 `body` gets (parsed as the server parses it)."""
    with pytest.raises(ValidationFailed) as caught:
        reader.mlflow(parse_body(body))
    assert caught.value.http_status == 422
    return caught.value.message


# JSON bools are not numbers ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"dataframe_records": [{"a": true, "b": 2, "n": 3}]}', "column 'a' (row 0)"),
        (b'{"dataframe_records": [{"a": 1, "b": 2, "n": false}]}', "column 'n' (row 0)"),
        (b'{"dataframe_split": {"data": [[1.5, 2, 3], [1, false, 3]]}}', "column 'b' (row 1)"),
        (b'{"inputs": [[1, 2, 3], [4, 5, true]]}', "column 'n' (row 1)"),
        (b'{"instances": [[true, false, true]]}', "column 'a' (row 0)"),
        (b'{"inputs": {"a": [1.0, 0.5], "b": [true, 2.0], "n": [1, 2]}}', "column 'b' (row 0)"),
    ],
    ids=["records-float", "records-int", "split", "rows", "all-bools", "columns"],
)
def test_a_json_bool_in_a_number_column_is_refused_in_every_format(
    body: bytes, message: str
) -> None:
    text = refused(RequestReader(NUMBERS), body)
    assert message in text
    assert "got a bool" in text


def test_a_json_bool_in_a_mixed_signature_is_refused_but_bool_columns_take_it() -> None:
    reader = RequestReader(MIXED, wants_frame=True)
    row = b'"income": 1.5, "region": "north", "member": true, "sex": "f"'
    text = refused(reader, b'{"dataframe_records": [{"age": true, ' + row + b"}]}")
    assert "column 'age' (row 0): expected int64, got a bool" in text
    frame = reader.mlflow(parse_body(b'{"dataframe_records": [{"age": 3, ' + row + b"}]}")).data
    assert frame["member"].tolist() == [True]
    ones = (
        b'{"dataframe_records": [{"age": 3, "income": 1, "region": "n", "member": 1, "sex": "f"}]}'
    )
    assert reader.mlflow(parse_body(ones)).data["member"].tolist() == [True]


# integers, exactly --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [2**63 - 1, -(2**63), 2**53 + 1],
    ids=["int64-max", "int64-min", "past-2**53"],
)
@pytest.mark.parametrize("shape", ["records", "columns", "rows-with-floats"])
def test_int64_limits_are_accepted_exactly(value: int, shape: str) -> None:
    reader = RequestReader(NUMBERS, wants_frame=True)
    body = {
        "records": f'{{"dataframe_records": [{{"a": 1, "b": 2, "n": {value}}}]}}',
        "columns": f'{{"inputs": {{"a": [1], "b": [2], "n": [{value}]}}}}',
        "rows-with-floats": f'{{"inputs": [[1.5, 2.5, {value}]]}}',
    }[shape]
    frame = reader.mlflow(parse_body(body.encode())).data
    assert frame["n"].dtype == np.int64
    assert int(frame["n"].iloc[0]) == value


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (str(-(2**63) - 1), "int64"),  # orjson reads it as the float -2**63: not rounded in
        (str(2**63), "int64"),
        (str(2**64), "int64"),
        ("-1", "uint8"),
        ("256", "uint8"),
        ("-129", "int8"),
        (BIG, "int64"),
        ("9.3e18", "int64"),
    ],
)
def test_integers_outside_their_column_are_refused(value: str, dtype: str) -> None:
    reader = RequestReader(Signature((ColumnSpec("n", dtype),)), wants_frame=True)
    for body in (f'{{"inputs": [[{value}]]}}', f'{{"dataframe_records": [{{"n": {value}}}]}}'):
        text = refused(reader, body.encode())
        assert "column 'n' (row 0)" in text and "out of range" in text


def test_small_int_columns_take_their_whole_range() -> None:
    for dtype in ("uint8", "int8", "int16", "int32"):
        info = np.iinfo(np.dtype(dtype))
        reader = RequestReader(Signature((ColumnSpec("n", dtype),)), wants_frame=True)
        body = f'{{"inputs": [[{info.max}], [{info.min}]]}}'.encode()
        frame = reader.mlflow(parse_body(body)).data
        assert frame["n"].tolist() == [info.max, info.min] and frame["n"].dtype == info.dtype


def test_a_float_beyond_2_53_in_an_int_column_is_refused_as_inexact() -> None:
    text = refused(RequestReader(NUMBERS), b'{"inputs": [[1, 2, 1e17]]}')
    assert "column 'n' (row 0)" in text and "2**53" in text


# crafted numbers: 4xx naming the column, in every format (F6) -----------------------------
@pytest.mark.parametrize(
    "body",
    [
        '{"dataframe_records": [{"a": 1, "b": 2, "n": BIG}], "x": NaN}',
        '{"dataframe_split": {"columns": ["a", "b", "n"], "data": [[1, 2, BIG]]}, "x": NaN}',
        '{"inputs": [[1, 2, BIG]], "x": NaN}',
        '{"inputs": {"a": [1], "b": [2], "n": [BIG]}, "x": NaN}',
        '{"dataframe_records": [{"a": 1, "b": 2, "n": BIG}]}',
        '{"inputs": [[1.5, 2, BIG]]}',
    ],
    ids=["records+nan", "split+nan", "rows+nan", "columns+nan", "records", "rows"],
)
def test_a_401_digit_integer_is_a_422_naming_the_column(body: str) -> None:
    text = refused(RequestReader(NUMBERS), body.replace("BIG", BIG).encode())
    assert "column 'n' (row 0)" in text
    assert "out of range" in text and "401 digits" in text


def test_a_401_digit_integer_in_a_float_column_is_out_of_its_range() -> None:
    numbers = f'{{"dataframe_records": [{{"a": {BIG}, "b": 2, "n": 3}}], "x": NaN}}'
    text = refused(RequestReader(NUMBERS), numbers.encode())
    assert "column 'a' (row 0)" in text and "out of range for float64" in text
    mixed = (
        f'{{"dataframe_records": [{{"age": 3, "income": {BIG}, "region": "n", "member": true, '
        '"sex": null}]}'
    )
    text = refused(RequestReader(MIXED, wants_frame=True), mixed.encode())
    assert "column 'income' (row 0)" in text and "out of range for float64" in text


def test_a_float32_column_refuses_what_float32_cannot_hold() -> None:
    reader = RequestReader(Signature((ColumnSpec("x", "float32"),)), wants_frame=True)
    text = refused(reader, b'{"inputs": [[1e39]]}')
    assert "column 'x' (row 0)" in text and "out of range for float32" in text
    assert reader.mlflow({"inputs": [[3.0e38]]}).data["x"].dtype == np.float32


# missing values and text: the same rules for JSON and for files (bug 3) --------------------
@pytest.mark.parametrize(
    "missing",
    [None, float("nan"), np.float64("nan"), pd.NA],
    ids=["null", "nan", "np-nan", "pd-na"],
)
def test_a_nullable_text_column_takes_any_missing_value(missing: Any) -> None:
    reader = RequestReader(MIXED, wants_frame=True)
    columns = {
        "age": np.array([30, 40]),
        "income": np.array([1.0, np.nan]),
        "region": np.array(["north", "south"], dtype=object),
        "member": np.array([True, False]),
        "sex": np.array(["f", missing], dtype=object),
    }
    frame = reader.columns(columns, "rows.csv").data
    assert frame["sex"].iloc[0] == "f"
    assert pd.isna(frame["sex"].iloc[1])


def test_a_missing_value_where_not_nullable_is_said_plainly() -> None:
    reader = RequestReader(MIXED, wants_frame=True)
    columns = {
        "age": np.array([30]),
        "income": np.array([1.0]),
        "region": np.array([np.nan], dtype=object),
        "member": np.array([True]),
        "sex": np.array(["f"], dtype=object),
    }
    with pytest.raises(ValidationFailed) as caught:
        reader.columns(columns, "rows.csv")
    message = caught.value.message
    assert message.startswith("rows.csv: column 'region' (row 0): got a missing value")
    assert "not nullable" in message
    assert "np." not in message and "JSON" not in message


def test_a_number_in_a_text_column_is_named_without_talking_of_json() -> None:
    reader = RequestReader(MIXED, wants_frame=True)
    columns = {
        "age": np.array([30]),
        "income": np.array([1.0]),
        "region": np.array([7], dtype=object),
        "member": np.array([True]),
        "sex": np.array(["f"], dtype=object),
    }
    with pytest.raises(ValidationFailed) as caught:
        reader.columns(columns, "rows.parquet")
    assert caught.value.message == (
        "rows.parquet: column 'region' (row 0): expected string, got the number 7"
    )


def test_nullable_ints_with_missing_values_reach_the_model_as_floats() -> None:
    reader = RequestReader(Signature((ColumnSpec("n", "int64", nullable=True),)), True)
    frame = reader.mlflow({"inputs": [[1], [None]]}).data
    assert frame["n"].iloc[0] == 1 and math.isnan(frame["n"].iloc[1])


# categories training never saw -------------------------------------------------------------
def test_unknown_categories_are_reported_not_refused() -> None:
    known = {"region": frozenset({"north", "south", "east"})}
    reader = RequestReader(MIXED, wants_frame=True, categories=known)
    rows = [
        {"age": 30, "income": 1.0, "region": "west", "member": True, "sex": "f"},
        {"age": 31, "income": 1.0, "region": "north", "member": True, "sex": None},
        {"age": 32, "income": 1.0, "region": "west", "member": False, "sex": "m"},
        {"age": 33, "income": 1.0, "region": "mars", "member": False, "sex": "x"},
    ]
    batch = reader.mlflow({"dataframe_records": rows})
    assert batch.rows == 4
    assert [(u.column, u.value, u.count) for u in batch.unknown] == [
        ("region", "west", 2),
        ("region", "mars", 1),
    ]
    # a column without known categories ('sex') is never reported
    assert not reader.mlflow({"dataframe_records": rows[1:2]}).unknown
