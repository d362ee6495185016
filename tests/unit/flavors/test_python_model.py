"""The python flavor: a PythonModel is stored with its code and artifacts, and loads on trust."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from mloop.errors import InvalidInput, InvalidPath
from mloop.flavors import flavor_for, get_flavor
from mloop.flavors.python_model import PythonModel, init_args
from mloop.sdk.python_model import PythonModel as SdkPythonModel

MODULE = """
from pathlib import Path

import numpy as np

from mloop.sdk.python_model import PythonModel
import helpers

Path({marker!r}).touch()  # shows when this module's code runs


class Scorer(PythonModel):
    code = ["helpers.py"]

    def __init__(self, cut: float = 0.5, *, labels: list[str] | None = None) -> None:
        self.cut = cut
        self.labels = labels or ["no", "yes"]

    def load_context(self, artifacts: dict[str, Path]) -> None:
        self.weights = np.load(artifacts["weights"])
        self.notes = (artifacts["notes"] / "read_me.txt").read_text()

    def predict(self, batch):
        scores = helpers.scale(np.asarray(batch) @ self.weights)
        return np.array([self.labels[int(s > self.cut)] for s in scores])
"""


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
        sys.modules.pop("helpers", None)
    return module


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the model module, a helper module and the model's files."""
    root = tmp_path / "project"
    (root / "notes").mkdir(parents=True)
    (root / "scorer.py").write_text(MODULE.format(marker=str(tmp_path / "imported")))
    (root / "helpers.py").write_text("def scale(x):\n    return x * 2\n")
    np.save(root / "weights.npy", np.array([0.25, -0.25, 0.5]))
    (root / "notes" / "read_me.txt").write_text("trained on sales:3")
    return root


def make_model(project: Path, *args: Any, **kwargs: Any) -> Any:
    module = load_module(project / "scorer.py", f"scorer_{project.parent.name}")
    model = module.Scorer(*args, **kwargs)
    model.artifacts = {"weights": project / "weights.npy", "notes": project / "notes"}
    return model


BATCH = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_a_python_model_round_trips_with_its_code_artifacts_and_arguments(
    tmp_path: Path, project: Path
) -> None:
    model = make_model(project, 0.4, labels=["low", "high"])
    model.load_context({"weights": project / "weights.npy", "notes": project / "notes"})
    expected = model.predict(BATCH)
    assert list(expected) == ["high", "low", "high"]
    flavor = flavor_for(model)
    assert flavor.name == "python"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = flavor.save(model, bundle)
    assert meta["class"] == "Scorer" and meta["module_file"] == "code/scorer.py"
    assert meta["init_args"] == {"cut": 0.4, "labels": ["low", "high"]}
    assert meta["artifacts"] == {
        "weights": "artifacts/weights/weights.npy",
        "notes": "artifacts/notes/notes",
    }
    assert meta["code"] == ["helpers.py"]
    # The original code changes and disappears: the packaged copy is what loads.
    (project / "scorer.py").write_text("raise SystemExit('the original module ran')\n")
    (project / "helpers.py").unlink()
    (tmp_path / "imported").unlink()
    back = flavor.load(bundle, meta, trust=True)
    assert (tmp_path / "imported").exists()
    assert isinstance(back, SdkPythonModel) and type(back) is not type(model)
    assert back.notes == "trained on sales:3"
    np.testing.assert_array_equal(back.predict(BATCH), expected)
    assert "helpers" not in sys.modules and str(bundle / "code") not in sys.path


