"""Values as bundles in a real local artifact store: round trips, digests, trust and tampering."""

from __future__ import annotations

import json
import math
import operator
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mloop.errors import CorruptArtifact, InvalidInput, InvalidPath, NotFound
from mloop.services.tracking.values import describe_value, load_value, store_value
from mloop.store import open_artifact_store
from mloop.store.artifacts.cas import ArtifactStore


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return open_artifact_store(str(tmp_path / "objects"))


def object_file(tmp_path: Path, digest: str) -> Path:
    return tmp_path / "objects" / digest[:2] / digest[2:]


def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    return x, (x[:, 0] - x[:, 2] > 0).astype(int)


def fitted(*first: Any) -> Pipeline:
    steps = [("pre", s) for s in first] or [("scale", StandardScaler())]
    return Pipeline([*steps, ("model", LogisticRegression())]).fit(*xy())


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "city": pd.Categorical(["Oslo", "Lima", "Oslo"]),
            "sales": pd.array([3, None, 5], dtype="Int64"),
            "price": [1.5, 2.0, math.nan],
        },
        index=pd.Index(["a", "b", "c"], name="id"),
    )


def same_frame(a: Any, b: Any) -> None:
    pd.testing.assert_frame_equal(a, b)


def same_array(a: Any, b: Any) -> None:
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def same_predictions(a: Any, b: Any) -> None:
    x, _ = xy()
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def equal(a: Any, b: Any) -> None:
    assert a == b


ROUND_TRIPS: dict[str, tuple[Callable[[], Any], str, Callable[[Any, Any], None]]] = {
    "dataframe": (frame, "pandas", same_frame),
    "series": (
        lambda: frame()["sales"],
        "pandas",
        lambda a, b: pd.testing.assert_series_equal(a, b),
    ),
    "ndarray": (lambda: np.eye(3, dtype=np.float16), "numpy", same_array),
    "model": (fitted, "sklearn", same_predictions),
    "json": (lambda: {"rows": 3, "loss": math.inf, "names": ["a", "b"]}, "json", equal),
}


