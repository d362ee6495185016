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
    "unknown flavor": (manifest(flavor="onnx"), InvalidInput, "unknown flavor 'onnx'"),
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
