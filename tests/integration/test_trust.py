"""Models people train load everywhere without trust; a model that needs trust is named when it
is registered, and every loader (server, batch scoring, pipeline steps, promotion, the exported
image, the SDK) refuses it with the way to trust that applies where the user is."""

from __future__ import annotations

import json
import operator
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import mloop
from mloop.errors import NeedsTrust
from mloop.project import Project
from tests.conftest import MLOOP, run_mloop
from tests.servers import free_port, wait_for

PIPELINE = """
import operator

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import mloop

FEATURES = ["x1", "x2"]


@mloop.step
def ingest(raw) -> pd.DataFrame:
    return raw.to_pandas()


@mloop.step
def train(frame: pd.DataFrame, kind: str = "hgb") -> object:
    if kind == "custom":  # a function in the model: off mloop's safe list
        steps = [FunctionTransformer(operator.neg), SimpleImputer(), LogisticRegression()]
        model = make_pipeline(*steps)
    else:
        model = make_pipeline(SimpleImputer(), HistGradientBoostingClassifier(max_iter=20))
    return model.fit(frame[FEATURES], frame["label"])


@mloop.step
def evaluate(model: object, frame: pd.DataFrame) -> float:
    score = float(model.score(frame[FEATURES], frame["label"]))
    mloop.log_metric("accuracy", score)
    return score


@mloop.step
def register(model: object, score: float) -> str:
    return mloop.register_model(model, "churn").ref


@mloop.pipeline(metric="accuracy")
def training(kind: str = "hgb"):
    frame = ingest(mloop.dataset("train"))
    model = train(frame, kind=kind)
    register(model, evaluate(model, frame))
"""

YAML = """project: trust
pipelines:
  training: pipeline:training
models:
  churn:
    holdout: holdout
    label: label
    gates:
      - accuracy >= champion - 0.5
"""