@pytest.mark.parametrize(("make", "flavor", "check"), ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_every_flavor_round_trips_through_the_store(
    artifacts: ArtifactStore,
    make: Callable[[], Any],
    flavor: str,
    check: Callable[[Any, Any], None],
) -> None:
    value = make()
    stored = store_value(artifacts, value)
    assert stored.flavor == flavor
    check(load_value(artifacts, stored.digest), value)


@pytest.mark.parametrize(("make", "flavor", "check"), ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_equal_values_have_equal_digests(
    artifacts: ArtifactStore,
    make: Callable[[], Any],
    flavor: str,
    check: Callable[[Any, Any], None],
) -> None:
    # Each value is built afresh (for the model: fitted again), so only equality is shared.
    assert store_value(artifacts, make()).digest == store_value(artifacts, make()).digest


def test_different_values_have_different_digests(artifacts: ArtifactStore) -> None:
    changed = frame()
    changed.loc["c", "price"] = 9.0
    assert store_value(artifacts, frame()).digest != store_value(artifacts, changed).digest


def test_the_manifest_describes_the_value(artifacts: ArtifactStore) -> None:
    stored = store_value(artifacts, frame())
    manifest = describe_value(artifacts, stored.digest)
    assert manifest["flavor"] == "pandas" and manifest["type"] == stored.type_name
    assert manifest["meta"]["columns"] == ["city", "sales", "price"]
    assert manifest["meta"]["dtypes"][:2] == ["category", "Int64"]
    assert list(manifest["files"]) == ["frame.parquet"]
    assert stored.size == sum(artifacts.size(d) or 0 for d in manifest["files"].values())
    raw = artifacts.read_bytes(stored.digest)
    assert raw == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def test_a_folder_loads_as_a_read_only_path(artifacts: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "reports"
    (source / "plots").mkdir(parents=True)
    (source / "plots" / "roc.png").write_bytes(b"\x89PNG")
    (source / "summary.txt").write_text("ok")
    stored = store_value(artifacts, source, declared=Path)
    assert stored.type_name == "pathlib.Path" and stored.size == 6
    back = load_value(artifacts, stored.digest, workdir=tmp_path / "work")
    assert back == tmp_path / "work" / "reports"
    assert (back / "plots" / "roc.png").read_bytes() == b"\x89PNG"
    # The mode, not a failing write: root (as in CI) may write to read-only files.
    assert not (back / "summary.txt").stat().st_mode & stat.S_IWUSR


def test_a_value_read_into_memory_leaves_no_temporary_files(
    artifacts: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    stored = store_value(artifacts, frame())
    same_frame(load_value(artifacts, stored.digest), frame())
    assert list(scratch.iterdir()) == []


def test_a_value_not_matching_its_annotation_is_refused(artifacts: ArtifactStore) -> None:
    with pytest.raises(InvalidInput, match="returned a list, but its annotation says DataFrame"):
        store_value(artifacts, [1, 2], declared=pd.DataFrame)


def test_pickle_needs_trust_to_store_and_to_load(artifacts: ArtifactStore, tmp_path: Path) -> None:
    value = {"tags": {"a", "b"}}
    with pytest.raises(InvalidInput, match="no flavor can store a dict"):
        store_value(artifacts, value)
    stored = store_value(artifacts, value, trust=True)
    assert stored.flavor == "pickle"
    # Refused before anything is fetched: even a missing file does not get that far.
    (digest,) = describe_value(artifacts, stored.digest)["files"].values()
    pickled = object_file(tmp_path, digest).read_bytes()
    artifacts.delete(digest)
    with pytest.raises(InvalidInput, match="runs any code"):
        load_value(artifacts, stored.digest)
    artifacts.put_bytes(pickled)
    assert load_value(artifacts, stored.digest, trust=True) == value


def test_an_untrusted_model_type_loads_only_when_listed(artifacts: ArtifactStore) -> None:
    model = fitted(FunctionTransformer(operator.neg))
    stored = store_value(artifacts, model)
    assert describe_value(artifacts, stored.digest)["meta"]["untrusted_types"] == ["_operator.neg"]
    with pytest.raises(InvalidInput, match=r"_operator\.neg"):
        load_value(artifacts, stored.digest)
    same_predictions(load_value(artifacts, stored.digest, trusted_types=["_operator.neg"]), model)


def test_an_object_array_is_refused(artifacts: ArtifactStore) -> None:
    with pytest.raises(InvalidInput, match="dtype is object"):
        store_value(artifacts, np.array([object()], dtype=object))


def test_a_tampered_bundle_file_is_caught(artifacts: ArtifactStore, tmp_path: Path) -> None:
    stored = store_value(artifacts, np.arange(100))
    (digest,) = describe_value(artifacts, stored.digest)["files"].values()
    path = object_file(tmp_path, digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact):
        load_value(artifacts, stored.digest)


def manifest(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "files": {"value.json": "0" * 64},
        "flavor": "json",
        "format": 1,
        "meta": {},
        "type": "builtins.dict",
    }
    return json.dumps({**body, **changes}).encode()


BAD_MANIFESTS = {
    "dot-dot": (manifest(files={"../x": "0" * 64}), InvalidPath, "leaves its folder"),
    "absolute": (manifest(files={"/etc/passwd": "0" * 64}), InvalidPath, "absolute"),
    "file inside a file": (
        manifest(files={"a": "0" * 64, "a/b": "0" * 64}),
        InvalidPath,
        "inside the bundle file",
    ),
    "unknown flavor": (manifest(flavor="keras"), InvalidInput, "unknown flavor 'keras'"),
    "bad digest": (manifest(files={"value.json": "nope"}), InvalidInput, "malformed"),
    "not a manifest": (b'{"rows": 3}', InvalidInput, "not a stored value"),
    "not json": (b"\x89PNG", InvalidInput, "not JSON"),
}


@pytest.mark.parametrize(
    ("body", "error", "message"), BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys()
)
def test_a_bad_manifest_is_refused(
    artifacts: ArtifactStore, tmp_path: Path, body: bytes, error: type[Exception], message: str
) -> None:
    digest = artifacts.put_bytes(body)
    with pytest.raises(error, match=message):
        load_value(artifacts, digest, workdir=tmp_path / "work")
    assert not (tmp_path / "x").exists()


def test_unknown_digests_are_refused(artifacts: ArtifactStore) -> None:
    with pytest.raises(InvalidInput, match="not a digest"):
        load_value(artifacts, "../../etc/passwd")
    with pytest.raises(NotFound):
        load_value(artifacts, "0" * 64)


class CreatesFile:
    """A pickle payload: unpickling it calls `open(path, "w")`, which creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def crafted_bundle(
    artifacts: ArtifactStore, flavor: str, files: dict[str, bytes], meta: Any
) -> str:
    """A bundle written by hand, as someone with write access to a shared store could."""
    body = {
        "files": {name: artifacts.put_bytes(data) for name, data in files.items()},
        "flavor": flavor,
        "format": 1,
        "meta": meta,
        "type": "builtins.object",
    }
    return artifacts.put_bytes(json.dumps(body).encode())


@pytest.mark.parametrize("kind", ["pickle", "joblib"])
def test_a_pickle_whose_reduce_would_create_a_file_never_runs_without_trust(
    artifacts: ArtifactStore, tmp_path: Path, kind: str
) -> None:
    import pickle

    import joblib

    marker = tmp_path / "created-by-unpickling"
    if kind == "joblib":
        joblib.dump(CreatesFile(marker), tmp_path / "payload.joblib")
        files = {"model.joblib": (tmp_path / "payload.joblib").read_bytes()}
        meta: dict[str, Any] = {"format": "joblib"}
    else:
        files, meta = {"value.pkl": pickle.dumps(CreatesFile(marker))}, {"protocol": 5}
    digest = crafted_bundle(artifacts, "pickle", files, meta)
    with pytest.raises(InvalidInput, match="runs any code"):
        load_value(artifacts, digest, workdir=tmp_path / "work")
    assert not marker.exists()
    # The payload is real: a caller who trusts the store runs it.
    load_value(artifacts, digest, trust=True, workdir=tmp_path / "work").close()
    assert marker.exists()


def test_a_joblib_file_is_stored_as_it_is_and_loads_only_with_trust(
    artifacts: ArtifactStore, tmp_path: Path
) -> None:
    import joblib

    from mloop.flavors.pickle import PickleFile

    model = fitted()
    joblib.dump(model, tmp_path / "model.joblib", compress=3)
    with pytest.raises(InvalidInput, match="trust=True"):
        store_value(artifacts, PickleFile(tmp_path / "model.joblib"))
    stored = store_value(artifacts, PickleFile(tmp_path / "model.joblib"), trust=True)
    manifest = describe_value(artifacts, stored.digest)
    assert stored.flavor == "pickle" and manifest["meta"] == {"format": "joblib"}
    assert list(manifest["files"]) == ["model.joblib"]
    with pytest.raises(InvalidInput, match="runs any code"):
        load_value(artifacts, stored.digest)
    same_predictions(load_value(artifacts, stored.digest, trust=True), model)


def onnx_classifier() -> tuple[LogisticRegression, Any]:
    from skl2onnx import to_onnx

    x, y = xy()
    model = LogisticRegression().fit(x, y)
    return model, to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False})


def test_an_onnx_model_predicts_as_scikit_learn_after_the_store(artifacts: ArtifactStore) -> None:
    model, proto = onnx_classifier()
    stored = store_value(artifacts, proto)
    assert stored.flavor == "onnx"
    back = load_value(artifacts, stored.digest)
    x, _ = xy()
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    np.testing.assert_allclose(back.predict_proba(x), model.predict_proba(x), atol=1e-5)


def test_a_corrupted_onnx_file_is_caught_before_onnx_parses_it(
    artifacts: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import onnxruntime

    stored = store_value(artifacts, onnx_classifier()[1])
    path = object_file(tmp_path, describe_value(artifacts, stored.digest)["files"]["model.onnx"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(data))

    def parsed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("onnx parsed a file that was not verified")

    for name in ("load", "load_model", "load_model_from_string"):
        monkeypatch.setattr(onnx, name, parsed)
    monkeypatch.setattr(onnxruntime, "InferenceSession", parsed)
    with pytest.raises(CorruptArtifact):
        load_value(artifacts, stored.digest)


def test_onnx_external_data_pointing_out_of_the_bundle_is_refused(
    artifacts: ArtifactStore, tmp_path: Path
) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mloop.flavors.onnx import OnnxModel

    weights = numpy_helper.from_array(np.ones((4, 1), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[weights],
    )
    export = tmp_path / "export"
    export.mkdir()
    onnx.save_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        str(export / "model.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    stored = store_value(artifacts, OnnxModel.from_file(export / "model.onnx"))
    manifest = describe_value(artifacts, stored.digest)
    assert sorted(manifest["files"]) == ["model.onnx", "weights.bin"]
    x = np.ones((2, 4))
    np.testing.assert_array_equal(load_value(artifacts, stored.digest).predict(x), [[4.0], [4.0]])
    # The same bundle, with the model pointing its tensor at a file beside the work folder
    proto = onnx.load(str(export / "model.onnx"), load_external_data=False)
    proto.graph.initializer[0].external_data[0].value = "../secret.bin"
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 16)
    digest = crafted_bundle(
        artifacts,
        "onnx",
        {"model.onnx": proto.SerializeToString(), "weights.bin": b"\x00" * 16},
        manifest["meta"],
    )
    with pytest.raises(InvalidPath, match="leaves its folder"):
        load_value(artifacts, digest, workdir=tmp_path / "work")


PYTHON_MODEL = """
from mloop.sdk.python_model import PythonModel


class Doubler(PythonModel):
    def __init__(self, factor: int = 2) -> None:
        self.factor = factor

    def load_context(self, artifacts):
        self.offset = int(artifacts["offset"].read_text())

    def predict(self, batch):
        return [row[0] * self.factor + self.offset for row in batch]
"""


def test_a_python_model_is_stored_with_its_code_and_loads_only_with_trust(
    artifacts: ArtifactStore, tmp_path: Path
) -> None:
    import importlib.util
    import sys

    (tmp_path / "doubler.py").write_text(PYTHON_MODEL)
    (tmp_path / "offset.txt").write_text("1")
    spec = importlib.util.spec_from_file_location("doubler_for_values", tmp_path / "doubler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    model = module.Doubler(factor=3)
    model.artifacts = {"offset": tmp_path / "offset.txt"}
    stored = store_value(artifacts, model)
    assert stored.flavor == "python"
    (tmp_path / "doubler.py").unlink()
    with pytest.raises(InvalidInput, match="imports the code packaged with it"):
        load_value(artifacts, stored.digest)
    back = load_value(artifacts, stored.digest, trust=True, workdir=tmp_path / "work")
    assert back.predict([[1], [2]]) == [4, 7]
