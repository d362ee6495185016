"""`mloop models import-mlflow`: real MLflow model directories (written by mlflow-skinny's
`mlflow.sklearn.save_model`) in skops and cloudpickle formats, registered safely."""

from __future__ import annotations

import json
import operator
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import mloop
from mloop.errors import NeedsTrust
from mloop.project import Project


def training_frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"income": rng.normal(50, 10, 200), "visits": rng.integers(0, 9, 200)})
    label = ((frame.income - 50) / 10 + frame.visits / 4 > 1).astype(int)
    return frame, label


def save(
    model: object,
    folder: Path,
    fmt: str,
    frame: pd.DataFrame,
    label: pd.Series,
    trusted: list[str] | None = None,
) -> Path:
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format=fmt,
        signature=infer_signature(frame, label),
        metadata={"team": "risk", "ticket": 42},
        pip_requirements=["scikit-learn"],  # do not make MLflow infer them (a subprocess)
        skops_trusted_types=trusted,
    )
    return folder


@pytest.fixture
def fitted() -> tuple[LogisticRegression, pd.DataFrame, pd.Series]:
    frame, label = training_frame()
    return LogisticRegression().fit(frame, label), frame, label


def test_a_skops_model_is_imported_with_its_signature_and_source(
    project: Path, tmp_path: Path, cli, fitted
) -> None:
    model, frame, label = fitted
    folder = save(model, tmp_path / "exported", "skops", frame, label)
    done = cli("models", "import-mlflow", str(folder), "--name", "churn", "--json")
    assert done.code == 0, done.err
    shown = json.loads(done.out)
    assert shown["version"] == 1 and shown["flavor"] == "sklearn"
    version = Project.open().models.get("churn:1")
    assert version.signature is not None
    assert [(c.name, c.dtype, c.nullable) for c in version.signature.inputs] == [
        ("income", "float64", False),
        ("visits", "int64", False),
    ]
    assert [c.dtype for c in version.signature.outputs] == ["int64"]
    assert "skops" in version.description and "metadata.team=risk" in version.description
    assert "mlflow_version=" in version.description and "metadata.ticket=42" in version.description
    assert version.run_id is None  # MLflow's run is described, not invented as an mloop run
    loaded = mloop.load_model("churn:1")
    assert (loaded.predict(frame) == model.predict(frame)).all()
    events = Project.open().metadata.events.find("model/churn:1")
    imported = next(e for e in events if e.action == "model.imported")
    assert imported.details["format"] == "skops" and imported.details["trusted"] is False
    assert imported.details["source"] == str(folder.resolve())


def test_the_name_defaults_to_the_folder_and_text_output(
    project: Path, tmp_path: Path, cli, fitted
) -> None:
    model, frame, label = fitted
    folder = save(model, tmp_path / "Fraud_Model", "skops", frame, label)
    done = cli("models", "import-mlflow", str(folder / "MLmodel"))  # the file itself works too
    assert done.code == 0, done.err
    assert done.out.startswith("registered fraud-model:1 (sklearn, ")


def test_a_pickled_model_needs_trust_and_the_trust_is_recorded(
    project: Path, tmp_path: Path, cli, fitted
) -> None:
    model, frame, label = fitted
    folder = save(model, tmp_path / "pickled", "cloudpickle", frame, label)
    refused = cli("models", "import-mlflow", str(folder), "--name", "churn")
    assert refused.code == 1
    assert "cloudpickle model: loading it runs any code" in refused.err
    assert "--trust" in refused.err
    opened = Project.open()
    assert opened.models.find() == []
    assert not [e for e in opened.metadata.events.find() if e.action.startswith("model.")]

    done = cli("models", "import-mlflow", str(folder), "--name", "churn", "--trust")
    assert done.code == 0, done.err
    version = Project.open().models.get("churn:1")
    assert version.flavor == "sklearn"  # stored the safe way from now on: skops, no pickle
    events = Project.open().metadata.events.find()
    trusted = next(e for e in events if e.action == "model.loaded_with_trust")
    assert trusted.ref == f"file/{folder.resolve() / 'model.pkl'}"
    assert trusted.details["format"] == "cloudpickle" and trusted.details["model"] == "churn"
    imported = next(e for e in events if e.action == "model.imported")
    assert imported.ref == "model/churn:1" and imported.details["trusted"] is True
    loaded = mloop.load_model("churn")  # no trust needed to load what mloop stored
    assert (loaded.predict(frame) == model.predict(frame)).all()


