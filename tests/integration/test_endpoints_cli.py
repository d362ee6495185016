"""`mloop deploy` and `mloop endpoints` as a user types them: each strategy's deployment, its
status and history in JSON, promote and rollback, and bad input refused with the endpoint still
serving the last good deployment. Over SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mloop
from tests.conftest import CliResult

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _models(count: int) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    for i in range(count):
        y = (x[:, i % 3] > 0).astype(int)
        mloop.register_model(LogisticRegression().fit(x, y), "churn", input_example=x[:2])


@pytest.fixture(params=STORES)
def deployed(
    request: pytest.FixtureRequest, make_project: Callable[..., Path], cli: Callable[..., CliResult]
) -> Callable[..., Any]:
    make_project(store=request.param)
    _models(3)
    assert cli("models", "alias", "churn:1", "champion").code == 0

    def run(*args: str, code: int = 0) -> Any:
        result = cli(*args, "--json")
        assert result.code == code, result.err
        return json.loads(result.out) if code == 0 else result.err

    return run


def test_direct_then_canary_then_promote(deployed: Callable[..., Any]) -> None:
    first = deployed("deploy", "web", "churn@champion")
    assert (first["endpoint"], first["strategy"], first["state"]) == ("web", "direct", "stable")
    assert first["versions"] == [{"model": "churn:1", "role": "stable", "weight": 100}]

    canary = deployed(
        "deploy",
        "web",
        "churn:2",
        "--strategy",
        "canary",
        "--steps",
        "10,50",
        "--interval",
        "30s",
        "--max-p99",
        "2x",
        "--reason",
        "better recall",
    )
    assert canary["state"] == "progressing" and canary["policy"]["steps"] == [10, 50, 100]
    status = deployed("endpoints", "status", "web")
    assert {k: status[k] for k in ("endpoint", "strategy", "state")} == {
        "endpoint": "web",
        "strategy": "canary",
        "state": "progressing",
    }
    assert [(v["model"], v["role"], v["weight"]) for v in status["versions"]] == [
        ("churn:1", "stable", 100),
        ("churn:2", "canary", 0),
    ]
    assert status["analysis"][0]["action"] == "endpoint.deployed"

    # a second rollout while this one runs is refused, and the endpoint is unchanged
    err = deployed("deploy", "web", "churn:3", "--strategy", "canary", code=1)
    assert "rollout in progress" in err and "--force" in err
    assert deployed("endpoints", "status", "web")["deployment"] == 2

    promoted = deployed("endpoints", "promote", "web", "--reason", "looks good")
    assert promoted["state"] == "promoted"
    assert promoted["versions"] == [{"model": "churn:2", "role": "stable", "weight": 100}]
    history = deployed("endpoints", "history", "web")
    assert [e["action"] for e in history] == [
        "endpoint.promoted",
        "endpoint.deployed",
        "endpoint.deployed",
    ]
    assert history[0]["reason"] == "looks good" and history[0]["actor"]
    assert history[1]["reason"] == "better recall"
    listed = deployed("endpoints", "list")
    assert [(d["endpoint"], d["sequence"], d["state"]) for d in listed] == [("web", 2, "promoted")]


def test_force_aborts_and_rollback_returns_to_stable(deployed: Callable[..., Any]) -> None:
    deployed("deploy", "web", "churn:1")
    deployed("deploy", "web", "churn:2", "--strategy", "blue_green", "--keep", "5m")
    forced = deployed("deploy", "web", "churn:3", "--strategy", "canary", "--force")
    assert forced["sequence"] == 3
    events = deployed("endpoints", "history", "web")
    assert events[1]["action"] == "endpoint.aborted"

    back = deployed("endpoints", "rollback", "web")
    assert back["state"] == "rolled_back"
    assert [(v["model"], v["weight"]) for v in back["versions"]] == [
        ("churn:1", 100),
        ("churn:3", 0),
    ]
    err = deployed("endpoints", "rollback", "web", code=1)
    assert "deployment 3 of endpoint 'web' is rolled_back, not progressing" in err


def test_ab_and_shadow_deployments(deployed: Callable[..., Any]) -> None:
    ab = deployed(
        "deploy",
        "shop",
        "churn:1",
        "churn:2",
        "--strategy",
        "ab",
        "--weights",
        "30,70",
        "--sticky",
        "header:X-User",
    )
    assert [(v["model"], v["role"], v["weight"]) for v in ab["versions"]] == [
        ("churn:1", "variant", 30),
        ("churn:2", "variant", 70),
    ]
    assert ab["policy"]["sticky"] == "header:x-user"
    won = deployed("endpoints", "promote", "shop", "--winner", "churn:2")
    assert won["versions"] == [{"model": "churn:2", "role": "stable", "weight": 100}]

    deployed("deploy", "mirror", "churn:1")
    shadow = deployed("deploy", "mirror", "churn:3", "--strategy", "shadow", "--fraction", "0.2")
    assert [(v["role"], v["weight"]) for v in shadow["versions"]] == [
        ("stable", 100),
        ("shadow", 0),
    ]
    assert shadow["policy"]["fraction"] == 0.2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("churn:9",), "has no version 9"),
        (("churn@nope",), "alias"),
        (("churn:1", "churn:2", "--strategy", "ab", "--weights", "50,40"), "100"),
        (("churn:2", "--strategy", "canary", "--steps", "50,20"), "increas"),
        (("churn:2", "--strategy", "canary", "--interval", "0s"), "interval"),
        (("churn:2", "--strategy", "canary", "--weights", "50,50"), "--weights"),
        (("churn:2", "--strategy", "rainbow"), "unknown strategy"),
        (("churn:2", "--strategy", "shadow", "--fraction", "1.5"), "fraction"),
    ],
)
def test_bad_deployments_are_refused_and_the_endpoint_keeps_serving(
    deployed: Callable[..., Any], args: tuple[str, ...], message: str
) -> None:
    deployed("deploy", "web", "churn:1")
    err = deployed("deploy", "web", *args, code=1)
    assert message in err
    assert "hint:" in err
    status = deployed("endpoints", "status", "web")
    assert (status["deployment"], status["state"]) == (1, "stable")
    assert len(deployed("endpoints", "history", "web")) == 1


def test_unknown_endpoints_say_how_to_create_one(deployed: Callable[..., Any]) -> None:
    for action in ("status", "history", "promote", "rollback"):
        err = deployed("endpoints", action, "nope", code=1)
        assert "no endpoint 'nope'" in err and "mloop deploy nope" in err
    assert deployed("endpoints", "list") == []


def test_an_ab_test_names_a_winner_only_under_its_rule(deployed: Callable[..., Any]) -> None:
    from mloop.domain.analysis import VersionStats
    from mloop.project import Project

    deployed("deploy", "shop", "churn:1", "churn:2", "--strategy", "ab", "--sticky", "field:id")
    status = deployed("endpoints", "status", "shop")
    assert status["ab"]["state"] == "running" and status["ab"]["winner"] is None
    err = deployed("endpoints", "promote", "shop", code=1)
    assert "no winner yet" in err and "--winner" in err

    # what the servers report: outcomes posted to /feedback, 10% against 13% over 6,000 each
    endpoints = Project.open().endpoints
    for model, right in (("churn:1", 600), ("churn:2", 780)):
        seen = VersionStats(6000, outcomes=6000, outcome_sum=right, outcome_squares=right)
        endpoints.report("shop", 1, "host:1", {model: seen})
    status = deployed("endpoints", "status", "shop")
    ab = status["ab"]
    assert (ab["state"], ab["winner"], ab["method"]) == ("winner", "churn:2", "msprt")
    # the servers' decider keeps a look every few seconds; the first naming a winner is an Event
    now = time.time()
    endpoints.decide("shop", "host:1", now)
    kept = endpoints.metadata.endpoints.look("shop", 1)
    assert kept is not None and kept[1]["winner"] == "churn:2"
    endpoints.decide("shop", "host:1", now + 1)  # too soon: the same look stays
    assert endpoints.metadata.endpoints.look("shop", 1) == kept
    endpoints.decide("shop", "host:1", now + 6)
    assert endpoints.metadata.endpoints.look("shop", 1)[0] == now + 6
    named = [e for e in endpoints.history("shop") if e.action == "endpoint.ab_winner"]
    assert len(named) == 1 and named[0].actor == "rollout"
    assert named[0].reason.startswith("churn:2 wins the ab test")
    tau = kept[1]["comparisons"][0]["evidence"]["tau"]
    later = endpoints.status("shop").ab
    assert later is not None and later.comparisons[0].evidence.tau == tau  # carried on
    control, variant = ab["variants"]
    assert (control["n"], variant["n"]) == (6000, 6000)
    assert variant["ci_low"] > 0 and variant["p_value"] < 0.05
    promoted = deployed("endpoints", "promote", "shop")
    assert promoted["versions"] == [{"model": "churn:2", "role": "stable", "weight": 100}]
