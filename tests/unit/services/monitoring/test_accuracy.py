"""Accuracy and bias from labels joined to a real prediction log (SQLite, an artifact folder,
`PredictionLog` writing the Parquet files): per version and role, over time, the canary gate's
counts, unknown ids, a replaced label, wrong label types; every number against scikit-learn's
on the same arrays."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from mloop.domain.analysis import Verdict, VersionStats, analyse
from mloop.domain.endpoint import CanaryPolicy
from mloop.domain.feedback import Label
from mloop.domain.gate import BiasGate
from mloop.domain.policy import ModelPolicy
from mloop.domain.prediction import Window
from mloop.errors import InvalidInput
from mloop.services.monitoring import accuracy, bias
from mloop.services.monitoring.labels import read_labels, unlogged
from mloop.services.predictions.log import PredictionLog
from mloop.services.predictions.reader import PredictionReader
from mloop.store import open_artifact_store, open_metadata_store
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.metadata.protocol import MetadataStore

T0 = 1_790_000_000.0
SINCE_T0 = Window(since=T0)
RNG = np.random.default_rng(3)


@dataclass
class Logged:
    metadata: MetadataStore
    artifacts: ArtifactStore
    answers: dict[tuple[str, str], int]  # (request id, role) -> prediction
    genders: dict[str, str]
    labels: dict[str, int]


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[Logged]:
    """300 requests one second apart: churn:1 (stable) answers r000-r199, churn:2 (canary)
    r200-r299, and churn:3 shadows the stable's; 230 of them labelled."""
    metadata = open_metadata_store(f"sqlite:///{tmp_path / 'mloop.db'}")
    artifacts = open_artifact_store(str(tmp_path / "objects"))
    plog = PredictionLog(metadata, artifacts, flush_seconds=3600.0, flush_requests=10**9)
    answers, genders = {}, {}
    for i in range(300):
        rid = f"r{i:03}"
        genders[rid] = str(RNG.choice(["f", "m"]))
        frame = pd.DataFrame({"gender": [genders[rid]], "x": [float(i)]})
        served = (
            [("churn:1", "stable"), ("churn:3", "shadow")] if i < 200 else [("churn:2", "canary")]
        )
        for model, role in served:
            answer = int(RNG.integers(0, 2))
            answers[rid, role] = answer
            plog.record("web", model, role, rid, frame, np.array([answer]), T0 + i)
        if i % 50 == 49:
            plog.flush()
    plog.close()
    labelled = [f"r{i:03}" for i in range(300) if i % 4 != 3]  # 225 of them
    labels = {rid: int(RNG.integers(0, 2)) for rid in labelled}
    metadata.feedback.add("web", [Label(rid, v, T0 + 400, "test") for rid, v in labels.items()])
    yield Logged(metadata, artifacts, answers, genders, labels)
    metadata.close()


def _report(
    logged: Logged, window: Window = SINCE_T0, bucket: float = 60.0
) -> accuracy.AccuracyReport:
    return accuracy.report(logged.metadata, logged.artifacts, "web", window, bucket)