def test_skops_types_off_the_safe_list_need_trust_to_import_and_to_load(
    project: Path, tmp_path: Path, cli, fitted
) -> None:
    _, frame, label = fitted
    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    model.fit(frame, label)
    # MLflow's MLmodel lists the type as trusted by whoever saved it; mloop asks the user anyway
    folder = save(model, tmp_path / "custom", "skops", frame, label, ["_operator.neg"])
    refused = cli("models", "import-mlflow", str(folder), "--name", "neg")
    assert refused.code == 1
    assert "_operator.neg" in refused.err and "hint: if you trust where" in refused.err
    assert "add --trust" in refused.err
    assert Project.open().models.find() == []
    done = cli("models", "import-mlflow", str(folder), "--name", "neg", "--trust")
    assert done.code == 0, done.err
    assert "warning: neg:1 needs trust to load" in done.err  # said when it is registered
    version = Project.open().models.get("neg:1")
    assert version.trusted_types == ("_operator.neg",)  # what it needs, recorded
    with pytest.raises(NeedsTrust, match="neg:1 needs trust"):  # ... and never given away
        mloop.load_model("neg:1")
    assert (mloop.load_model("neg:1", trust=True).predict(frame) == model.predict(frame)).all()


def test_a_folder_without_mlmodel_or_with_another_flavor_is_a_clear_error(
    project: Path, tmp_path: Path, cli
) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    done = cli("models", "import-mlflow", str(empty))
    assert done.code == 1
    assert "is not an MLflow model directory: it has no MLmodel file" in done.err
    assert "hint: give the folder mlflow.sklearn.save_model wrote" in done.err

    other = tmp_path / "torch-model"
    other.mkdir()
    (other / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pytorch\n    data: data\n"
        "  pytorch:\n    model_data: data\n"
    )
    done = cli("models", "import-mlflow", str(other))
    assert done.code == 1
    assert "python_function, pytorch model; mloop imports scikit-learn models" in done.err
    assert Project.open().models.find() == []


def crafted(folder: Path, extra: str, model: object) -> Path:
    """An MLmodel as a hostile or broken writer makes it, beside a real skops model file."""
    import skops.io

    folder.mkdir()
    (folder / "model.skops").write_bytes(skops.io.dumps(model))
    (folder / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n"
        + extra
    )
    return folder


def laughs(levels: int) -> str:
    """YAML aliases nested `levels` deep, ten to a level: 10**levels strings once expanded."""
    text = "metadata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels):
        text += f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


def tensor(width: int) -> str:
    spec = [{"type": "tensor", "tensor-spec": {"shape": [-1, width], "dtype": "float64"}}]
    return f"signature:\n  inputs: '{json.dumps(spec)}'\n"


MALFORMED = {
    "inputs not json": ("signature:\n  inputs: 'not json ['\n", "signature.inputs is not a list"),
    "inputs a list of ints": ("signature:\n  inputs: '[1, 2, 3]'\n", "signature.inputs is not"),
    "inputs a dict": ("signature:\n  inputs: '{\"a\": 1}'\n", "signature.inputs is not a list"),
    "signature a word": ("signature: hello\n", "`signature` must be a mapping"),
    "metadata a list": ("metadata: [1, 2]\n", "`metadata` must be a mapping, not list"),
    "alias bomb": (laughs(6), "uses more than 100 aliases"),
    "a million inputs": (tensor(10**6), "1,000,000 values wide; mloop takes at most 10,000"),
    "a hundred million inputs": (tensor(10**8), "100,000,000 values wide"),
    "width not the model's": (tensor(5), "signature has 5 inputs, but the model takes 2"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_a_crafted_mlmodel_is_refused_in_one_line_and_quickly(
    project: Path, tmp_path: Path, cli, fitted, case: str
) -> None:
    model, _, _ = fitted
    extra, message = MALFORMED[case]
    folder = crafted(tmp_path / "crafted", extra, model)
    done = cli("models", "import-mlflow", str(folder), "--name", "crafted")
    assert done.code == 1, done.out
    assert message in done.err
    assert "internal error" not in done.err and len(done.err) < 2000
    assert Project.open().models.find() == []


def test_what_an_mlmodel_says_is_bounded_before_it_is_recorded(
    project: Path, tmp_path: Path, cli, fitted
) -> None:
    model, frame, _ = fitted
    metadata = {f"key{i}": "x" * 20_000 for i in range(40)}
    extra = tensor(2) + "metadata: " + json.dumps(metadata) + "\n"
    folder = crafted(tmp_path / "wordy", extra, model)
    done = cli("models", "import-mlflow", str(folder), "--name", "wordy")
    assert done.code == 0, done.err
    version = Project.open().models.get("wordy:1")
    assert version.signature is not None and version.signature.names == ("f0", "f1")
    assert len(version.description) < 40_000  # 800 kB of metadata in the file
    assert "(20,000 characters)" in version.description
    assert "8 more keys not recorded" in version.description
    (event,) = [e for e in Project.open().metadata.events.find() if e.action == "model.imported"]
    assert len(json.dumps(event.details)) < 40_000
    assert (mloop.load_model("wordy:1").predict(frame.to_numpy()) == model.predict(frame)).all()

    huge = crafted(tmp_path / "huge", "metadata:\n  note: '" + "y" * 2_000_000 + "'\n", model)
    refused = cli("models", "import-mlflow", str(huge), "--name", "huge")
    assert refused.code == 1 and "is over 1024 KiB" in refused.err