def frames(n: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["label"] = (frame.x1.fillna(0) + frame.x2 > 0).astype(int)
    frame.loc[::9, "x1"] = np.nan  # real data has holes: the model imputes them
    return frame.iloc[: n * 2 // 3], frame.iloc[n * 2 // 3 :]


@pytest.fixture
def trust_project(project: Path) -> Path:
    train, holdout = frames()
    (project / "data").mkdir()
    train.to_csv(project / "data/train.csv", index=False)
    holdout.to_csv(project / "data/holdout.csv", index=False)
    holdout.drop(columns=["label"]).to_csv(project / "data/new.csv", index=False)
    (project / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    (project / "mloop.yaml").write_text(YAML)
    mloop.data.add("train", "data/train.csv")
    mloop.data.add("holdout", "data/holdout.csv")
    return project


def custom_model() -> object:
    train, _ = frames()
    model = make_pipeline(FunctionTransformer(operator.neg), SimpleImputer(), LogisticRegression())
    return model.fit(train[["x1", "x2"]], train["label"])


def test_a_pipeline_with_an_imputer_and_hist_gradient_boosting_needs_no_trust_anywhere(
    trust_project: Path, cli
) -> None:
    done = run_mloop("run", "training", cwd=trust_project)
    assert done.code == 0, done.err  # the evaluate step loaded the model train stored
    version = Project.open().models.get("churn:1")
    assert version.trusted_types == ()
    shown = cli("models", "show", "churn:1")
    assert "safe (no trust needed)" in shown.out
    predicted = cli("models", "predict", "churn:1", "-i", "data/new.csv")
    assert predicted.code == 0, predicted.err
    assert len(json.loads(predicted.out)["predictions"]) == 100
    assert cli("models", "alias", "churn:1", "champion").code == 0
    mloop.register_model(mloop.load_model("churn:1"), "churn")  # churn:2, the same model
    promoted = cli("models", "promote", "churn:2")  # loads both, no trust needed
    assert promoted.code == 0, promoted.err


def test_a_step_that_needs_trust_names_the_decorator(trust_project: Path) -> None:
    done = run_mloop("run", "training", "-p", "kind=custom", cwd=trust_project)
    assert done.code != 0
    said = done.out + done.err
    assert "the input 'model' of step 'evaluate' needs trust to load" in said
    assert "_operator.neg" in said and "@mloop.step(trust=True)" in said
    assert "--trust" not in said  # the CLI flag does not help inside a step


def test_a_model_off_the_list_is_named_at_registration_and_every_loader_asks_for_trust(
    trust_project: Path, cli
) -> None:
    with pytest.warns(UserWarning, match=r"churn:1 needs trust to load: .*_operator\.neg"):
        version = mloop.register_model(custom_model(), "churn")
    assert version.trusted_types == ("_operator.neg",)
    assert "needs --trust" in cli("models", "show", "churn:1").out

    with pytest.raises(NeedsTrust, match=r"churn:1 needs trust to load") as err:
        mloop.load_model("churn:1")
    assert err.value.hint == "if you trust where churn:1 came from, pass trust=True"
    assert mloop.load_model("churn:1", trust=True).predict(frames()[1][["x1", "x2"]]).size

    refused = cli("models", "predict", "churn:1", "-i", "data/new.csv")
    assert refused.code == 1
    assert "churn:1 needs trust to load" in refused.err
    assert "hint: if you trust where churn:1 came from, add --trust" in refused.err
    trusted = cli("models", "predict", "churn:1", "-i", "data/new.csv", "--trust")
    assert trusted.code == 0, trusted.err

    served = subprocess.run(
        [*MLOOP, "serve", "churn:1", "--port", str(free_port())],
        cwd=trust_project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # refused before any worker starts, so it returns at once
    assert served.returncode == 1
    assert "churn:1 needs trust to load" in served.stderr and "add --trust" in served.stderr

    exported = cli("export", "docker", "churn:1", str(trust_project.parent / "image"))
    assert exported.code == 1 and "add --trust" in exported.err


@pytest.mark.filterwarnings("ignore::UserWarning")  # the warning is tested above
def test_what_a_registrant_recorded_never_widens_what_loaders_load(trust_project: Path) -> None:
    train = frames()[0].fillna(0)  # no imputer: the function is the model's only unsafe type
    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    mloop.register_model(model.fit(train[["x1", "x2"]], train["label"]), "churn")
    # As an older mloop let a registrant write it: the types it "trusts", on the version.
    with sqlite3.connect(trust_project / ".mloop/mloop.db") as db:
        db.execute("UPDATE model_versions SET trusted_types = ?", (json.dumps(["_operator.neg"]),))
    assert Project.open().models.get("churn:1").trusted_types == ("_operator.neg",)
    with pytest.raises(NeedsTrust):
        mloop.load_model("churn:1")
    with pytest.raises(NeedsTrust):
        Project.open().models.load_predictor("churn:1")


def test_a_promotion_that_cannot_load_the_champion_says_which_and_how(
    trust_project: Path, cli
) -> None:
    with pytest.warns(UserWarning, match="needs trust"):
        mloop.register_model(custom_model(), "churn")
    assert cli("models", "alias", "churn:1", "champion").code == 0
    train, _ = frames()
    safe = make_pipeline(SimpleImputer(), HistGradientBoostingClassifier(max_iter=10))
    mloop.register_model(safe.fit(train[["x1", "x2"]], train["label"]), "churn")
    refused = cli("models", "promote", "churn:2")
    assert refused.code == 1
    assert "the champion churn:1 needs trust to load" in refused.err
    assert "add --trust" in refused.err and "improve the model" not in refused.err
    assert Project.open().models.get("churn:2").gates == ()  # nothing was measured
    done = cli("models", "promote", "churn:2", "--trust")
    assert done.code == 0, done.err
    assert Project.open().models.get("churn@champion").version == 2


@pytest.fixture
def served(trust_project: Path) -> Iterator[str]:
    assert run_mloop("run", "training", cwd=trust_project).code == 0
    port = free_port()
    log = trust_project / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*MLOOP, "serve", "churn:1", "--port", str(port)],
            cwd=trust_project,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert server.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 90, "the model server")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_server_serves_such_a_model_without_trust(served: str) -> None:
    body = {"dataframe_records": [{"x1": None, "x2": 1.5}, {"x1": -2.0, "x2": -1.0}]}
    answer = httpx.post(f"{served}/invocations", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [1, 0]


def test_the_exported_image_check_passes_for_such_a_model(trust_project: Path, cli) -> None:
    from tests.integration.test_export import parse_dockerfile

    assert run_mloop("run", "training", cwd=trust_project).code == 0
    context = trust_project.parent / "image"
    done = cli("export", "docker", "churn:1", str(context))
    assert done.code == 0, done.err
    dockerfile = parse_dockerfile(context / "Dockerfile")
    assert "--trust" not in dockerfile.entrypoint
    (verify,) = [step for step in dockerfile.runs if step[0] == "python"]
    checked = subprocess.run(
        [sys.executable, *verify[1:3], str(context / "model"), *verify[4:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # the Dockerfile's own check, run here on the context it wrote
    assert checked.returncode == 0, checked.stderr
    assert "verified churn:1" in checked.stdout