def _arrays(logged: Logged, role: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ids = [r for r in ids if r in logged.labels and (r, role) in logged.answers]
    return (
        np.array([logged.labels[r] for r in ids]),
        np.array([logged.answers[r, role] for r in ids]),
    )


def _check(found: dict[str, float | None] | None, truth: np.ndarray, predicted: np.ndarray) -> None:
    assert found is not None
    assert found["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert found["precision"] == pytest.approx(
        metrics.precision_score(truth, predicted, zero_division=0)
    )
    assert found["recall"] == pytest.approx(metrics.recall_score(truth, predicted, zero_division=0))
    assert found["f1"] == pytest.approx(metrics.f1_score(truth, predicted, zero_division=0))
    assert found["f1_macro"] == pytest.approx(metrics.f1_score(truth, predicted, average="macro"))


def test_accuracy_per_version_and_role_is_scikit_learns(logged: Logged) -> None:
    report = _report(logged)
    ids = [f"r{i:03}" for i in range(300)]

    assert report.task == "classification" and report.positive == 1
    assert report.requests == 300  # the shadow's copies are not requests
    assert report.labelled == 225 and report.unknown == 0
    by_version = {(v.model, v.role): v for v in report.versions}
    assert set(by_version) == {("churn:1", "stable"), ("churn:2", "canary"), ("churn:3", "shadow")}
    _check(by_version["churn:1", "stable"].metrics, *_arrays(logged, "stable", ids))
    _check(by_version["churn:2", "canary"].metrics, *_arrays(logged, "canary", ids))
    _check(by_version["churn:3", "shadow"].metrics, *_arrays(logged, "shadow", ids))
    assert by_version["churn:3", "shadow"].labelled == 150
    served = [
        np.concatenate(p)
        for p in zip(_arrays(logged, "stable", ids), _arrays(logged, "canary", ids), strict=True)
    ]
    _check(report.metrics, *served)  # overall: the answers clients were given
    assert report.status() == report.plain() and report.plain()["metrics"]["roc_auc"] is None
    assert accuracy.NO_SCORES in report.notes


def test_accuracy_over_time_is_measured_per_bucket(logged: Logged) -> None:
    report = _report(logged, bucket=60.0)
    stable = [b for b in report.over_time if b.role == "stable"]

    assert [b.start for b in stable] == [T0 - T0 % 60 + 60 * k for k in range(len(stable))]
    for line in stable:
        assert line.start is not None
        ids = [f"r{i:03}" for i in range(200) if line.start <= T0 + i < line.start + 60]
        truth, predicted = _arrays(logged, "stable", ids)
        assert line.labelled == len(truth)
        assert line.metrics is not None
        assert line.metrics["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert sum(b.labelled for b in stable) == 150


def test_a_second_label_replaces_the_first_in_the_numbers(logged: Logged) -> None:
    flipped = {rid: 1 - value for rid, value in list(logged.labels.items())[:40]}
    stored = logged.metadata.feedback.add(
        "web", [Label(r, v, T0 + 500, "fix") for r, v in flipped.items()]
    )
    logged.labels.update(flipped)

    assert stored.replaced == 40
    report = _report(logged)
    stable = next(v for v in report.versions if v.role == "stable")
    _check(stable.metrics, *_arrays(logged, "stable", [f"r{i:03}" for i in range(200)]))


def test_labels_for_requests_never_logged_are_counted_as_unknown(logged: Logged) -> None:
    ghosts = [Label(f"ghost-{i}", 1, T0 + 450, "test") for i in range(7)]
    logged.metadata.feedback.add("web", [*ghosts, Label("r000", 0, T0 + 450, "test", row=5)])
    report = _report(logged)

    assert report.unknown == 8  # 7 ids never logged, and a row r000 never had
    assert report.labelled == 225
    keys = {("ghost-1", 0), ("r010", 0), ("r299", 0)}
    assert unlogged(logged.metadata, logged.artifacts, "web", keys) == {("ghost-1", 0)}


def test_a_reused_request_id_is_named(logged: Logged, tmp_path: Path) -> None:
    plog = PredictionLog(logged.metadata, logged.artifacts, flush_seconds=3600.0)
    frame = pd.DataFrame({"gender": ["f"], "x": [1.0]})
    plog.record("web", "churn:1", "stable", "r000", frame, np.array([1]), T0 + 300)
    plog.close()
    report = _report(logged)

    assert report.labelled == 226  # r000's label counts for both of its answers
    assert "1 labelled request ids were answered more than once" in report.notes[-1]


def test_a_window_without_labels_has_no_accuracy(logged: Logged) -> None:
    report = _report(logged, Window(since=T0 + 3, until=T0 + 3))  # r003: not labelled

    assert report.labelled == 0 and report.metrics is None and report.status() is None
    assert "has a label yet" in report.notes[-1]
    assert accuracy.NO_SCORES not in report.notes  # no ROC AUC to miss without labels


def test_the_canary_gate_gets_labelled_and_correct_counts_per_version(logged: Logged) -> None:
    stats = accuracy.labelled_stats(logged.metadata, logged.artifacts, "web", T0 + 100, T0 + 249)

    for model, role, ids in (
        ("churn:1", "stable", range(100, 200)),
        ("churn:2", "canary", range(200, 250)),
    ):
        truth, predicted = _arrays(logged, role, [f"r{i:03}" for i in ids])
        assert stats[model].labelled == len(truth)
        assert stats[model].correct == int((truth == predicted).sum())
        assert stats[model].requests == 0  # the rest comes from the servers' reports
    assert accuracy.labelled_stats(logged.metadata, logged.artifacts, "web", T0 + 10**6, None) == {}
    only = accuracy.labelled_stats(
        logged.metadata, logged.artifacts, "web", None, None, ["churn:2"]
    )
    assert set(only) == {"churn:2"}


def test_the_counts_decide_the_canarys_accuracy_gate(logged: Logged) -> None:
    """As the rollout will: the servers' reported stats plus the labelled counts, analysed."""
    found = accuracy.labelled_stats(logged.metadata, logged.artifacts, "web", T0, None)
    served = VersionStats.measured([0.01] * 200)
    canary, stable = served + found["churn:2"], served + found["churn:1"]
    accurate = canary.accuracy or 0.0
    strict = CanaryPolicy(accuracy_margin=(stable.accuracy or 0.0) - accurate - 0.01, min_labels=50)
    lenient = CanaryPolicy(accuracy_margin=1.0, min_labels=50)

    gate = {g.gate: g for g in analyse(strict, canary, stable).gates}["accuracy"]
    assert gate.verdict is Verdict.FAIL and gate.observed == pytest.approx(accurate)
    assert {g.gate: g for g in analyse(lenient, canary, stable).gates}[
        "accuracy"
    ].verdict is Verdict.PASS
    starved = CanaryPolicy(accuracy_margin=1.0, min_labels=found["churn:2"].labelled + 1)
    assert {g.gate: g for g in analyse(starved, canary, stable).gates}[
        "accuracy"
    ].verdict is Verdict.NO_DATA


def test_labels_of_the_wrong_type_are_refused_naming_the_endpoint(logged: Logged) -> None:
    logged.metadata.feedback.add("web", [Label("r001", "churned", T0 + 600, "test")])

    with pytest.raises(
        InvalidInput, match="labels of endpoint 'web' hold text, but its model answers numbers"
    ):
        _report(logged)


def test_bias_per_group_uses_the_model_gates_bounds(logged: Logged) -> None:
    gate = BiasGate("demographic_parity", "gender", "<=", 0.05)
    policies = {"churn": ModelPolicy(gates=(gate,), holdout="h", label="y")}
    window = Window(since=T0)
    found = PredictionReader(logged.metadata, logged.artifacts).read("web", window)
    joined = accuracy.join(logged.metadata, logged.artifacts, "web", window, found.table)
    columns = bias.monitored_columns(["age"], policies, ["churn:1"])
    report = bias.measure(joined, columns, policies)

    assert columns == ["age", "gender"]
    assert report is not None
    assert "column 'age' is not among the logged inputs" in report.notes[0]
    stable = next(c for c in report.columns if c.role == "stable")
    ids = [f"r{i:03}" for i in range(200)]
    groups = np.array([logged.genders[r] for r in ids])
    predicted = np.array([logged.answers[r, "stable"] for r in ids])
    rates = {}
    for group in stable.groups:
        inside = groups == group.value
        rates[group.value] = np.mean(predicted[inside] == 1)
        assert group.requests == inside.sum()
        assert group.selection_rate == pytest.approx(rates[group.value])
        truth, answered = _arrays(
            logged, "stable", [r for r in ids if logged.genders[r] == group.value]
        )
        assert group.labelled == len(truth)
        assert group.accuracy == pytest.approx(metrics.accuracy_score(truth, answered))
        assert group.true_positive_rate == pytest.approx(metrics.recall_score(truth, answered))
    parity, opportunity = stable.gaps
    assert parity.difference == pytest.approx(abs(rates["f"] - rates["m"]))
    assert parity.bound == "<= 0.05" and parity.within == (parity.difference <= 0.05)
    tprs = [g.true_positive_rate for g in stable.groups]
    assert opportunity.difference == pytest.approx(max(tprs) - min(tprs))
    assert opportunity.bound is None and opportunity.within is None  # no gate on it: not judged
    assert bias.measure(joined, [], policies) is None


def test_monitor_status_gets_accuracy_and_bias_in_one_call(logged: Logged) -> None:
    window = Window(since=T0)
    found = PredictionReader(logged.metadata, logged.artifacts).read("web", window).table
    args = (logged.metadata, logged.artifacts, "web", window, found)
    numbers = bias.from_feedback(*args, ["gender"], {})

    assert numbers.accuracy == _report(logged).status()
    assert numbers.bias is not None
    assert [c["column"] for c in numbers.bias["columns"]] == ["gender"] * 3  # per version
    assert numbers.bias["columns"][0]["demographic_parity"]["bound"] is None  # no gate
    assert bias.from_feedback(*args, [], {}).bias is None  # no column: no bias
    logged.metadata.feedback.add("web", [Label("r001", "churned", T0 + 600, "test")])
    spoiled = bias.from_feedback(*args, ["gender"], {})
    assert spoiled.accuracy is None and spoiled.bias is None
    assert "hold text, but its model answers numbers" in spoiled.notes[0]


def test_regression_gives_mae_and_rmse(tmp_path: Path) -> None:
    metadata = open_metadata_store(f"sqlite:///{tmp_path / 'mloop.db'}")
    artifacts = open_artifact_store(str(tmp_path / "objects"))
    plog = PredictionLog(metadata, artifacts, flush_seconds=3600.0, flush_requests=10**9)
    predicted = RNG.normal(size=50) * 100
    for i, value in enumerate(predicted):
        plog.record(
            "price",
            "house:1",
            "stable",
            f"q{i}",
            np.array([[1.0]]),
            np.array([value]),
            T0 + i,
            ("x",),
        )
    plog.close()
    truth = RNG.normal(size=50) * 100
    metadata.feedback.add(
        "price", [Label(f"q{i}", float(v), T0 + 99, "t") for i, v in enumerate(truth)]
    )
    report = accuracy.report(metadata, artifacts, "price", Window())
    metadata.close()

    assert report.task == "regression" and report.positive is None
    assert report.metrics is not None
    assert report.metrics["mae"] == pytest.approx(metrics.mean_absolute_error(truth, predicted))
    assert report.metrics["rmse"] == pytest.approx(
        np.sqrt(metrics.mean_squared_error(truth, predicted))
    )


def test_a_label_file_is_checked_whole(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    good.write_text("id,truth,n\norder-1,yes,0\n17,no,2\n")
    labels = read_labels(good, "id", "truth", "n", at=5.0)
    assert labels == [
        Label("order-1", "yes", 5.0, "labels.csv"),
        Label("17", "no", 5.0, "labels.csv", 2),
    ]

    with pytest.raises(InvalidInput, match="has no column 'label' \\(it has: id, truth, n\\)"):
        read_labels(good, "id", "label")
    (tmp_path / "gap.csv").write_text("id,truth\na,1\nb,\n")
    with pytest.raises(InvalidInput, match=r"gap\.csv row 2 has no label"):
        read_labels(tmp_path / "gap.csv", "id", "truth")
    with pytest.raises(InvalidInput, match="from its suffix"):
        read_labels(tmp_path / "labels.xlsx", "id", "truth")
