"""A model server following an endpoint's deployment, with registered models, on 127.0.0.1.

The follower polls a real source function whose answer the test changes (as a deployment in
the store changes); every version is loaded from a project's registry. Requests are counted by
the headers that name who answered (`mloop-endpoint`, `mloop-model`, `mloop-variant`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mloop.errors import StoreUnavailable
from mloop.server.follower import Follow, follow_app
from mloop.server.inference import InferenceApp, ServeSettings
from mloop.server.slots import ServedVersion, ServingPlan
from mloop.services.serving.metrics import ServingMetrics
from tests.integration.serving_helpers import Broken, Gated, cancer_model, running, split_body
from tests.integration.test_serving import metric
from tests.servers import wait_for


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with cancer:1 and cancer:2 (two logistic regressions), cancer:3 (broken),
    cancer:4 (all zeros, behind a gate) and cancer:5 (cancer:1's model registered again)."""
    from sklearn.linear_model import LogisticRegression

    from mloop.project import Project, init_project

    model, signature, features, _ = cancer_model()
    weaker = LogisticRegression(C=1e-4, max_iter=5000).fit(features, model.predict(features))
    root, _ = init_project(tmp_path_factory.mktemp("endpoint") / "proj")
    project = Project.open(root)
    try:
        project.models.register(model, "cancer", signature=signature)
        project.models.register(weaker, "cancer", signature=signature)
        project.models.register(Broken(), "cancer", signature=signature, trust=True)
        gate = str(root / "gate")
        project.models.register(Gated(gate), "cancer", signature=signature, trust=True)
        project.models.register(model, "cancer", signature=signature)  # cancer:1's bundle again
    finally:
        project.close()
    return root


@dataclass
class Source:
    """The deployment the follower reads: whatever the test last set (or an error to raise)."""

    now: ServingPlan | Exception

    def __call__(self) -> ServingPlan:
        if isinstance(self.now, Exception):
            raise self.now
        return self.now


def plan(*versions: tuple[str, str, float], sticky: str | None = None) -> ServingPlan:
    return ServingPlan("cancer", tuple(ServedVersion(*v) for v in versions), sticky)


V1 = ("cancer:1", "stable", 100)


@dataclass
class Endpoint:
    url: str
    app: InferenceApp
    source: Source
    root: Path
    reported: list[dict[str, Any]]

    def post(self, n: int = 1, **headers: str) -> httpx.Response:
        _, _, features, names = cancer_model()
        body = split_body(features[n - 1 : n], names)
        return httpx.post(self.url + "/invocations", json=body, headers=headers)

    def switch(self, to: ServingPlan) -> None:
        self.source.now = to
        failed = self.app.follower.failed_versions
        wait_for(lambda: self.app.table.plan == to, 30, f"the server serving {to} ({failed})")


@pytest.fixture
def endpoint(root: Path) -> Iterator[Endpoint]:
    from mloop.cli.serve import load_predictor

    source = Source(plan(V1))
    reported: list[dict[str, Any]] = []
    load = lambda ref: load_predictor(str(root), ref, True)  # noqa: E731
    follow = Follow(source, load, poll=0.02, report=reported.append, report_every=0.05)
    app = follow_app(follow, ServeSettings(shadow_queue=3), ServingMetrics())
    with running(app) as url:
        yield Endpoint(url, app, source, root, reported)


def test_a_new_deployment_is_loaded_warmed_and_swapped_and_the_old_version_drains(
    endpoint: Endpoint,
) -> None:
    first = endpoint.post()
    assert first.status_code == 200
    assert (first.headers["mloop-endpoint"], first.headers["mloop-model"]) == ("cancer", "cancer:1")
    assert first.headers["mloop-variant"] == "stable"
    split = plan(V1, ("cancer:2", "canary", 50), sticky="header:user")
    endpoint.switch(split)
    ready = httpx.get(endpoint.url + "/readyz").json()
    assert ready["deployment"] == "current" and len(ready["versions"]) == 2
    chosen = {f"u{i}": endpoint.post(user=f"u{i}").headers["mloop-model"] for i in range(60)}
    assert set(chosen.values()) == {"cancer:1", "cancer:2"}
    again = {user: endpoint.post(user=user).headers["mloop-model"] for user in chosen}
    assert again == chosen  # a sticky key always gets the same variant
    old = endpoint.app.table.by_index[0].loaded
    endpoint.switch(plan(("cancer:2", "stable", 100)))
    answers = [endpoint.post() for _ in range(20)]
    assert {(a.status_code, a.headers["mloop-model"]) for a in answers} == {(200, "cancer:2")}
    follower = endpoint.app.follower
    wait_for(lambda: "cancer:1" not in follower.loaded, 30, "cancer:1 drained and unloaded")
    assert old.batcher._task is None  # its batch loop is closed
    # an error from a slot names who answered, too
    refused = httpx.post(endpoint.url + "/invocations", json={"inputs": [[1.0]]})
    assert refused.status_code == 422
    assert refused.headers["mloop-model"] == "cancer:2"
    assert refused.headers["mloop-variant"] == "stable"


