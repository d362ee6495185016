"""The onnx flavor: converted models predict as the original, and external data stays inside."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from mloop.errors import InvalidInput, InvalidPath, MissingDependency
from mloop.flavors import flavor_for, get_flavor
from mloop.flavors.onnx import OnnxModel, external_locations

W = np.arange(6, dtype=np.float32).reshape(3, 2) / 6
B = np.array([0.5, -0.5], dtype=np.float32)


def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    return x, (x[:, 0] - x[:, 2] > 0).astype(int)


def converted(**options: Any) -> tuple[LogisticRegression, onnx.ModelProto]:
    x, y = xy()
    model = LogisticRegression().fit(x, y)
    return model, to_onnx(model, x[:1].astype(np.float32), options=options or None)


def scorer() -> onnx.ModelProto:
    """label = argmax(X @ W + B), scores = X @ W + B: a model whose weights are tensors."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["M"]),
            helper.make_node("Add", ["M", "B"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
        ],
        "scorer",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["rows", 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["rows"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["rows", 2]),
        ],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def with_external_data(folder: Path, location: str = "weights.bin") -> Path:
    """The scorer saved in `folder` with every tensor in the external file `location`."""
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(
        scorer(), str(path), save_as_external_data=True, location=location, size_threshold=0
    )
    return path


def relocate(model_file: Path, location: str) -> None:
    """Point every external tensor of the saved model at `location` (a crafted model)."""
    proto = onnx.load(str(model_file), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model_file.write_bytes(proto.SerializeToString())


def test_a_converted_classifier_predicts_as_scikit_learn(tmp_path: Path) -> None:
    model, proto = converted()
    flavor = flavor_for(proto)
    assert flavor.name == "onnx"
    meta = flavor.save(proto, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert meta["inputs"] == [{"name": "X", "dtype": "float32", "shape": [None, 4]}]
    assert meta["outputs"] == [
        {"name": "output_label", "dtype": "int64", "shape": [None]},
        {"name": "output_probability", "dtype": "seq(map(int64,float32))", "shape": []},
    ]
    assert meta["opset"] == {"ai.onnx": 9, "ai.onnx.ml": 1} and meta["external_data"] == []
    back = flavor.load(tmp_path, meta)
    assert isinstance(back, OnnxModel)
    x, _ = xy()
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    # ZipMap's list of {label: probability} comes back as rows x classes
    np.testing.assert_allclose(back.predict_proba(x), model.predict_proba(x), atol=1e-5)
    frame = pd.DataFrame(x, columns=list("abcd"))
    np.testing.assert_array_equal(back.predict(frame), model.predict(x))


def test_an_onnx_model_answers_like_an_inference_session(tmp_path: Path) -> None:
    model, proto = converted(zipmap=False)
    back = OnnxModel.from_proto(proto)
    assert get_flavor("onnx").handles(back) and not get_flavor("onnx").handles(b"onnx")
    x, _ = xy()
    (label, proba) = back.run(None, {back.get_inputs()[0].name: x.astype(np.float32)})
    np.testing.assert_array_equal(label, model.predict(x))
    np.testing.assert_allclose(back.predict_proba(x), proba)
    # picklable for process executors: the session is rebuilt on first use
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(back)).predict(x), label)  # noqa: S301


def test_predict_proba_exists_only_with_a_second_output() -> None:
    one_output = scorer()
    del one_output.graph.output[1]
    assert not hasattr(OnnxModel.from_proto(one_output), "predict_proba")
    assert hasattr(OnnxModel.from_proto(scorer()), "predict_proba")


def test_equal_models_give_identical_files(tmp_path: Path) -> None:
    flavor = get_flavor("onnx")
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        flavor.save(converted()[1], tmp_path / name)
    assert (tmp_path / "one" / "model.onnx").read_bytes() == (
        tmp_path / "two" / "model.onnx"
    ).read_bytes()


@pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
def test_external_data_inside_the_folder_is_kept_and_used(tmp_path: Path, location: str) -> None:
    source = with_external_data(tmp_path / "export", location)
    model = OnnxModel.from_file(source)
    assert list(model.external) == [location]
    flavor = get_flavor("onnx")
    (tmp_path / "bundle").mkdir()
    meta = flavor.save(model, tmp_path / "bundle")
    assert meta["external_data"] == [location]
    assert (tmp_path / "bundle" / location).read_bytes() == (
        tmp_path / "export" / location
    ).read_bytes()
    back = flavor.load(tmp_path / "bundle", meta)
    x = np.random.default_rng(2).normal(size=(5, 3))
    np.testing.assert_array_equal(back.predict(x), np.argmax(x.astype(np.float32) @ W + B, axis=1))
    np.testing.assert_allclose(back.predict_proba(x), x @ W + B, rtol=1e-5)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../x", "leaves its folder"),
        ("sub/../../x", "leaves its folder"),
        ("/etc/passwd", "absolute"),
        ("C:/secret.bin", "absolute"),
        ("..\\x", "backslash"),
        ("", "empty"),
        ("model.onnx", "the model file itself"),
    ],
    ids=["dot-dot", "nested dot-dot", "absolute", "drive", "backslash", "empty", "itself"],
)
def test_external_data_outside_the_folder_is_refused(
    tmp_path: Path, location: str, message: str
) -> None:
    bundle = tmp_path / "bundle"
    relocate(with_external_data(bundle), location)
    (tmp_path / "x").write_bytes(b"\x00" * 32)  # what `../x` would have read
    with pytest.raises(InvalidPath, match=message):
        get_flavor("onnx").load(bundle, {})


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    with_external_data(bundle)
    outside = tmp_path / "outside.bin"
    os.replace(bundle / "weights.bin", outside)
    (bundle / "weights.bin").symlink_to(outside)
    with pytest.raises(InvalidPath, match="outside the model folder"):
        get_flavor("onnx").load(bundle, {})
    with pytest.raises(InvalidPath, match="outside the model folder"):
        OnnxModel.from_file(bundle / "model.onnx")


