"""The monitor's gauges as an operator meets them: a real `mloop serve --endpoint` with a small
`monitoring_interval`, scraped by a real Prometheus that evaluates the rules `mloop monitor
export prometheus` writes and sends what fires to a real Alertmanager, whose webhook is a small
HTTP server of this test. Unchanged traffic stays under its drift thresholds; a shifted feature
crosses its own, the alert fires and reaches the webhook naming it. A server whose monitor
cannot measure keeps serving and counts it; feedback labels bring accuracy and bias gauges."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

import mloop
from mloop.domain.prediction import PREDICTION
from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import models, serving  # noqa: F401 - a fixture
from tests.servers import alertmanager, prometheus, wait_for

FEATURES = ["tenure", "spend", "visits"]
MONITOR = "monitoring_interval: 1s\nmonitoring_window: 1h\n"
FLUSHED = 60.0  # the prediction log flushes every 10 s; the monitor measures every second


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    data = pd.DataFrame({name: rng.normal(0.0, 1.0, n) for name in FEATURES})
    data["tenure"] += shift
    return data


@pytest.fixture
def trained(project: Path, cli: Callable[..., CliResult]) -> Path:
    """churn:1 trained from a run that read the dataset `customers` (its drift reference),
    with its accuracy logged, deployed as endpoint `web`, monitored every second."""
    rng = np.random.default_rng(3)
    data = _frame(rng, 2000)
    data["churned"] = (data.tenure + 0.5 * data.spend + rng.normal(0, 0.5, 2000)) > 0
    data.to_csv(project / "customers.csv", index=False)
    mloop.data.add("customers", "customers.csv")
    with mloop.start_run("fit"):
        frame = mloop.data.get("customers").to_pandas()
        model = LogisticRegression().fit(frame[FEATURES], frame["churned"])
        mloop.log_metric("accuracy", 0.9)
        mloop.register_model(model, "churn", input_example=frame[FEATURES].head())
    assert cli("deploy", "web", "churn:1").code == 0
    (project / "mloop.yaml").write_text((project / "mloop.yaml").read_text() + MONITOR)
    return project


class Webhook:
    """What Alertmanager posts to its webhook receiver, kept in order (on 127.0.0.1)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for post in list(self.posts) for alert in post["alerts"]]


@contextmanager
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def _send(client: httpx.Client, rows: pd.DataFrame, prefix: str) -> None:
    for i, first in enumerate(range(0, len(rows), 10)):  # ten rows a request
        batch = rows.iloc[first : first + 10]
        got = client.post(
            "/invocations",
            json={"dataframe_split": batch.to_dict(orient="split", index=False)},
            headers={"mloop-request-id": f"{prefix}-{i}"},
        )
        assert got.status_code == 200, got.text


def _query(prom: str, expr: str) -> dict[str, float]:
    """An instant query's result: feature (or "") -> value."""
    answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}).json()
    assert answer["status"] == "success", (expr, answer)
    return {r["metric"].get("feature", ""): float(r["value"][1]) for r in answer["data"]["result"]}


