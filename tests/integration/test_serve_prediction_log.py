"""`mloop serve --endpoint` logs every answer, and a shadow's prediction beside its primary's
under the same request id, as `mloop monitor export` reads them back after a graceful stop; the
answers carry the request id (the client's, or one the server made), and /metrics counts what
was logged. On SQLite and PostgreSQL, with real server processes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq

import mloop
from mloop.project import Project
from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import (  # noqa: F401 - a fixture
    Flaky,
    models,
    serving,
)
from tests.integration.test_serving import metric
from tests.servers import wait_for


def test_every_answer_and_the_shadows_copy_are_logged_side_by_side(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    deployed = cli("deploy", "web", "churn:2", "--strategy", "shadow", "--fraction", "1.0")
    assert deployed.code == 0, deployed.err
    rows = np.random.default_rng(5).normal(size=(40, 3))
    answered: dict[str, int] = {}
    with serving(models, "--workers", "2") as url, httpx.Client(base_url=url) as client:
        for i, row in enumerate(rows):
            mine = {"mloop-request-id": f"order-{i}"} if i % 2 else {}
            answer = client.post("/invocations", json={"inputs": [row.tolist()]}, headers=mine)
            assert answer.status_code == 200, answer.text
            rid = answer.headers["mloop-request-id"]
            assert rid == mine.get("mloop-request-id", rid)  # the client's id is kept
            answered[rid] = answer.json()["predictions"][0]
        assert len(answered) == len(rows)  # an id each

        copies = lambda: metric(url, "mloop_shadow_requests_total", model="churn:2")  # noqa: E731
        wait_for(lambda: copies() == len(rows), 30, "the shadow's copies")
    # the servers stopped (SIGTERM): each worker stored what it logged on the way out
    done = cli("monitor", "export", "web", "--since", "1h", "-o", "log.parquet")
    assert done.code == 0, done.err
    table = pq.read_table(models / "log.parquet").to_pylist()
    primary = {r["request_id"]: r for r in table if r["role"] == "stable"}
    shadow = {r["request_id"]: r for r in table if r["role"] == "shadow"}
    assert set(primary) == set(answered) == set(shadow)  # side by side, by request id
    assert {r["model"] for r in primary.values()} == {"churn:1"}
    assert {r["model"] for r in shadow.values()} == {"churn:2"}
    for rid, prediction in answered.items():
        assert primary[rid]["prediction"] == prediction
    project = Project.open(models)
    loaded = project.models.load("churn:2")
    by_input = {tuple(r): p for r, p in zip(rows.tolist(), loaded.predict(rows), strict=True)}
    for row in shadow.values():
        features = (row["feature.f0"], row["feature.f1"], row["feature.f2"])
        assert row["prediction"] == by_input[features]
    assert all(r["endpoint"] == "web" for r in table)


def test_metrics_count_what_the_log_stored(
    models: Path,  # noqa: F811 - the fixture imported above
) -> None:
    with serving(models) as url, httpx.Client(base_url=url) as client:
        for _ in range(5):
            assert (
                client.post("/invocations", json={"inputs": [[0.1, 0.2, 0.3]]}).status_code == 200
            )
        written = lambda: metric(url, "mloop_prediction_log_written_total")  # noqa: E731
        wait_for(lambda: written() == 5, 30, "the log's flush (every 10 s)")
        assert metric(url, "mloop_prediction_log_dropped_total") == 0


def test_monitor_status_counts_requests_errors_and_latency_of_a_window(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3))
    mloop.register_model(Flaky(every=4), "churn", input_example=x)  # churn:3: 1 call in 4 fails
    assert cli("deploy", "web", "churn:3").code == 0
    with serving(models, "--trust") as url, httpx.Client(base_url=url) as client:
        statuses = Counter(
            client.post("/invocations", json={"inputs": [[0.1, 0.2, 0.3]]}).status_code
            for _ in range(40)
        )
    assert statuses == {200: 30, 500: 10}
    done = cli("monitor", "status", "web", "--since", "1h", "--json")
    assert done.code == 0, done.err
    status = json.loads(done.out)
    assert status["requests"] == 30  # answered and logged; the failures have no prediction
    assert status["error_rate"] == 0.25  # from the servers' reports, the last one at the stop
    assert status["latency"]["p99"] > 0 and status["latency"]["p50"] <= status["latency"]["p99"]
    [version] = status["versions"]
    assert (version["model"], version["role"], version["errors"]) == ("churn:3", "stable", 10)
    assert (version["requests"], version["answered"]) == (30, 40)
    last = json.loads(cli("monitor", "status", "web", "--last", "5", "--json").out)
    assert last["requests"] == 5 and last["window"] == "the last 5 requests"
    shown = cli("monitor", "status", "web")
    assert "25.00%" in shown.out and "churn:3" in shown.out
    empty = cli("monitor", "status", "web", "--until", "2001-01-01")
    assert empty.code == 1 and "no request to endpoint 'web' was logged" in empty.err


def test_merged_calls_of_versions_that_share_a_model_log_each_request_once_under_its_own(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    """Sixteen clients at once on an A/A split of one bundle: the server merges their requests
    into shared predict calls, and the log takes whole calls. Each request must still be
    logged once, under the version that answered it, with all its rows."""
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(60, 3))
    fitted = LogisticRegression().fit(x, x[:, 0] > 0)
    for _ in range(2):  # churn:3 and churn:4: one fitted model, one bundle
        mloop.register_model(fitted, "churn", input_example=x[:2], project=models)
    deployed = cli("deploy", "web", "churn:3", "churn:4", "--strategy", "ab", "--weights", "50,50")
    assert deployed.code == 0, deployed.err
    rng = np.random.default_rng(9)
    bodies = [rng.normal(size=(1 + i % 3, 3)).round(6) for i in range(240)]

    def send(client: httpx.Client, i: int) -> tuple[str, str, list[bool]]:
        answer = client.post("/invocations", json={"inputs": bodies[i].tolist()})
        assert answer.status_code == 200, answer.text
        headers = answer.headers
        return headers["mloop-request-id"], headers["mloop-model"], answer.json()["predictions"]

    with serving(models) as url, httpx.Client(base_url=url) as client:
        with ThreadPoolExecutor(16) as pool:
            answered = list(pool.map(lambda i: send(client, i), range(len(bodies))))
        calls = metric(url, "mloop_batch_requests_count")
        merged = calls - metric(url, "mloop_batch_requests_bucket", le="1.0")
    assert merged >= 10, f"{merged:.0f} of {calls:.0f} calls merged requests: nothing tested"
    assert {model for _, model, _ in answered} == {"churn:3", "churn:4"}
    done = cli("monitor", "export", "web", "--since", "1h", "-o", "log.parquet")
    assert done.code == 0, done.err
    logged = pq.read_table(models / "log.parquet").to_pandas()
    by_id = {rid: rows.sort_values("row") for rid, rows in logged.groupby("request_id")}
    assert len(by_id) == len(answered)
    for i, (rid, model, predictions) in enumerate(answered):
        rows = by_id[rid]
        assert rows["model"].unique().tolist() == [model]
        assert rows["row"].tolist() == list(range(len(bodies[i])))
        assert rows["prediction"].tolist() == predictions
        assert np.allclose(rows[["feature.f0", "feature.f1", "feature.f2"]], bodies[i])