def test_missing_external_data_is_named(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    with_external_data(bundle)
    (bundle / "weights.bin").unlink()
    with pytest.raises(InvalidInput, match=r"'weights\.bin', which is not a file"):
        get_flavor("onnx").load(bundle, {})


def test_a_model_whose_external_data_is_not_loaded_is_refused(tmp_path: Path) -> None:
    unloaded = onnx.load(str(with_external_data(tmp_path / "export")), load_external_data=False)
    assert external_locations(unloaded) == ["weights.bin"]
    with pytest.raises(InvalidInput, match="external data that is not loaded"):
        get_flavor("onnx").save(unloaded, tmp_path)
    with pytest.raises(InvalidInput, match="does not hold"):
        get_flavor("onnx").save(OnnxModel(unloaded.SerializeToString()), tmp_path)


def test_external_tensors_in_subgraphs_are_found() -> None:
    inner = helper.make_graph(
        [helper.make_node("Identity", ["C"], ["y"])],
        "inner",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(np.ones(1, np.float32), "C")],
    )
    tensor = inner.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/shadow")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner)
    graph = helper.make_graph(
        [node],
        "outer",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    assert external_locations(helper.make_model(graph)) == ["/etc/shadow"]


def test_not_an_onnx_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\xff\xfe not protobuf")
    with pytest.raises(InvalidInput, match="not a valid ONNX model"):
        get_flavor("onnx").load(tmp_path, {})


def test_a_missing_onnxruntime_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = OnnxModel.from_proto(scorer())
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependency, match="needs onnxruntime") as err:
        model.predict(np.ones((1, 3)))
    assert err.value.hint == "pip install 'mloop[onnx]'"


def test_onnxruntime_errors_become_invalid_input() -> None:
    model = OnnxModel.from_proto(scorer())
    with pytest.raises(InvalidInput, match="cannot run on this input"):
        model.predict(np.ones((2, 5)))  # five columns for three weights
    broken = scorer()
    broken.graph.node[0].op_type = "NoSuchOperator"
    with pytest.raises(InvalidInput, match="onnxruntime cannot load the ONNX model"):
        OnnxModel.from_proto(broken).predict(np.ones((1, 3)))


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "tensor"])
def test_a_converted_classifier_names_its_classes_for_its_scores(zipmap: bool) -> None:
    from mloop.services.registry.loaded import LoadedModel

    x, y = xy()
    labels = np.where(y == 1, "churned", "stayed")
    model = LogisticRegression().fit(x, labels)
    proto = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": zipmap}})
    back = OnnxModel.from_proto(proto)
    assert back.classes_.tolist() == model.classes_.tolist() == ["churned", "stayed"]
    loaded = LoadedModel("churn", 1, back)
    assert loaded.scores is not None
    classes, scores = loaded.scores(x)
    assert classes == ["churned", "stayed"]
    np.testing.assert_allclose(scores, model.predict_proba(x), atol=1e-5)
    assert not hasattr(OnnxModel.from_proto(scorer()), "classes_")  # no ONNX-ML node
