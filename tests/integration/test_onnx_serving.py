"""An `.onnx` file registered from disk gets its signature from the inputs it declares, and is
served with the same checks as any other model: one table input, or one input per column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mloop.project import Project
from mloop.server.inference import create_app
from tests.integration.serving_helpers import running


@pytest.fixture
def opened(project: Path) -> Iterator[Project]:
    handle = Project.open(project)
    yield handle
    handle.close()


def test_a_table_input_becomes_named_float_columns(opened: Project, tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    proto = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    path = tmp_path / "iris.onnx"
    path.write_bytes(proto.SerializeToString())

    version = opened.models.register_path(path, "iris")
    assert version.signature is not None
    assert [(c.name, c.dtype) for c in version.signature.inputs] == [
        (f"f{i}", "float32") for i in range(4)
    ]
    with running(create_app(opened.models.load_predictor("iris:1"))) as base:
        rows = x[::30].tolist()
        answer = httpx.post(
            base + "/invocations",
            json={"dataframe_split": {"columns": [f"f{i}" for i in range(4)], "data": rows}},
        )
        assert answer.json() == {"predictions": model.predict(x[::30]).tolist()}
        short = httpx.post(base + "/invocations", json={"inputs": [[1.0, 2.0]]})
        assert short.status_code == 422
        assert "row 0 has 2 values, expected 4" in short.json()["error"]["message"]


def test_one_input_per_column_is_fed_by_name(opened: Project, tmp_path: Path) -> None:
    # what converters make for a DataFrame: each column its own [N, 1] input
    graph = helper.make_graph(
        [helper.make_node("Sub", ["price", "cost"], ["margin"])],
        "margin",
        [
            helper.make_tensor_value_info("price", TensorProto.DOUBLE, [None, 1]),
            helper.make_tensor_value_info("cost", TensorProto.DOUBLE, [None, 1]),
        ],
        [helper.make_tensor_value_info("margin", TensorProto.DOUBLE, [None, 1])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    path = tmp_path / "margin.onnx"
    path.write_bytes(proto.SerializeToString())

    version = opened.models.register_path(path, "margin")
    assert version.signature is not None
    assert [(c.name, c.dtype) for c in version.signature.inputs] == [
        ("price", "float64"),
        ("cost", "float64"),
    ]
    with running(create_app(opened.models.load_predictor("margin:1"))) as base:
        records = [{"cost": 3.0, "price": 10.0}, {"cost": 1.5, "price": 2.0}]
        answer = httpx.post(base + "/invocations", json={"dataframe_records": records})
        assert answer.json() == {"predictions": [[7.0], [0.5]]}
        missing = httpx.post(base + "/invocations", json={"dataframe_records": [{"price": 1.0}]})
        assert missing.status_code == 422
        assert "missing column 'cost'" in missing.json()["error"]["message"]
