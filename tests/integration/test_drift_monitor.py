"""Drift on a real project: a model registered from a run that read a dataset version, a real
PredictionLog of unchanged and of shifted traffic, and the verdicts `monitor status` prints."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import mloop
from mloop.domain.prediction import Window
from mloop.errors import InvalidInput, NotFound
from mloop.project import Project
from tests.conftest import CliResult

NAMES = ("age", "income", "plan", "trial")
PLANS = np.array(["basic", "plus", "pro"])


def frame(rng: np.random.Generator, n: int, shift: float = 0.0, pro: float = 0.2) -> pd.DataFrame:
    shares = [0.8 - pro, 0.2, pro]
    data = pd.DataFrame(
        {
            "age": rng.normal(40 + 10 * shift, 10, n),
            "income": rng.lognormal(10, 0.5, n),
            "plan": rng.choice(PLANS, n, p=shares),
            "trial": rng.random(n) < 0.3,
        }
    )
    data["spend"] = 0.002 * data.income + data.age + 20 * (data.plan == "pro") + rng.normal(0, 5, n)
    return data


@pytest.fixture
def trained(project: Path) -> Project:
    rng = np.random.default_rng(7)
    (project / "data").mkdir()
    frame(rng, 5000).to_csv(project / "data/train.csv", index=False)
    mloop.data.add("train", "data/train.csv")
    with mloop.start_run("fit"):
        data = mloop.data.get("train").to_pandas()
        encode = make_column_transformer(
            (OneHotEncoder(), ["plan", "trial"]), remainder="passthrough"
        )
        model = make_pipeline(encode, LinearRegression()).fit(data[list(NAMES)], data["spend"])
        mloop.register_model(model, "spend", input_example=data[list(NAMES)].head())
    return Project.open(project)


def serve(opened: Project, data: pd.DataFrame, start: float, model: str = "spend:1") -> None:
    """What a server does: one log, a record per answered request (10 rows each), closed."""
    loaded = opened.models.load_predictor(model)
    plog = opened.prediction_log(flush_seconds=3600.0, flush_requests=100)
    for i, first in enumerate(range(0, len(data), 10)):
        rows = data.iloc[first : first + 10]
        request = rows[list(NAMES)]
        answers = loaded.predict(request)
        plog.record("web", model, "stable", f"r{start}-{i}", request, answers, start + i, NAMES)
        plog.record("web", model, "shadow", f"r{start}-{i}", request, answers, start + i, NAMES)
    plog.close()
    assert plog.dropped == 0


def test_unchanged_traffic_is_quiet_and_shifted_traffic_is_flagged(trained: Project) -> None:
    rng = np.random.default_rng(8)
    now = time.time()
    serve(trained, frame(rng, 3000), now - 7200)  # two hours ago: like the training data
    serve(trained, frame(rng, 3000, shift=1.0, pro=0.6), now - 600)  # older customers, more pro
    monitor = trained.drift

    quiet = monitor.status("web", Window(until=now - 3600))
    assert (quiet.requests, quiet.rows, quiet.model) == (300, 3000, "spend:1")  # shadows left out
    assert quiet.reference == "train:1 data/train.csv"
    assert quiet.features.keys() == set(NAMES)  # the model's inputs, not its label
    assert quiet.features["age"].method == "wasserstein"
    assert quiet.features["plan"].method == "jensenshannon"
    assert quiet.features["trial"].method == "jensenshannon"  # booleans: true/false both sides
    assert quiet.drifted == [] and quiet.prediction is not None
    assert quiet.prediction.drifted is False and quiet.prediction.method == "wasserstein"
    assert any("summarised once" in note for note in quiet.notes)  # the first time only

    moved = monitor.status("web", Window(since=now - 3600))
    assert moved.drifted == ["age", "plan"] and moved.features["age"].score > 0.5
    assert moved.prediction is not None and moved.prediction.drifted
    assert not any("summarised once" in note for note in moved.notes)  # read from the cache
    plain = json.loads(json.dumps(moved.to_plain()))
    assert plain["features"]["age"]["drifted"] is True
    assert set(plain["features"]["income"]) >= {"method", "score", "threshold", "drifted"}

    small = monitor.status("web", Window(since=now - 3600, last=20))  # 200 rows: a test
    assert small.features["age"].method == "ks" and small.features["age"].drifted
    assert small.features["income"].method == "ks" and small.features["income"].score > 0.001


def test_true_false_answers_drift_as_classes(trained: Project) -> None:
    with mloop.start_run("classify"):  # big:1, a classifier from a run that read the same data
        data = mloop.data.get("train").to_pandas()
        encode = make_column_transformer(
            (OneHotEncoder(), ["plan", "trial"]), remainder="passthrough"
        )
        big = data["spend"] > data["spend"].median()
        model = make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(data[list(NAMES)], big)
        mloop.register_model(model, "big", input_example=data[list(NAMES)].head())
    rng = np.random.default_rng(12)
    now = time.time()
    serve(trained, frame(rng, 3000), now - 7200, "big:1")
    serve(trained, frame(rng, 3000, shift=1.0, pro=0.6), now - 600, "big:1")

    quiet = trained.drift.status("web", Window(until=now - 3600)).prediction
    assert quiet is not None and quiet.note is None
    assert (quiet.method, quiet.drifted) == ("jensenshannon", False)  # true/false: classes
    moved = trained.drift.status("web", Window(since=now - 3600)).prediction
    assert moved is not None and moved.method == "jensenshannon" and moved.drifted


def test_a_configured_reference_and_thresholds(trained: Project, project: Path) -> None:
    rng = np.random.default_rng(9)
    frame(rng, 4000, pro=0.6).to_csv(project / "data/recent.csv", index=False)
    mloop.data.add("recent", "data/recent.csv")
    (project / "mloop.yaml").write_text(
        "monitoring_reference: recent:1\n"
        "drift_thresholds: {income: 0.0, age: {method: psi, threshold: 0.5}}\n"
    )
    now = time.time()
    serve(trained, frame(rng, 2000, pro=0.6), now - 60)
    report = Project.open(project).drift.status("web", Window())
    assert report.reference == "recent:1 data/recent.csv"
    assert report.features["income"].threshold == 0.0 and report.features["income"].drifted
    age = report.features["age"]
    assert (age.method, age.threshold, age.drifted) == ("psi", 0.5, False)
    small = Project.open(project).drift.status("web", Window(last=20)).features  # 200 rows
    assert (small["income"].method, small["income"].threshold) == ("ks", 0.05)  # not 0.0
    assert (small["age"].method, small["age"].threshold) == ("psi", 0.5)  # its method is set


def test_bad_input_says_what_to_do(trained: Project, project: Path) -> None:
    rng = np.random.default_rng(10)
    now = time.time()
    stopped = frame(rng, 200)
    stopped["income"] = None  # a feature the clients stopped filling in
    serve_rows(trained, stopped, now - 600, NAMES)
    serve_rows(trained, frame(rng, 200), now - 60, ("age", "plan"))  # and then stopped sending
    with pytest.raises(NotFound, match="no request to endpoint 'web' was logged in until"):
        trained.drift.status("web", Window(until=now - 3600))  # said, not zeros
    nulls = trained.drift.status("web", Window(until=now - 300)).features["income"]
    assert (nulls.score, nulls.drifted, nulls.note) == (None, None, "every logged value is missing")
    absent = trained.drift.status("web", Window(since=now - 300)).features["income"]
    assert absent.score is None and absent.note == "missing from the logged requests of spend:1"

    (project / "notes.txt").write_text("no table here")
    mloop.data.add("notes", "notes.txt")
    (project / "mloop.yaml").write_text("monitoring_reference: notes:1\n")
    with pytest.raises(InvalidInput, match="has no profiled table") as caught:
        Project.open(project).drift.status("web", Window())
    assert "mloop data add NAME FILE" in (caught.value.hint or "")


def serve_rows(opened: Project, data: pd.DataFrame, at: float, names: tuple[str, ...]) -> None:
    plog = opened.prediction_log(flush_seconds=3600.0, flush_requests=100)
    request = data[list(names)]
    plog.record("web", "spend:1", "stable", f"m{at}", request, np.zeros(len(data)), at, names)
    plog.close()


def test_monitor_status_shows_which_features_moved(
    trained: Project, project: Path, cli: Callable[..., CliResult]
) -> None:
    rng = np.random.default_rng(9)
    serve(trained, frame(rng, 3000, shift=1.0, pro=0.6), time.time() - 60)
    done = cli("monitor", "status", "web", "--since", "10m", "--json")
    assert done.code == 0, done.err
    status = json.loads(done.out)
    assert status["requests"] == 300 and status["reference"] == "train:1 data/train.csv"
    drifted = sorted(name for name, found in status["features"].items() if found["drifted"])
    assert drifted == ["age", "plan"]
    assert {"method", "score", "threshold", "drifted"} <= set(status["features"]["income"])
    assert status["prediction"]["drifted"] is True
    assert status["accuracy"] is None  # no labels yet
    shown = cli("monitor", "status", "web", "--since", "10m")
    assert "drift against train:1 data/train.csv" in shown.out and "DRIFTED" in shown.out
    # no reference to compare with: the rest of the status still shows, and says why
    (project / "mloop.yaml").write_text(
        (project / "mloop.yaml").read_text() + "monitoring_reference: nosuch:1\n"
    )
    other = cli("monitor", "status", "web", "--since", "10m", "--json")
    assert other.code == 0, other.err
    plain = json.loads(other.out)
    assert plain["features"] is None and plain["requests"] == 300
    assert any(note.startswith("no drift:") for note in plain["notes"]), plain["notes"]