def test_a_version_failing_its_readiness_check_gets_no_request(endpoint: Endpoint) -> None:
    broken = plan(V1, ("cancer:3", "canary", 50))
    endpoint.source.now = broken
    follower = endpoint.app.follower
    wait_for(lambda: "cancer:3" in follower.failed_versions, 30, "the failed readiness check")
    assert "cancer:3 failed its readiness check" in follower.failed_versions["cancer:3"]
    assert "the weights file is empty" in follower.failed_versions["cancer:3"]
    ready = httpx.get(endpoint.url + "/readyz")
    assert ready.status_code == 200 and "cancer:3" in ready.json()["failed_versions"]
    answers = [endpoint.post() for _ in range(30)]
    assert {(a.status_code, a.headers["mloop-model"]) for a in answers} == {(200, "cancer:1")}
    assert endpoint.app.table.plan == plan(V1)
    endpoint.switch(plan(("cancer:2", "stable", 100)))  # a good deployment clears the failure
    assert follower.failed_versions == {}


def test_without_its_store_the_server_serves_the_last_deployment_and_says_so(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mloop.server"):
        endpoint.source.now = StoreUnavailable("the store at postgresql://db is unreachable")
        stale = lambda: httpx.get(endpoint.url + "/readyz").json()["deployment"]  # noqa: E731
        wait_for(lambda: stale().startswith("stale since "), 30, "the stale deployment")
        assert endpoint.post().status_code == 200
        ready = httpx.get(endpoint.url + "/readyz")
        assert ready.status_code == 200 and ready.json()["versions"][0]["model"] == "cancer:1"
        endpoint.source.now = plan(V1)
        wait_for(lambda: stale() == "current", 30, "the store back")
    said = [r.getMessage() for r in caplog.records if "cannot read the deployment" in r.message]
    assert len(said) == 1 and "unreachable" in said[0]  # once per outage, not once per poll


def test_a_payload_field_is_the_same_sticky_key_in_every_protocol(endpoint: Endpoint) -> None:
    _, _, features, names = cancer_model()
    endpoint.switch(plan(V1, ("cancer:2", "variant", 50), sticky=f"field:{names[0]}"))
    seen = Counter()
    for row in features[:40]:
        rows = row[None, :]
        mlflow = httpx.post(endpoint.url + "/invocations", json=split_body(rows, names))
        records = {"dataframe_records": [dict(zip(names, row.tolist(), strict=True))]}
        by_records = httpx.post(endpoint.url + "/invocations", json=records)
        tensors = [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [float(v)]}
            for n, v in zip(names, row, strict=True)
        ]
        oip = httpx.post(endpoint.url + "/v2/models/cancer/infer", json={"inputs": tensors})
        models = {a.headers["mloop-model"] for a in (mlflow, by_records, oip)}
        assert len(models) == 1, (row[0], models)
        assert oip.json()["model_version"] == models.pop().split(":")[1]
        seen[mlflow.headers["mloop-model"]] += 1
    assert set(seen) == {"cancer:1", "cancer:2"}


def test_a_request_naming_its_version_is_answered_by_it_past_the_split(
    endpoint: Endpoint,
) -> None:
    _, _, features, names = cancer_model()
    endpoint.switch(plan(V1, ("cancer:2", "canary", 10)))
    tensors = [
        {"name": n, "shape": [1], "datatype": "FP64", "data": [float(v)]}
        for n, v in zip(names, features[0], strict=True)
    ]
    base = endpoint.url + "/v2/models/cancer/versions"
    for version in ("2", "cancer:1"):
        answers = [
            httpx.post(f"{base}/{version}/infer", json={"inputs": tensors}) for _ in range(20)
        ]
        want = f"cancer:{version[-1]}"
        assert {(a.status_code, a.headers["mloop-model"]) for a in answers} == {(200, want)}
        assert answers[0].json()["model_version"] == version[-1]
    about = httpx.get(f"{base}/2")
    assert about.status_code == 200 and about.json()["versions"] == ["2"]
    missing = httpx.post(f"{base}/7/infer", json={"inputs": tensors})
    assert missing.status_code == 404
    assert "serves no single version '7'" in missing.json()["error"]
    assert "cancer:1, cancer:2" in missing.json()["error"]
    assert httpx.get(f"{base}/2/other").status_code == 404


