"""Labels as an application and a labelling job send them: posted to a real `mloop serve
--endpoint` (`POST /feedback`, beside A/B outcomes) and stored from a CSV with `mloop
feedback`, then joined to what the servers logged: accuracy per version and bias per group,
checked against scikit-learn on the same answers; a second label replaces the first, labels for
unknown ids are counted, a bad item refuses its batch. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn import metrics

from mloop.domain.prediction import Window
from mloop.project import Project
from mloop.services.monitoring import accuracy, bias
from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import models, serving  # noqa: F401 - a fixture


def _send(client: httpx.Client, rows: np.ndarray) -> dict[str, tuple[str, bool]]:
    """Each row as its own request with an id of ours: id -> (version, answer)."""
    answers = {}
    for i, row in enumerate(rows):
        rid = f"q-{i}"
        got = client.post(
            "/invocations", json={"inputs": [row.tolist()]}, headers={"mloop-request-id": rid}
        )
        assert got.status_code == 200, got.text
        assert got.headers["mloop-request-id"] == rid
        answers[rid] = (got.headers["mloop-model"], got.json()["predictions"][0])
    return answers


def test_labels_posted_and_imported_give_accuracy_and_bias_as_scikit_learn(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    deployed = cli("deploy", "web", "churn:1", "churn:2", "--strategy", "ab", "--weights", "50,50")
    assert deployed.code == 0, deployed.err
    (models / "mloop.yaml").write_text((models / "mloop.yaml").read_text() + "bias_columns: [f2]\n")
    rng = np.random.default_rng(9)
    rows = rng.normal(size=(120, 3))
    rows[:, 2] = rng.integers(0, 2, 120)  # the sensitive column: two groups
    truth = {f"q-{i}": bool(rng.integers(0, 2)) for i in range(120)}
    started = time.time()
    with serving(models) as url, httpx.Client(base_url=url, timeout=30) as client:
        answers = _send(client, rows)
        # labels for the first 100, with an A/B outcome in the same items for half of them
        items: list[dict[str, Any]] = [
            {"request_id": f"q-{i}", "label": truth[f"q-{i}"]} | ({"outcome": 1} if i % 2 else {})
            for i in range(100)
        ]
        posted = client.post("/feedback", json={"feedback": items})
        assert posted.status_code == 200, posted.text
        answer = posted.json()
        assert answer["accepted"] == 100 and answer["labels"] == {"stored": 100, "replaced": 0}
        assert sum(answer["versions"].values()) == 50  # the outcomes, routed by request id
        # a corrected label replaces the first and says so
        for i in range(10):
            truth[f"q-{i}"] = not truth[f"q-{i}"]
        fixed = [{"request_id": f"q-{i}", "label": truth[f"q-{i}"]} for i in range(10)]
        again = client.post("/feedback", json=fixed)
        assert again.status_code == 200, again.text
        assert again.json() == {
            "accepted": 10,
            "versions": {},
            "labels": {"stored": 10, "replaced": 10},
        }
        # one bad item refuses the whole batch, naming it: nothing of it is stored
        bad = [{"request_id": "q-100", "label": True}, {"request_id": "q-101", "label": {"x": 1}}]
        refused = client.post("/feedback", json=bad)
        assert refused.status_code == 400
        assert "feedback item 1 has label {'x': 1}" in refused.json()["error"]["message"]
        neither = client.post("/feedback", json=[{"request_id": "q-1"}])
        assert (
            "feedback item 0 has neither an outcome nor a label"
            in neither.json()["error"]["message"]
        )
    # the server stopped: its log is stored. A labelling job's file: the last 20, three ids
    # nobody logged, and five corrections
    lines = ["id,truth"] + [f"q-{i},{truth[f'q-{i}']}" for i in range(100, 120)]
    lines += [f"ghost-{i},True" for i in range(3)]
    for i in range(20, 25):
        truth[f"q-{i}"] = not truth[f"q-{i}"]
        lines.append(f"q-{i},{truth[f'q-{i}']}")
    (models / "labels.csv").write_text("\n".join(lines) + "\n")
    imported = cli(
        "feedback", "web", "labels.csv", "--id-column", "id", "--label-column", "truth", "--json"
    )
    assert imported.code == 0, imported.err
    assert json.loads(imported.out) == {
        "endpoint": "web",
        "file": "labels.csv",
        "stored": 28,
        "replaced": 5,
        "unknown": 3,
    }
    said = cli("feedback", "web", "labels.csv", "--id-column", "id", "--label-column", "truth")
    assert "stored 28 labels for endpoint 'web' from labels.csv (28 replaced" in said.out
    assert "3 of them name a request the prediction log does not hold" in said.err

    project = Project.open(models)
    try:
        window = Window(since=started - 1)
        found = project.predictions.read("web", window)
        joined = accuracy.join(project.metadata, project.artifacts, "web", window, found.table)
        report = accuracy.measure(joined, window)
        columns = bias.monitored_columns(
            project.settings.bias_columns, project.settings.models, ["churn:1"]
        )
        fairness = bias.measure(joined, columns, project.settings.models)
    finally:
        project.close()

    assert report.task == "classification" and report.positive is True
    assert report.requests == 120 and report.labelled == 120 and report.unknown == 3
    for line in report.versions:
        ids = [rid for rid, (model, _) in answers.items() if model == line.model]
        expected = np.array([truth[r] for r in ids])
        given = np.array([answers[r][1] for r in ids])
        assert line.labelled == len(ids) > 0
        assert line.metrics is not None
        assert line.metrics["accuracy"] == pytest.approx(metrics.accuracy_score(expected, given))
        assert line.metrics["f1"] == pytest.approx(
            metrics.f1_score(expected, given, zero_division=0)
        )
        assert line.metrics["recall"] == pytest.approx(
            metrics.recall_score(expected, given, zero_division=0)
        )
    assert {line.model for line in report.versions} == {"churn:1", "churn:2"}

    assert columns == ["f2"] and fairness is not None
    assert {c.model for c in fairness.columns} == {"churn:1", "churn:2"}
    for column in fairness.columns:
        assert {g.value for g in column.groups} == {"0", "1"}
        ids = [rid for rid, (model, _) in answers.items() if model == column.model]
        groups = {rid: float(rows[int(rid[2:]), 2]) for rid in ids}
        rates = {}
        for group in column.groups:
            inside = [r for r in ids if groups[r] == float(group.value)]  # a group is text
            assert group.requests == len(inside) > 0
            given = np.array([answers[r][1] for r in inside])
            expected = np.array([truth[r] for r in inside])
            rates[group.value] = float(np.mean(given))
            assert group.selection_rate == pytest.approx(rates[group.value])
            assert group.accuracy == pytest.approx(metrics.accuracy_score(expected, given))
            assert group.true_positive_rate == pytest.approx(metrics.recall_score(expected, given))
        parity = column.gaps[0]
        assert parity.measure == "demographic_parity"
        assert parity.difference == pytest.approx(max(rates.values()) - min(rates.values()))


def test_a_server_without_a_prediction_log_refuses_labels_and_keeps_counting_outcomes(
    models: Path,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOOP_PREDICTIONS_SAMPLE_RATE", "0")
    with serving(models) as url, httpx.Client(base_url=url, timeout=30) as client:
        refused = client.post("/feedback", json=[{"request_id": "q-1", "label": 1, "outcome": 1}])
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert "keeps no prediction log on this server" in error["message"]
        assert "mloop feedback ENDPOINT FILE" in error["hint"]
        counted = client.post("/feedback", json=[{"request_id": "q-1", "outcome": 1}])
        assert counted.status_code == 200
        assert counted.json() == {"accepted": 1, "versions": {"churn:1": 1}}
