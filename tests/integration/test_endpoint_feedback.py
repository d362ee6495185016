"""Outcomes posted to `POST /feedback` as an application posts them: counted for the version
that gave each answer, on any server process of the endpoint, so an A/B test names its winner
from what users did; and a shadow's agreement with the primary in `endpoints status`."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from mloop.project import Project
from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import models, serving  # noqa: F401 - a fixture
from tests.integration.test_serving import metric
from tests.servers import wait_for


def _status(cli: Callable[..., CliResult]) -> dict[str, Any]:
    result = cli("endpoints", "status", "web", "--json")
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def _by_model(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["model"]: v for v in status["versions"]}


def test_an_ab_test_names_its_winner_from_outcomes_posted_to_any_server(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    deployed = cli(
        "deploy", "web", "churn:1", "churn:2", "--strategy", "ab", "--weights", "50,50",
        "--sticky", "header:x-user",
    )  # fmt: skip
    assert deployed.code == 0, deployed.err
    rates = {"churn:1": 0.10, "churn:2": 0.30}  # users like churn:2's answers more
    chance = random.Random(7)
    answered: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    with serving(models) as one, serving(models) as two:
        servers = [httpx.Client(base_url=u, timeout=30) for u in (one, two)]
        batch: list[dict[str, Any]] = []
        batch_models: Counter[str] = Counter()
        for n in range(1200):
            user = f"user-{n}"
            answer = servers[n % 2].post(
                "/invocations", json={"inputs": [[0.5, -1.0, 2.0]]}, headers={"x-user": user}
            )
            assert answer.status_code == 200, answer.text
            model = answer.headers["mloop-model"]
            answered[model] += 1
            outcome = int(chance.random() < rates[model])
            converted[model] += outcome
            batch.append({"key": user, "outcome": outcome})
            batch_models[model] += 1
            if len(batch) == 100:
                # to the other server than the one that answered half of them: no server
                # remembers requests, the key alone finds the version
                counted = servers[(n + 1) % 2].post("/feedback", json={"feedback": batch})
                assert counted.status_code == 200, counted.text
                assert counted.json() == {"accepted": 100, "versions": dict(batch_models)}
                batch, batch_models = [], Counter()
        # one bad item refuses its whole batch, naming it; nothing of it is counted
        refused = servers[0].post(
            "/feedback",
            json={"feedback": [{"key": "user-1", "outcome": 1}, {"key": "user-2", "outcome": 2}]},
        )
        assert refused.status_code == 400
        assert "feedback item 1 has outcome 2" in refused.json()["error"]["message"]
        by_id = servers[0].post("/feedback", json=[{"request_id": "r-1", "outcome": 1}])
        assert by_id.status_code == 400
        assert "header:x-user" in by_id.json()["error"]["message"]

        def counted_all() -> bool:
            seen = _by_model(_status(cli))
            return all(seen[m]["outcomes"] == answered[m] for m in answered)

        wait_for(counted_all, 60, "every outcome in the store")
        status = _status(cli)
        seen = _by_model(status)
        for model in answered:  # every server's reports add up to what the users did
            assert seen[model]["outcome_mean"] == converted[model] / answered[model]
        ab = status["ab"]
        assert ab["winner"] == "churn:2", ab
        # one of the servers, holding the lease, kept the look that named it as an Event
        history = Project.open(models).endpoints.history
        named = lambda: [e for e in history("web") if e.action == "endpoint.ab_winner"]  # noqa: E731
        wait_for(lambda: len(named()) == 1, 30, "the winner's Event")
        assert named()[0].details["ab"]["winner"] == "churn:2"
        assert ab["method"] == "msprt" and ab["outcome"] == "rate"
        assert [v["n"] for v in ab["variants"]] == [answered["churn:1"], answered["churn:2"]]
        watched = cli("endpoints", "status", "web", "--watch", "--timeout", "30")
        assert watched.code == 0, watched.out + watched.err
        assert "endpoint web: churn:2 wins" in watched.out
        promoted = cli("endpoints", "promote", "web")  # no --winner: the test's
        assert promoted.code == 0, promoted.err
    final = _status(cli)
    assert final["state"] == "promoted"
    assert [(v["model"], v["weight"]) for v in final["versions"]] == [("churn:2", 100)]
    event = Project.open(models).endpoints.history("web", limit=1)[0]
    assert event.action == "endpoint.promoted"
    assert event.reason.startswith("churn:2 won the ab test")
    assert event.details["ab"]["winner"] == "churn:2"


def test_without_a_sticky_key_an_answers_request_id_finds_its_version(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    deployed = cli(
        "deploy", "web", "churn:1", "churn:2", "--strategy", "ab", "--weights", "30,70",
        "--outcome", "mean",
    )  # fmt: skip
    assert deployed.code == 0, deployed.err
    with serving(models) as url, httpx.Client(base_url=url, timeout=30) as client:
        answers = [
            client.post("/invocations", json={"inputs": [[1.0, 2.0, 3.0]]}) for _ in range(200)
        ]
        ids = {a.headers["mloop-request-id"]: a.headers["mloop-model"] for a in answers}
        assert len(ids) == 200  # each answer its own id
        assert set(ids.values()) == {"churn:1", "churn:2"}
        # a client's own id is kept, and routes the same way every time
        mine = [
            client.post(
                "/invocations", json={"inputs": [[1.0, 2.0, 3.0]]},
                headers={"mloop-request-id": "order-17"},
            )
            for _ in range(5)
        ]  # fmt: skip
        assert {a.headers["mloop-request-id"] for a in mine} == {"order-17"}
        assert len({a.headers["mloop-model"] for a in mine}) == 1
        values = {rid: 2.5 if model == "churn:2" else 1.0 for rid, model in ids.items()}
        posted = client.post(
            "/feedback",
            json={"feedback": [{"request_id": r, "outcome": v} for r, v in values.items()]},
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["versions"] == dict(Counter(ids.values()))
        # /metrics counts them per version too, for a Grafana panel of the test
        for model, value in (("churn:1", 1.0), ("churn:2", 2.5)):
            labels = {"endpoint": "web", "model": model, "role": "variant"}
            count = metric(url, "mloop_model_outcomes_total", **labels)
            assert count == Counter(ids.values())[model]
            assert metric(url, "mloop_model_outcome_value_total", **labels) == value * count

        def reported() -> bool:
            return sum(v["outcomes"] for v in _status(cli)["versions"]) == 200

        wait_for(reported, 60, "the outcomes in the store")
    seen = _by_model(_status(cli))
    assert seen["churn:2"]["outcome_mean"] == 2.5 and seen["churn:1"]["outcome_mean"] == 1.0


def test_a_shadow_shows_its_agreement_with_the_primary_and_both_latencies(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    deployed = cli("deploy", "web", "churn:2", "--strategy", "shadow", "--fraction", "1.0")
    assert deployed.code == 0, deployed.err
    rows = np.random.default_rng(3).normal(size=(150, 3))
    project = Project.open(models)
    primary, shadow = (project.models.load(f"churn:{v}") for v in (1, 2))
    agreeing = int((np.asarray(primary.predict(rows)) == np.asarray(shadow.predict(rows))).sum())
    assert 0 < agreeing < len(rows)  # the two models disagree on some rows: a real check
    with serving(models) as url, httpx.Client(base_url=url, timeout=30) as client:
        for row in rows:
            answer = client.post("/invocations", json={"inputs": [row.tolist()]})
            assert answer.status_code == 200 and answer.headers["mloop-model"] == "churn:1"

        def mirrored() -> bool:
            return _by_model(_status(cli))["churn:2"]["requests"] == len(rows)

        wait_for(mirrored, 60, "every copy predicted and reported")
    seen = _by_model(_status(cli))
    assert seen["churn:2"]["role"] == "shadow" and seen["churn:2"]["dropped"] == 0
    assert seen["churn:2"]["agreement_rate"] == agreeing / len(rows)
    assert seen["churn:1"]["requests"] == len(rows) and seen["churn:1"]["p99"] > 0
    assert seen["churn:2"]["p99"] > 0
    shown = cli("endpoints", "status", "web")
    assert "AGREEMENT" in shown.out and f"{100 * agreeing / len(rows):.2f}%" in shown.out


def test_a_canary_less_accurate_on_its_labels_is_rolled_back_by_the_accuracy_gate(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    """churn:1 learned the truth (x0 > 0), churn:2 another column: labels posted for the
    answers' request ids show the canary right about half as often, and it is rolled back."""
    deployed = cli(
        "deploy", "web", "churn:2", "--strategy", "canary", "--steps", "50",
        "--interval", "3s", "--min-requests", "5", "--accuracy-margin", "0.05",
        "--min-labels", "20", "--threshold", "1",
    )  # fmt: skip
    assert deployed.code == 0, deployed.err
    rng = np.random.default_rng(11)
    with serving(models) as url, httpx.Client(base_url=url, timeout=30) as client:

        def traffic_with_labels() -> bool:
            labels = []
            for row in rng.normal(size=(40, 3)):
                answer = client.post("/invocations", json={"inputs": [row.tolist()]})
                assert answer.status_code == 200, answer.text
                rid = answer.headers["mloop-request-id"]
                labels.append({"request_id": rid, "label": bool(row[0] > 0)})
            stored = client.post("/feedback", json={"feedback": labels})
            assert stored.status_code == 200, stored.text
            assert stored.json()["labels"]["stored"] == 40
            return _status(cli)["state"] != "progressing"

        wait_for(traffic_with_labels, 120, "the canary's rollout to end")
    status = _status(cli)
    assert status["state"] == "rolled_back", status
    assert "accuracy failed 1 intervals in a row" in status["reason"]
    checks = [g for s in status["analysis"] for g in s["gates"] if g["gate"] == "accuracy"]
    assert checks[-1]["verdict"] == "fail" and checks[-1]["observed"] < 0.8