def test_loading_without_trust_runs_no_packaged_code(tmp_path: Path, project: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = get_flavor("python").save(make_model(project), bundle)
    (tmp_path / "imported").unlink()
    with pytest.raises(InvalidInput, match="imports the code packaged with it") as err:
        get_flavor("python").load(bundle, meta)
    assert err.value.hint is not None and "trust=True" in err.value.hint
    assert not (tmp_path / "imported").exists()


def test_two_models_with_their_own_helpers_do_not_collide(tmp_path: Path, project: Path) -> None:
    bundles = []
    for factor in (2, 10):
        (project / "helpers.py").write_text(f"def scale(x):\n    return x * {factor}\n")
        bundle = tmp_path / f"bundle{factor}"
        bundle.mkdir()
        model = make_model(project, cut=1.0)
        bundles.append((bundle, get_flavor("python").save(model, bundle)))
    first, second = (get_flavor("python").load(b, m, trust=True) for b, m in bundles)
    row = np.array([[1.0, 0.0, 0.0]])  # 0.25 * 2 = 0.5 (no), 0.25 * 10 = 2.5 (yes)
    assert list(first.predict(row)) == ["no"] and list(second.predict(row)) == ["yes"]


def test_positional_arguments_are_stored_by_name(project: Path) -> None:
    assert init_args(make_model(project, 0.7)) == {"cut": 0.7}
    assert init_args(make_model(project)) == {}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cut": {0.5}}, "is a set"),
        ({"labels": [Path("a"), "b"]}, "is a PosixPath"),
        ({"cut": float("nan")}, "Out of range float"),
    ],
    ids=["set", "path", "nan"],
)
def test_arguments_json_cannot_hold_are_refused(
    tmp_path: Path, project: Path, kwargs: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidInput, match=f"arguments JSON cannot hold.*{reason}"):
        get_flavor("python").save(make_model(project, **kwargs), tmp_path)


class Inline(PythonModel):
    def predict(self, batch: Any) -> Any:
        return batch


def test_a_class_without_an_importable_home_is_refused(tmp_path: Path) -> None:
    def local() -> PythonModel:
        class Local(PythonModel):
            pass

        return Local()

    with pytest.raises(InvalidInput, match="inside a function"):
        get_flavor("python").save(local(), tmp_path)
    hidden = Inline()
    type(hidden).__qualname__ = "Elsewhere"
    try:
        with pytest.raises(InvalidInput, match="not reachable by its name"):
            get_flavor("python").save(hidden, tmp_path)
    finally:
        type(hidden).__qualname__ = "Inline"


@pytest.mark.parametrize(
    ("artifacts", "error", "message"),
    [
        ({"../up": "weights.npy"}, InvalidPath, "not a plain name"),
        ({"a/b": "weights.npy"}, InvalidPath, "not a plain name"),
        ({"weights": "nowhere.npy"}, InvalidInput, "not a file or folder"),
    ],
    ids=["dot-dot", "slash", "missing"],
)
def test_bad_artifacts_are_refused_when_saving(
    tmp_path: Path, project: Path, artifacts: dict[str, str], error: type[Exception], message: str
) -> None:
    model = make_model(project)
    model.artifacts = {name: project / path for name, path in artifacts.items()}
    with pytest.raises(error, match=message):
        get_flavor("python").save(model, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"module_file": "../scorer.py"}, "leaves its folder"),
        ({"module_file": "artifacts/weights/weights.npy"}, "outside its code/ folder"),
        ({"artifacts": {"weights": "code/scorer.py"}}, "outside its artifacts/ folder"),
        ({"artifacts": {"weights": "/etc/passwd"}}, "absolute"),
        ({"class": "os.system"}, "no PythonModel class"),
        ({"class": "Scorer; import os"}, "not a name"),
    ],
    ids=["module dot-dot", "module elsewhere", "artifact elsewhere", "absolute", "other", "junk"],
)
def test_a_tampered_manifest_is_refused(
    tmp_path: Path, project: Path, change: dict[str, Any], message: str
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = get_flavor("python").save(make_model(project), bundle)
    with pytest.raises(InvalidInput, match=message):
        get_flavor("python").load(bundle, {**meta, **change}, trust=True)


def test_unlisted_project_modules_fail_with_the_fix(tmp_path: Path, project: Path) -> None:
    model = make_model(project)
    model.code = []
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = get_flavor("python").save(model, bundle)
    with pytest.raises(InvalidInput, match="No module named 'helpers'") as err:
        get_flavor("python").load(bundle, meta, trust=True)
    assert err.value.hint is not None and "code = ['helpers.py']" in err.value.hint


def test_the_base_class_needs_predict() -> None:
    with pytest.raises(NotImplementedError, match="does not define predict"):
        PythonModel().predict([1])
