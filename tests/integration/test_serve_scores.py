"""Class scores on a real `mloop serve --endpoint`: the log holds each answer's `predict_proba`
(the shadow's too, from its own model) while the answers stay what `predict` says; labels posted
to the server give ROC AUC per version in `mloop monitor status --json`, the server's gauges and
the HTML report, equal to scikit-learn's on the same labels and the fitted models' scores; with
`predictions_scores: false` nothing is scored and ROC AUC is null with a note. On SQLite and
PostgreSQL, with real server processes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn import metrics

import mloop
from mloop.project import Project
from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import models, serving  # noqa: F401 - a fixture
from tests.integration.test_serving import metric
from tests.servers import wait_for

ROWS = np.random.default_rng(21).normal(size=(80, 3))


def _traffic(url: str, shadow: bool) -> dict[str, bool]:
    """Each row as its own request, then a label per request posted to the same server."""
    rng = np.random.default_rng(4)
    truth = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, row in enumerate(ROWS):
            rid = f"q-{i}"
            got = client.post(
                "/invocations", json={"inputs": [row.tolist()]}, headers={"mloop-request-id": rid}
            )
            assert got.status_code == 200, got.text
            p = 1 / (1 + np.exp(-2 * row[0]))  # labels that follow the first feature, noisily
            truth[rid] = bool(rng.random() < p)
        items = [{"request_id": r, "label": v} for r, v in truth.items()]
        posted = client.post("/feedback", json={"feedback": items})
        assert posted.status_code == 200, posted.text
        if shadow:
            copies = lambda: metric(url, "mloop_shadow_requests_total", model="churn:2")  # noqa: E731
            wait_for(lambda: copies() == len(ROWS), 30, "the shadow's copies")
    return truth


def test_the_log_holds_each_answers_scores_and_status_gives_roc_auc_as_scikit_learn(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    deployed = cli("deploy", "web", "churn:2", "--strategy", "shadow", "--fraction", "1.0")
    assert deployed.code == 0, deployed.err
    project = Project.open(models)
    fitted = {ref: project.models.load(ref) for ref in ("churn:1", "churn:2")}
    project.close()
    with serving(models) as url:
        truth = _traffic(url, shadow=True)
        answers = httpx.post(url + "/invocations", json={"inputs": ROWS.tolist()}).json()
    # the answers are `predict`'s, not derived from the scores
    assert answers["predictions"] == fitted["churn:1"].predict(ROWS).tolist()

    done = cli("monitor", "export", "web", "--since", "1h", "-o", "log.parquet")
    assert done.code == 0, done.err
    table = pq.read_table(models / "log.parquet")
    assert {"score.false", "score.true"} <= set(table.column_names)
    rows = [r for r in table.to_pylist() if r["request_id"].startswith("q-")]
    for role, ref in (("stable", "churn:1"), ("shadow", "churn:2")):
        mine = sorted(
            (r for r in rows if r["role"] == role), key=lambda r: int(r["request_id"][2:])
        )
        assert [r["model"] for r in mine] == [ref] * len(ROWS)
        logged = np.array([[r["score.false"], r["score.true"]] for r in mine])
        np.testing.assert_allclose(logged, fitted[ref].predict_proba(ROWS))

    shown = cli("monitor", "status", "web", "--since", "1h", "--json")
    assert shown.code == 0, shown.err
    status = json.loads(shown.out)
    labels = np.array([truth[f"q-{i}"] for i in range(len(ROWS))])
    versions = {v["model"]: v for v in status["accuracy"]["versions"]}
    for ref in ("churn:1", "churn:2"):
        expected = metrics.roc_auc_score(labels, fitted[ref].predict_proba(ROWS)[:, 1])
        assert versions[ref]["labelled"] == len(ROWS)
        assert versions[ref]["metrics"]["roc_auc"] == pytest.approx(expected, abs=1e-12)
    served = metrics.roc_auc_score(labels, fitted["churn:1"].predict_proba(ROWS)[:, 1])
    assert status["accuracy"]["metrics"]["roc_auc"] == pytest.approx(served, abs=1e-12)
    assert not [n for n in status["notes"] if "ROC AUC" in n]

    gauges = Project.open(models).gauges.measure("web", time.time())
    (family,) = [f for f in gauges.families if f.name == "mloop_accuracy"]
    sampled = dict(family.samples)
    assert sampled["web", "churn:1", "stable", "roc_auc"] == pytest.approx(served, abs=1e-12)
    made = cli("monitor", "report", "web", "--since", "1h", "--html", "report.html")
    assert made.code == 0, made.err
    page = (models / "report.html").read_text()
    assert "<th>ROC_AUC</th>" in page
    assert f'<td data-metric="roc_auc">{served:.4g}</td>' in page


def test_with_scores_off_nothing_is_scored_and_roc_auc_is_null_with_a_note(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOOP_PREDICTIONS_SCORES", "false")
    with serving(models) as url:
        _traffic(url, shadow=False)
    done = cli("monitor", "export", "web", "--since", "1h", "-o", "log.parquet")
    assert done.code == 0, done.err
    assert not [c for c in pq.read_schema(models / "log.parquet").names if c.startswith("score.")]
    status = json.loads(cli("monitor", "status", "web", "--since", "1h", "--json").out)
    assert status["accuracy"]["labelled"] == len(ROWS)
    assert status["accuracy"]["metrics"]["roc_auc"] is None
    assert any("holds no class scores" in n for n in status["notes"])


def test_a_model_whose_scores_fail_answers_and_is_logged_without_them(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    from tests.integration.scoreless_model import BrokenScores

    with pytest.warns(UserWarning, match="needs trust to load"):
        mloop.register_model(BrokenScores(), "churn", input_example=ROWS[:2])  # churn:3
    assert cli("deploy", "web", "churn:3").code == 0
    with serving(models, "--trust") as url, httpx.Client(base_url=url, timeout=30) as client:
        for row in ROWS[:30]:
            got = client.post("/invocations", json={"inputs": [row.tolist()]})
            assert got.status_code == 200 and got.json() == {"predictions": [bool(row[0] > 0)]}
        unscored = lambda: metric(url, "mloop_prediction_log_unscored_total")  # noqa: E731
        wait_for(lambda: unscored() == 30, 30, "the log's flush (every 10 s)")
        assert metric(url, "mloop_prediction_log_dropped_total") == 0
    said = "".join(path.read_text() for path in models.parent.glob("serve-*.log"))
    assert said.count("churn:3 failed to give class scores") == 1  # said once, not per flush
    done = cli("monitor", "export", "web", "--since", "1h", "-o", "log.csv")
    assert done.code == 0, done.err
    header = (models / "log.csv").read_text().splitlines()[0]
    assert '"prediction"' in header and "score." not in header
    assert len((models / "log.csv").read_text().splitlines()) == 31  # every answer, logged
