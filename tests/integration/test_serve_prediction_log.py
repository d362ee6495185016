"""`mloop serve --endpoint` logs every answer, and a shadow's prediction beside its primary's
under the same request id, as `mloop monitor export` reads them back after a graceful stop; the
answers carry the request id (the client's, or one the server made), and /metrics counts what
was logged. On SQLite and PostgreSQL, with real server processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq

from mloop.project import Project
from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import models, serving  # noqa: F401 - a fixture
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