def test_drifted_traffic_fires_the_drift_alert_through_alertmanager(
    trained: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    assert cli("monitor", "export", "prometheus", str(rules), "--for", "0m").code == 0
    rng = np.random.default_rng(4)
    # over 1,000 rows in the window: judged by the size of the shift (normalised Wasserstein)
    score = 'mloop_drift_score{endpoint="web",model="churn:1",method="wasserstein"}'
    threshold = score.replace("score", "threshold")
    with (
        webhook() as hook,
        alertmanager(hook.url) as manager,
        serving(trained) as url,
        prometheus([url], rules=[rules / "mloop-rules.yml"], alertmanager=manager) as prom,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        _send(client, _frame(rng, 1200), "same")
        wait_for(lambda: len(_query(prom, score)) == 3, FLUSHED, "drift of the 3 features")
        calm = _query(prom, score)
        limits = _query(prom, threshold)
        assert set(calm) == set(FEATURES)  # the answers, true or false, are classes: below
        assert all(calm[f] < limits[f] for f in calm), (calm, limits)
        answers = 'mloop_drift_{}{{endpoint="web",feature="prediction",method="jensenshannon"}}'
        assert _query(prom, answers.format("score"))[PREDICTION] < 0.1
        assert _query(prom, answers.format("threshold")) == {PREDICTION: 0.1}
        assert _query(prom, 'mloop_accuracy_reference{metric="accuracy"}') == {"": 0.9}

        _send(client, _frame(rng, 2000, shift=4.0), "shifted")  # tenure moves 4 sd up

        def moved() -> bool:
            now = _query(prom, score)
            return now.get("tenure", 0.0) > limits["tenure"]

        wait_for(moved, FLUSHED, "tenure's drift above its threshold in Prometheus")
        after = _query(prom, score)
        assert after["spend"] < limits["spend"] and after["visits"] < limits["visits"], after

        def firing() -> list[dict[str, Any]]:
            found = httpx.get(f"{prom}/api/v1/alerts").json()["data"]["alerts"]
            return [a for a in found if a["labels"]["alertname"] == "MloopFeatureDrift"]

        def fired() -> set[str]:
            return {a["labels"]["feature"] for a in firing() if a["state"] == "firing"}

        # the answers follow tenure (churn:1 learnt so), so they moved too; spend and visits not
        wait_for(lambda: fired() == {"tenure", PREDICTION}, 30, "the drift alerts")

        def delivered() -> list[dict[str, Any]]:
            return [a for a in hook.alerts() if a["labels"]["alertname"] == "MloopFeatureDrift"]

        wait_for(lambda: any(a["labels"]["feature"] == "tenure" for a in delivered()), 30, "hook")
        sent = next(a for a in delivered() if a["labels"]["feature"] == "tenure")
        assert sent["status"] == "firing" and sent["labels"]["model"] == "churn:1"
        assert sent["annotations"]["summary"].startswith("tenure drifted on web (churn:1")
        # the monitor's own numbers: it published, and a pass cost milliseconds
        metrics = _metrics(client)
        assert metrics["mloop_monitor_last_run_timestamp_seconds"] > 0
        assert 0 < metrics["mloop_monitor_duration_seconds"] < 5


def _metrics(client: httpx.Client, **labels: str) -> dict[str, float]:
    """/metrics as sample name -> value, for the samples with `labels` (the last one wins)."""
    text = client.get("/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                found[sample.name] = sample.value
    return found


def test_a_monitor_that_cannot_measure_counts_it_and_feedback_brings_accuracy_and_bias(
    models: Path,  # noqa: F811 - the fixture imported above
) -> None:
    settings = models / "mloop.yaml"
    gate = "models: {churn: {holdout: h, label: y, gates: ['demographic_parity(f2) <= 0.1']}}\n"
    settings.write_text(settings.read_text() + MONITOR + "bias_columns: [f2]\n" + gate)
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(120, 3))
    rows[:, 2] = rng.integers(0, 2, 120)  # the sensitive column: two groups
    # two workers: one monitor (a process of its own) for both, its gauges on whichever answers
    with serving(models, "--workers", "2") as url, httpx.Client(base_url=url, timeout=30) as client:
        # nothing logged yet: every pass fails (counted), and serving goes on untouched
        wait_for(lambda: _metrics(client)["mloop_monitor_errors_total"] >= 2, 30, "failed passes")
        assert _metrics(client)["mloop_monitor_last_run_timestamp_seconds"] == 0
        answers = {}
        for i, row in enumerate(rows):
            got = client.post(
                "/invocations",
                json={"inputs": [row.tolist()]},
                headers={"mloop-request-id": f"q-{i}"},
            )
            assert got.status_code == 200, got.text
            answers[f"q-{i}"] = got.json()["predictions"][0]
        truth = {f"q-{i}": bool(rng.integers(0, 2)) for i in range(100)}
        items = [{"request_id": rid, "label": label} for rid, label in truth.items()]
        assert client.post("/feedback", json=items).status_code == 200

        def labelled() -> bool:
            found = _metrics(client, model="churn:1")
            return found.get("mloop_accuracy_labelled") == 100

        wait_for(labelled, FLUSHED, "accuracy of the 100 labelled answers on /metrics")
        expected = np.mean([answers[rid] == truth[rid] for rid in truth])
        accuracy = _metrics(client, model="churn:1", role="stable", metric="accuracy")
        assert accuracy["mloop_accuracy"] == pytest.approx(expected)
        bias = _metrics(client, model="churn:1", column="f2", measure="demographic_parity")
        groups = [
            np.mean([answers[f"q-{i}"] for i in range(120) if rows[i, 2] == g]) for g in (0, 1)
        ]
        assert bias["mloop_bias"] == pytest.approx(abs(groups[0] - groups[1]))
        assert bias["mloop_bias_bound"] == 0.1
        # a model registered without a training dataset has no drift reference: the pass
        # publishes the rest and counts the problem; no drift series, and serving unaffected
        after = _metrics(client)
        assert after["mloop_monitor_last_run_timestamp_seconds"] > 0
        assert after["mloop_monitor_errors_total"] == after["mloop_monitor_passes_total"]
        assert "mloop_drift_score" not in after
        assert client.post("/invocations", json={"inputs": [rows[0].tolist()]}).is_success
    # one monitor, which said its problem once (an empty window is counted, not said)
    said = (models.parent / "serve-0.log").read_text().splitlines()
    assert [line for line in said if line.startswith("monitor of")] == [
        "monitor of endpoint web: no drift for churn:1: churn:1 names no training dataset "
        "version to compare its traffic with"
    ], said
