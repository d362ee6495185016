"""Drift and accuracy trigger checks on a real project and a real prediction log: drift
injected fires naming what moved, unchanged traffic does not; accuracy under its bound with
enough labels fires, with too few it waits; the champion's numbers are the ones judged."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import mloop
from mloop.domain.feedback import Label
from mloop.domain.records import from_plain, to_plain
from mloop.domain.signal import SignalCheck
from mloop.domain.trigger import Trigger, parse_triggers
from mloop.errors import InvalidInput
from mloop.project import Project
from tests.conftest import CliResult
from tests.integration.test_drift_monitor import frame, serve, trained  # noqa: F401 - a fixture


def trigger(kind: str, **options: object) -> Trigger:
    return parse_triggers({"train": [{kind: options}]})["train"][0]


# drift --------------------------------------------------------------------------------------
def test_drift_injected_fires_naming_what_moved_and_unchanged_traffic_does_not(
    trained: Project,  # noqa: F811 - the fixture imported above
) -> None:
    rng = np.random.default_rng(31)
    now = time.time()
    serve(trained, frame(rng, 3000), now - 600)  # 300 requests, like the training data
    check = trained.signals.check_drift(trigger("drift", endpoint="web", min_requests=200))
    assert not check.fired, check.reason
    assert check.reason == "no drift of spend:1 over the window"
    assert check.numbers["requests"] == 300 and check.numbers["drifted"] == {}
    assert set(check.numbers["scores"]) == {"age", "income", "plan", "trial", "prediction"}

    serve(trained, frame(rng, 3000, shift=1.0, pro=0.6), now - 300)  # older, more pro
    moved = trained.signals.check_drift(trigger("drift", endpoint="web", min_requests=200))
    assert moved.fired, moved.reason
    assert set(moved.numbers["drifted"]) == {"age", "plan", "prediction"}
    age = moved.numbers["drifted"]["age"]
    assert age["method"] == "wasserstein" and age["score"] > age["threshold"]
    assert moved.reason.startswith("spend:1 drifted: age (wasserstein ")
    assert moved.numbers["reference"] == "train:1 data/train.csv"
    # the numbers are plain values: what an Event's details and --json carry
    assert from_plain(SignalCheck, json.loads(json.dumps(to_plain(moved)))) == moved

    # restricted to an input that did not move: quiet; to one that did: fires
    income = trigger("drift", endpoint="web", min_requests=200, features=["income"])
    assert not trained.signals.check_drift(income).fired
    plan = trigger("drift", endpoint="web", min_requests=200, features=["plan"])
    assert set(trained.signals.check_drift(plan).numbers["drifted"]) == {"plan"}
    typo = trained.signals.check_drift(trigger("drift", endpoint="web", features=["agee"]))
    assert not typo.fired and typo.reason.startswith("agee not among what is measured")


def test_drift_waits_for_enough_requests_and_says_why(
    trained: Project,  # noqa: F811 - the fixture imported above
) -> None:
    rng = np.random.default_rng(32)
    serve(trained, frame(rng, 3000, shift=1.0), time.time() - 600)
    few = trained.signals.check_drift(trigger("drift", endpoint="web"))  # default 500
    assert not few.fired
    assert few.reason == (
        "300 requests of spend:1 in the window, fewer than min_requests 500: not judged yet"
    )
    # an endpoint with nothing logged in the window: not fired, not an error
    quiet = trained.signals.check_drift(trigger("drift", endpoint="other"))
    assert not quiet.fired and "other" in quiet.reason and quiet.numbers["requests"] == 0
    # traffic older than the window does not count
    old = trained.signals.check_drift(trigger("drift", endpoint="web", window="5m"))
    assert not old.fired and old.numbers["requests"] == 0


def test_drift_without_a_reference_says_so_with_the_hint(project: Path) -> None:
    data = frame(np.random.default_rng(33), 600)
    names = ["age", "income"]
    model = LogisticRegression().fit(data[names], data.spend > data.spend.median())
    mloop.register_model(model, "bare", input_example=data[names].head())  # no run, no dataset
    opened = Project.open(project)
    plog = opened.prediction_log(flush_seconds=3600.0, flush_requests=100)
    loaded = opened.models.load_predictor("bare:1")
    for i in range(60):
        rows = data.iloc[i * 10 : i * 10 + 10][names]
        plog.record("web", "bare:1", "stable", f"b{i}", rows, loaded.predict(rows), time.time())
    plog.close()
    check = opened.signals.check_drift(trigger("drift", endpoint="web", min_requests=10))
    assert not check.fired
    assert check.reason.startswith("no drift: bare:1 names no training dataset version")


def test_drift_options_are_checked_naming_the_key() -> None:
    with pytest.raises(InvalidInput, match=r"triggers.train\[0\].drift: min_requests must"):
        trigger("drift", endpoint="web", min_requests=0)
    with pytest.raises(InvalidInput, match="features must be a list of input names"):
        trigger("drift", endpoint="web", features=[1])
    assert trigger("drift", endpoint="web", features="age").spec.features == ("age",)


# accuracy -----------------------------------------------------------------------------------
@pytest.fixture
def classifier(project: Path) -> Project:
    """churn:1 and churn:2 (the same classifier), trained from the dataset `train`."""
    rng = np.random.default_rng(41)
    data = pd.DataFrame({"x": rng.normal(0, 1, 2000), "y": rng.normal(0, 1, 2000)})
    data["churned"] = (data.x + data.y) > 0
    data.to_csv(project / "train.csv", index=False)
    mloop.data.add("train", "train.csv")
    with mloop.start_run("fit"):
        model = LogisticRegression().fit(data[["x", "y"]], data.churned)
        mloop.register_model(model, "churn", input_example=data[["x", "y"]].head())
        mloop.register_model(model, "churn", input_example=data[["x", "y"]].head())
    return Project.open(project)


def answer(opened: Project, model: str, role: str, n: int, wrong: float, labelled: int) -> None:
    """`n` one-row requests answered by `model`; the first `labelled` get a label, of which
    the share `wrong` is not what the model said."""
    rng = np.random.default_rng(zlib.crc32(f"{model}{role}{n}".encode()))
    rows = pd.DataFrame({"x": rng.normal(0, 1, n), "y": rng.normal(0, 1, n)})
    loaded = opened.models.load_predictor(model)
    plog = opened.prediction_log(flush_seconds=3600.0, flush_requests=1000)
    now = time.time()
    labels = []
    for i in range(n):
        request = rows.iloc[i : i + 1]
        said = loaded.predict(request)
        rid = f"{model}-{role}-{i}"
        plog.record("web", model, role, rid, request, said, now - 60 + i / 100)
        if i < labelled:
            truth = bool(np.asarray(said)[0])
            labels.append(Label(rid, (not truth) if i < wrong * labelled else truth, now, "t"))
    plog.close()
    opened.metadata.feedback.add("web", labels)


def test_accuracy_under_the_bound_with_enough_labels_fires(classifier: Project) -> None:
    answer(classifier, "churn:1", "stable", 300, wrong=0.4, labelled=250)
    check = classifier.signals.check_accuracy(
        trigger("accuracy", endpoint="web", below=0.8, min_labels=200)
    )
    assert check.fired, check.reason
    assert check.numbers["labelled"] == 250 and check.numbers["value"] == pytest.approx(0.6)
    assert check.reason == ("accuracy of churn:1 is 0.6 over 250 labelled predictions, below 0.8")
    above = classifier.signals.check_accuracy(
        trigger("accuracy", endpoint="web", below=0.5, min_labels=200)
    )
    assert not above.fired and "not below 0.5" in above.reason


def test_accuracy_with_too_few_labels_waits_saying_how_many(classifier: Project) -> None:
    answer(classifier, "churn:1", "stable", 300, wrong=0.9, labelled=120)
    check = classifier.signals.check_accuracy(
        trigger("accuracy", endpoint="web", below=0.8, min_labels=200)
    )
    assert not check.fired
    assert check.reason == (
        "120 labelled predictions of churn:1 in the window, fewer than min_labels 200"
    )
    unknown = classifier.signals.check_accuracy(
        trigger("accuracy", endpoint="web", metric="rmse", above=1.0, min_labels=10)
    )
    assert not unknown.fired and unknown.reason.startswith("churn:1 has no rmse from feedback")


def test_an_error_metric_fires_above_its_bound(project: Path) -> None:
    """rmse is an error: `above: 1.5` fires when the champion's rmse from feedback is over it
    (2.0 here: every label 2 away from what it said), and not with `above: 2.5`."""
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"x": np.arange(50.0)})
    mloop.register_model(LinearRegression().fit(x, 2 * x.x), "price", input_example=x.head())
    opened = Project.open(project)
    loaded = opened.models.load_predictor("price:1")
    plog = opened.prediction_log(flush_seconds=3600.0, flush_requests=1000)
    now = time.time()
    labels = []
    for i in range(60):
        request = x.iloc[i % 50 : i % 50 + 1]
        out = loaded.predict(request)
        said = float(np.asarray(out)[0])
        plog.record("web", "price:1", "stable", f"r{i}", request, out, now - 60 + i / 100)
        labels.append(Label(f"r{i}", said + (2.0 if i % 2 else -2.0), now, "t"))
    plog.close()
    opened.metadata.feedback.add("web", labels)
    fired = opened.signals.check_accuracy(
        trigger("accuracy", endpoint="web", metric="rmse", above=1.5, min_labels=50)
    )
    assert fired.fired, fired.reason
    assert fired.numbers["value"] == pytest.approx(2.0) and fired.numbers["above"] == 1.5
    assert fired.reason == "rmse of price:1 is 2 over 60 labelled predictions, above 1.5"
    held = opened.signals.check_accuracy(
        trigger("accuracy", endpoint="web", metric="rmse", above=2.5, min_labels=50)
    )
    assert not held.fired and held.reason.endswith("not above 2.5")


def test_accuracy_judges_the_champion_not_a_canary(classifier: Project) -> None:
    answer(classifier, "churn:1", "stable", 300, wrong=0.0, labelled=250)  # right every time
    answer(classifier, "churn:2", "canary", 100, wrong=1.0, labelled=100)  # wrong every time
    check = classifier.signals.check_accuracy(
        trigger("accuracy", endpoint="web", below=0.8, min_labels=200)
    )
    assert not check.fired, check.reason
    assert check.numbers["model"] == "churn:1" and check.numbers["value"] == 1.0


def test_triggers_check_shows_drift_and_accuracy_states(
    classifier: Project, project: Path, cli: Callable[..., CliResult]
) -> None:
    answer(classifier, "churn:1", "stable", 300, wrong=0.4, labelled=250)
    with (project / "mloop.yaml").open("a") as fh:
        fh.write(
            "pipelines: {train: 'pipeline:train'}\n"
            "triggers:\n  train:\n"
            "    - accuracy: {endpoint: web, below: 0.8, min_labels: 200}\n"
            "    - drift: {endpoint: web}\n"
        )
    shown = cli("triggers", "check")
    assert shown.code == 0, shown.err
    assert "fires: accuracy of churn:1 is 0.6 over 250 labelled predictions" in shown.out
    assert "waits: 300 requests of churn:1 in the window, fewer than" in shown.out
    as_json = json.loads(cli("triggers", "check", "--json").out)
    assert [c["signal"]["fired"] for c in as_json] == [True, False]
    assert as_json[0]["signal"]["numbers"]["labelled"] == 250


def test_after_a_promotion_the_new_champion_is_judged_not_the_window_s_majority(
    classifier: Project, cli: Callable[..., CliResult]
) -> None:
    """The window still holds mostly churn:1's answers (it served until churn:2 was deployed):
    its poor accuracy is not the model now serving, so it must not retrain again."""
    assert cli("deploy", "web", "churn:2").code == 0
    answer(classifier, "churn:1", "stable", 300, wrong=0.4, labelled=250)
    answer(classifier, "churn:2", "stable", 80, wrong=0.0, labelled=80)
    check = classifier.signals.check_accuracy(
        trigger("accuracy", endpoint="web", below=0.8, min_labels=50)
    )
    assert check.numbers["model"] == "churn:2", check.numbers
    assert not check.fired and check.numbers["value"] == 1.0
