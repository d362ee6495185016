"""Each flavor on its own: round trips through a folder, reproducible bytes, and refusals."""

from __future__ import annotations

import math
import operator
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mloop.errors import InvalidInput, InvalidPath, NeedsTrust
from mloop.flavors import FLAVORS, flavor_for, get_flavor
from mloop.flavors.protocol import missing


def save_load(obj: Any, folder: Path, trust: bool = False, **load: Any) -> tuple[str, Any]:
    """Save with the flavor the registry picks, load it back; return (flavor name, value)."""
    flavor = flavor_for(obj, trust=trust)
    folder.mkdir()
    meta = flavor.save(obj, folder, trust=trust)
    return flavor.name, flavor.load(folder, meta, trust=trust, **load)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def rich_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris"),
            "grade": pd.Categorical(["a", "b", "a"], ordered=True),
            "count": pd.array([1, None, 3], dtype="Int64"),
            "name": ["x", None, "z"],
            "flag": pd.array([True, None, False], dtype="boolean"),
            "score": [0.5, math.nan, 2.0],
        },
        index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b"), (3, "c")], names=["n", "m"]),
    )


def fitted_pipeline(*first: Any) -> Pipeline:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    steps = [("pre", step) for step in first] or [("scale", StandardScaler())]
    return Pipeline([*steps, ("model", LogisticRegression())]).fit(x, y)


def test_importing_flavors_loads_no_heavy_library() -> None:
    code = (
        "import sys, mloop.flavors as f\n"
        "f.flavor_for({'a': [1, 2.5, None]}); f.get_flavor('sklearn')\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow', 'sklearn', 'skops')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


JSON_VALUES = {
    "nested": {"a": [1, 2.5, None, True, "é"], "b": {"c": {}}, "d": []},
    "non-finite": [math.inf, -math.inf, 1e308, -0.0, 2**70],
    "dollar-keys": {"$float": "nan", "$dict": {"$x": 1}, "plain": "$float"},
    "scalar": "just a string",
    "none": None,
}


@pytest.mark.parametrize("value", JSON_VALUES.values(), ids=JSON_VALUES.keys())
def test_json_round_trip(tmp_path: Path, value: Any) -> None:
    assert save_load(value, tmp_path / "v") == ("json", value)


def test_json_nan_is_written_as_strict_json(tmp_path: Path) -> None:
    name, back = save_load({"loss": math.nan}, tmp_path / "v")
    assert name == "json" and math.isnan(back["loss"])
    assert "NaN" not in (tmp_path / "v" / "value.json").read_text()


def test_json_tuples_become_lists_and_numpy_scalars_inside_become_numbers(tmp_path: Path) -> None:
    name, back = save_load((1, {"acc": np.float64(0.5), "n": np.int64(3)}), tmp_path / "v")
    assert name == "json" and back == [1, {"acc": 0.5, "n": 3}]
    assert type(back[1]["n"]) is int


FRAMES: dict[str, Callable[[], Any]] = {
    "rich dtypes": rich_frame,
    "int column names": lambda: pd.DataFrame({0: [1, 2], 1: ["a", "b"]}),
    "range index": lambda: pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(5, 7)),
    "named series": lambda: pd.Series([1.0, 2.0], name="x", index=pd.Index(["a", "b"], name="k")),
    "unnamed series": lambda: pd.Series(pd.Categorical(["u", "v"])),
}


@pytest.mark.parametrize("make", FRAMES.values(), ids=FRAMES.keys())
def test_pandas_round_trip_keeps_index_and_dtypes(tmp_path: Path, make: Callable[[], Any]) -> None:
    value = make()
    name, back = save_load(value, tmp_path / "v")
    assert name == "pandas"
    if isinstance(value, pd.Series):
        pd.testing.assert_series_equal(back, value)
    else:
        pd.testing.assert_frame_equal(back, value)


