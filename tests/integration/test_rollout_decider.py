"""The rollout decided from what servers report, as `mloop serve --endpoint` drives it: the
lease holder analyses each interval over every reporter's traffic; a canary that errs or is slow
is rolled back within `threshold + 1` intervals naming the gate; a healthy one is promoted;
blue/green waits for readiness. Over SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import mloop
from mloop.domain.analysis import VersionStats
from mloop.domain.endpoint import EndpointState
from mloop.project import Project
from mloop.services.serving.endpoints import EndpointService

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
INTERVAL = 0.2


@pytest.fixture(params=STORES)
def endpoints(request: pytest.FixtureRequest, make_project: Callable[..., Path]) -> EndpointService:
    from sklearn.linear_model import LogisticRegression

    make_project(store=request.param)
    x = np.random.default_rng(0).normal(size=(40, 3))
    for i in range(2):
        mloop.register_model(LogisticRegression().fit(x, x[:, i] > 0), "churn", input_example=x[:2])
    service = Project.open().endpoints
    service.deploy("web", ["churn:1"])
    return service


def _canary(endpoints: EndpointService, threshold: int = 2) -> None:
    options = {"steps": "10,50", "interval": f"{INTERVAL * 1000:g}ms", "threshold": str(threshold)}
    options |= {"min-requests": "20", "deadline": "1h"}
    endpoints.deploy("web", ["churn:2"], "canary", options)


def _drive(
    endpoints: EndpointService, canary: VersionStats, stable: VersionStats, limit: int = 40
) -> list[str]:
    """Two servers report each interval and both try to decide, on a clock the test moves
    (an interval passes per round); returns the actions taken."""
    actions: list[str] = []
    now = time.time()
    for _ in range(limit):
        current = endpoints.get("web")
        if current.state is not EndpointState.PROGRESSING:
            break
        now += INTERVAL
        seen = {"churn:2": canary, "churn:1": stable}
        for server in ("a", "b"):
            endpoints.report("web", current.sequence, server, seen, at=now - INTERVAL / 2)
        for server in ("a", "b"):
            decision = endpoints.decide("web", holder=server, now=now)
            if decision is not None:
                actions.append(decision.action)
    return actions


def test_a_canary_must_be_ready_before_it_gets_traffic(endpoints: EndpointService) -> None:
    _canary(endpoints)
    assert endpoints.decide("web", holder="a") is None  # nothing is due: no server is ready
    assert endpoints.get("web").weights == {"churn:1": 100, "churn:2": 0}
    assert endpoints.mark_ready("web", 2) is not None
    assert endpoints.mark_ready("web", 2) is None  # the second server changes nothing
    assert endpoints.get("web").weights == {"churn:1": 90, "churn:2": 10}


def test_a_healthy_canary_is_promoted(endpoints: EndpointService) -> None:
    _canary(endpoints)
    endpoints.mark_ready("web", 2)
    healthy = VersionStats.measured([0.01] * 30)
    actions = _drive(endpoints, healthy, healthy)
    assert actions[-1] == "endpoint.promoted" and "endpoint.advanced" in actions
    assert endpoints.get("web").weights == {"churn:2": 100}
    steps = endpoints.status("web").analysis
    assert [s.verdict for s in steps if s.verdict] == ["pass", "pass"]


@pytest.mark.parametrize(
    ("canary", "gate"),
    [
        (VersionStats.measured([0.01] * 95 + [0.01] * 5, errors=5), "success_rate"),
        (VersionStats.measured([0.61] * 100), "p99"),
    ],
    ids=["5xx", "slow"],
)
def test_a_failing_canary_is_rolled_back_naming_the_gate(
    endpoints: EndpointService, canary: VersionStats, gate: str
) -> None:
    threshold = 2
    _canary(endpoints, threshold)
    endpoints.mark_ready("web", 2)
    actions = _drive(endpoints, canary, VersionStats.measured([0.01] * 100))
    assert actions[-1] == "endpoint.rolled_back"
    assert len(actions) <= threshold + 1  # one decider per interval, rolled back in time
    current = endpoints.get("web")
    assert current.weights == {"churn:1": 100, "churn:2": 0}
    assert gate in current.reason and f"failed {threshold} intervals in a row" in current.reason
    event = endpoints.history("web")[0]
    assert event.actor == "rollout" and event.details["analysis"]["verdict"] == "fail"


def test_blue_green_switches_once_green_is_ready_and_rolls_back_instantly(
    endpoints: EndpointService,
) -> None:
    endpoints.deploy("web", ["churn:2"], "blue_green", {"keep": "10m"})
    assert endpoints.get("web").weights == {"churn:1": 100, "churn:2": 0}
    endpoints.mark_ready("web", 2)
    assert endpoints.get("web").weights == {"churn:1": 0, "churn:2": 100}
    back = endpoints.rollback("web", reason="alerts")
    assert back.weights == {"churn:1": 100, "churn:2": 0}
    assert endpoints.history("web")[0].reason == "alerts"


def test_a_version_that_never_gets_ready_fails_the_rollout(endpoints: EndpointService) -> None:
    _canary(endpoints)
    failed = endpoints.fail("web", 2, "churn:2 failed its readiness check: shape mismatch")
    assert failed is not None and failed.state is EndpointState.FAILED
    assert endpoints.get("web").weights == {"churn:1": 100, "churn:2": 0}
    assert "readiness" in endpoints.history("web")[0].reason