def test_per_version_intervals_are_reported_and_add_up_to_what_clients_saw(
    endpoint: Endpoint,
) -> None:
    endpoint.switch(plan(V1, ("cancer:2", "canary", 50)))
    before = len(endpoint.reported)
    wait_for(lambda: len(endpoint.reported) > before, 30, "an interval reported")
    counted = Counter(endpoint.post().headers["mloop-model"] for _ in range(50))
    start = len(endpoint.reported)
    wait_for(lambda: len(endpoint.reported) > start, 30, "the interval after the requests")
    summed: Counter[str] = Counter()
    for record in endpoint.reported[before:]:
        assert record["endpoint"] == "cancer" and record["shadow"] is None
        for version in record["versions"]:
            summed[version["model"]] += version["requests"]
    assert summed == counted  # every request in exactly one interval, none twice
    taken = endpoint.reported[-1]
    assert taken["endpoint"] == "cancer" and taken["ended"] >= taken["started"]
    for found in taken["versions"]:
        assert sum(found["latency_buckets"]) == found["requests"] and found["errors"] == 0
        assert len(found["latency_buckets"]) == len(taken["bounds"]) + 1


def test_a_slow_shadow_never_holds_the_client_and_drops_what_its_queue_cannot_hold(
    endpoint: Endpoint,
) -> None:
    gate = endpoint.root / "gate"
    gate.touch()  # open while the shadow is loaded and warmed
    endpoint.switch(plan(V1, ("cancer:4", "shadow", 0)))
    gate.unlink()
    app = endpoint.app
    answers = [endpoint.post(n) for n in range(1, 11)]
    assert {(a.status_code, a.headers["mloop-variant"]) for a in answers} == {(200, "stable")}
    # every client was answered while the shadow still works on its first group of copies
    # (the copies that came within its linger, up to the queue's size, 3)
    group = app.mirror.predicting
    assert app.mirror.busy and app.mirror.mirrored == 0 and 1 <= group <= 3
    assert (app.mirror.queued, app.mirror.dropped) == (3, 7 - group)  # the queue holds 3
    gate.touch()
    done = group + 3
    wait_for(lambda: app.mirror.mirrored == done, 30, "the shadow's copies")
    # the first copies were predicted: the shadow (all zeros) agrees where cancer:1 says 0
    model, _, features, _ = cancer_model()
    agreed = int((model.predict(features[:done]) == 0).sum())
    summary = app.shadow_summary()
    assert summary is not None and summary["model"] == "cancer:4"
    assert (summary["agreed"], summary["dropped"], summary["agreement_rate"]) == (
        agreed,
        7 - group,
        agreed / done,
    )
    labels = {"endpoint": "cancer", "model": "cancer:4", "role": "shadow"}
    assert metric(endpoint.url, "mloop_shadow_requests_total", **labels) == done
    assert metric(endpoint.url, "mloop_shadow_dropped_total", **labels) == 7 - group
    assert metric(endpoint.url, "mloop_shadow_agreements_total", **labels) == agreed
    primary = {"endpoint": "cancer", "model": "cancer:1", "role": "stable"}
    for role in (labels, primary):
        assert metric(endpoint.url, "mloop_shadow_predict_duration_seconds_count", **role) == done


def test_versions_of_one_bundle_are_one_model_with_one_batch_and_their_own_counts(
    endpoint: Endpoint,
) -> None:
    app = endpoint.app
    endpoint.switch(plan(V1, ("cancer:5", "variant", 50), ("cancer:2", "variant", 50)))
    one, five, two = app.table.by_index
    assert one.predictor.model is five.predictor.model  # loaded once
    assert one.batcher is five.batcher and two.batcher is not one.batcher
    answers = [endpoint.post(n) for n in range(1, 61)]
    assert {a.status_code for a in answers} == {200}
    counted = Counter(a.headers["mloop-model"] for a in answers)
    assert set(counted) == {"cancer:1", "cancer:5", "cancer:2"}
    for model, n in counted.items():  # each version still counts its own answers
        labels = {
            "endpoint": "cancer",
            "model": model,
            "role": "stable" if model == "cancer:1" else "variant",
            "status": "200",
        }
        assert metric(endpoint.url, "mloop_model_requests_total", **labels) == n
    # as a shadow it gets a batcher of its own: its copies never join a client's batch
    endpoint.switch(plan(V1, ("cancer:5", "shadow", 0)))
    shadow = app.table.shadow
    assert shadow is not None and shadow.batcher is not app.table.primary.batcher
    # the version that goes keeps the batcher the other still uses
    endpoint.switch(plan(("cancer:5", "variant", 50), ("cancer:2", "variant", 50)))
    endpoint.switch(plan(V1, ("cancer:5", "variant", 50)))
    kept = app.table.by_index[1].batcher
    assert app.table.by_index[0].batcher is kept
    assert endpoint.post().status_code == 200
    running_loop = kept._task
    endpoint.switch(plan(("cancer:5", "stable", 100)))
    follower = app.follower
    wait_for(lambda: "cancer:1" not in follower.loaded, 30, "cancer:1 drained and unloaded")
    answers = [endpoint.post(n) for n in range(1, 21)]
    assert {(a.status_code, a.headers["mloop-model"]) for a in answers} == {(200, "cancer:5")}
    assert app.table.only is not None and app.table.only.batcher is kept
    assert kept._task is running_loop and not kept._task.done()  # never closed meanwhile