def test_pandas_refuses_a_column_of_mixed_types(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="column mixed"):
        get_flavor("pandas").save(pd.DataFrame({"mixed": [1, "x"]}), tmp_path)


ARRAYS = {
    "float matrix": np.arange(12, dtype=np.float32).reshape(3, 4),
    "big-endian": np.arange(3, dtype=">i8"),
    "strings": np.array(["a", "bé"]),
    "structured": np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")]),
    "scalar": np.float32(1.5),
}


@pytest.mark.parametrize("value", ARRAYS.values(), ids=ARRAYS.keys())
def test_numpy_round_trip_keeps_dtype_and_shape(tmp_path: Path, value: Any) -> None:
    name, back = save_load(value, tmp_path / "v")
    assert name == "numpy" and type(back) is type(value) and back.dtype == value.dtype
    np.testing.assert_array_equal(back, value)


def test_object_arrays_are_refused_both_ways(tmp_path: Path) -> None:
    objects = np.array([{"a": 1}, None], dtype=object)
    assert not get_flavor("numpy").handles(objects)
    with pytest.raises(InvalidInput, match=r"dtype is object.*trust=True to pickle"):
        flavor_for(objects)
    np.save(tmp_path / "array.npy", objects, allow_pickle=True)  # a crafted bundle file
    with pytest.raises(InvalidInput, match="unpickle"):
        get_flavor("numpy").load(tmp_path, {})


def test_sklearn_pipeline_predicts_the_same_after_loading(tmp_path: Path) -> None:
    model = fitted_pipeline()
    x = np.random.default_rng(1).normal(size=(20, 3))
    name, back = save_load(model, tmp_path / "v")
    assert name == "sklearn" and isinstance(back, Pipeline)
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))
    # skops stamps members with the time of saving and names them by id(); we do neither.
    with zipfile.ZipFile(tmp_path / "v" / "model.skops") as saved:
        assert {i.date_time for i in saved.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert sorted(saved.namelist())[:2] == ["0.npy", "1.npy"]


def test_sklearn_untrusted_type_is_refused_unless_listed(tmp_path: Path) -> None:
    flavor = get_flavor("sklearn")
    model = fitted_pipeline(FunctionTransformer(operator.neg))
    meta = flavor.save(model, tmp_path)
    assert meta["class"] == "sklearn.pipeline.Pipeline"
    assert meta["untrusted_types"] == ["_operator.neg"]
    with pytest.raises(NeedsTrust, match=r"off mloop's safe list: _operator\.neg") as err:
        flavor.load(tmp_path, meta)
    assert err.value.hint is not None and "pass trust=True" in err.value.hint
    # The file is asked, not the manifest: understating the types in `meta` does not help.
    with pytest.raises(NeedsTrust, match="safe list"):
        flavor.load(tmp_path, {**meta, "untrusted_types": []})
    x = np.ones((2, 3))
    listed = flavor.load(tmp_path, meta, trusted_types=["_operator.neg"])
    np.testing.assert_array_equal(listed.predict(x), model.predict(x))
    assert isinstance(flavor.load(tmp_path, meta, trust=True), Pipeline)


def test_files_round_trip_a_folder_read_only(tmp_path: Path) -> None:
    source = tmp_path / "data"
    (source / "sub").mkdir(parents=True)
    (source / "empty").mkdir()
    (source / "a.csv").write_text("x\n1\n")
    (source / "sub" / "b.bin").write_bytes(b"\x00\x01")
    name, back = save_load(source, tmp_path / "v")
    assert name == "files" and back == tmp_path / "v" / "data"
    assert folder_bytes(back) == folder_bytes(source) and (back / "empty").is_dir()
    assert not os.stat(back / "sub" / "b.bin").st_mode & stat.S_IWUSR


def test_files_round_trip_a_single_file(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"onnx")
    name, back = save_load(source, tmp_path / "v")
    assert name == "files" and back.name == "model.onnx" and back.read_bytes() == b"onnx"


def test_files_refuses_a_missing_path_and_a_name_that_escapes(tmp_path: Path) -> None:
    flavor = get_flavor("files")
    with pytest.raises(InvalidInput, match="not a file or folder"):
        flavor.save(tmp_path / "nowhere", tmp_path)
    with pytest.raises(InvalidPath):
        flavor.load(tmp_path, {"kind": "file", "name": "../x", "empty_dirs": []})
    with pytest.raises(InvalidPath):
        flavor.load(tmp_path, {"kind": "folder", "name": "d", "empty_dirs": ["d/../../x"]})


class Opaque:
    def __init__(self, items: set[str]) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.items == self.items

    __hash__ = None  # type: ignore[assignment]


def test_pickle_only_with_trust(tmp_path: Path) -> None:
    value = Opaque({"a", "b"})
    with pytest.raises(InvalidInput, match=r"no flavor can store a Opaque.*trust=True"):
        flavor_for(value)
    flavor = get_flavor("pickle")
    with pytest.raises(InvalidInput, match="trust=True to pickle"):
        flavor.save(value, tmp_path)
    assert save_load(value, tmp_path / "v", trust=True) == ("pickle", value)
    with pytest.raises(InvalidInput, match="runs any code"):
        flavor.load(tmp_path / "v", {"protocol": 5})


def test_a_value_json_cannot_hold_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidInput, match=r"key 1, and JSON keys are strings"):
        flavor_for({"counts": {1: 2}})
    assert flavor_for({"counts": {1: 2}}, trust=True).name == "pickle"


DETERMINISTIC: dict[str, Callable[[Path], Any]] = {
    "json": lambda _: {"b": [1, math.nan], "a": "x"},
    "pandas": lambda _: rich_frame(),
    "numpy": lambda _: np.linspace(0, 1, 7).reshape(7, 1),
    "sklearn": lambda _: fitted_pipeline(),
    "files": lambda root: root,
}


@pytest.mark.parametrize("make", DETERMINISTIC.values(), ids=DETERMINISTIC.keys())
def test_equal_values_give_identical_files(tmp_path: Path, make: Callable[[Path], Any]) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f.txt").write_text("same")
    saved = []
    for name in ("one", "two"):
        value = make(source)  # built afresh: equal, not the same object
        flavor = flavor_for(value)
        (tmp_path / name).mkdir()
        meta = flavor.save(value, tmp_path / name)
        saved.append((meta, folder_bytes(tmp_path / name)))
    assert saved[0] == saved[1]


@pytest.mark.parametrize(
    ("value", "declared"),
    [
        (pd.DataFrame({"a": [1]}), pd.DataFrame),
        (3, float),
        (None, Optional[dict]),  # noqa: UP045 - the old spelling must work too
        ({"a": 1}, dict[str, int] | None),
        (Path("x"), Annotated[Path, "input"]),
        (np.zeros(2), Any),
    ],
    ids=["class", "int-for-float", "optional", "generic-union", "annotated", "any"],
)
def test_a_value_matching_its_annotation_is_accepted(value: Any, declared: Any) -> None:
    flavor_for(value, declared)


def test_a_value_not_matching_its_annotation_is_refused() -> None:
    with pytest.raises(
        InvalidInput, match="the step returned a list, but its annotation says DataFrame"
    ):
        flavor_for([1, 2], pd.DataFrame)
    with pytest.raises(
        InvalidInput, match="step 'prep' returned a str, but its annotation says Path"
    ):
        flavor_for("data.csv", Path, what="step 'prep'")


def test_unknown_flavor_and_missing_library_messages() -> None:
    with pytest.raises(InvalidInput, match="unknown flavor 'keras'"):
        get_flavor("keras")
    assert missing("sklearn", "skops", "sklearn").hint == "pip install 'mloop[sklearn]'"
    assert list(FLAVORS)[-1] == "pickle"
