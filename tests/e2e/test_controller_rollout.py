"""The whole loop with real parts: new rows land, the controller (its own process) retrains,
gates and starts a canary on endpoint `web`; `mloop serve --endpoint web` (its own process)
serves real traffic, analyses the canary and promotes it; the controller reads the verdict and
moves the champion alias. A broken challenger (it registers, then fails every prediction) fails
the servers' check before it gets any traffic: the rollout fails, the champion serves on. A
flaky one (it passes the gates and that check, then fails one predict in 10) gets its canary
share of real traffic, and the servers' analysis rolls it back: the iteration ends rolled back."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mloop.domain.controller import Outcome
from mloop.domain.rollout import ROLLOUT_ACTOR
from mloop.project import Project
from tests.e2e.test_controller_restart import _once, _start
from tests.integration.controller_project import forget, land, write_loop_project
from tests.integration.test_serve_endpoint import serving
from tests.servers import wait_for

CANARY = (
    "controller:\n  train:\n    endpoint: web\n"
    "    options: {steps: '50', interval: 300ms, min-requests: '5', threshold: '2', "
    "deadline: 1h}\n"
)


@pytest.fixture
def loop(make_project: Callable[..., Path]) -> Iterator[Path]:
    root = make_project("loop")
    write_loop_project(root, cooldown="0", extra=CANARY)
    yield root
    forget(root)


def _traffic(url: str, stop: threading.Event, seen: Counter[str], most: int = 20_000) -> None:
    """Predicts on one client until stopped, `most` at most (a test that hangs stops sending)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(most):
            if stop.is_set():
                return
            answer = client.post("/invocations", json={"dataframe_records": [{"x": 1.0}]})
            seen[f"{answer.status_code} {answer.headers.get('mloop-model', '?')}"] += 1


def _outcome(root: Path) -> Outcome | None:
    project = Project.open(root)
    try:
        latest = project.metadata.controller.recent(1)[0]
        return latest.outcome if latest.model == "sales:2" else None
    finally:
        project.close()


def _second_iteration_under_traffic(loop: Path, *serve: str, **env: str) -> Counter[str]:
    """sales:1 serves web (deployed direct: nothing served it); then, under traffic to
    `mloop serve --endpoint web SERVE`, new rows land and the controller (environment `env`)
    retrains and rolls sales:2 out until the servers decide. What the client saw, by answer."""
    land(loop, "a.csv", 6)
    _once(loop)
    seen: Counter[str] = Counter()
    stop = threading.Event()
    with serving(loop, *serve) as url:
        sender = threading.Thread(target=_traffic, args=(url, stop, seen), daemon=True)
        sender.start()
        wait_for(lambda: seen["200 sales:1"] > 0, 60, "traffic to sales:1")
        land(loop, "b.csv", 6, start=30)
        controller = _start(loop, **env)
        try:
            wait_for(lambda: _outcome(loop) is not None, 120, "the rollout's verdict")
        finally:
            stop.set()
            sender.join(timeout=30)
            controller.send_signal(signal.SIGTERM)
            controller.communicate(timeout=60)
    assert controller.returncode == 0
    return seen


@pytest.mark.parametrize("broken", [False, True], ids=["healthy", "broken"])
def test_the_endpoints_servers_decide_the_challengers_rollout(loop: Path, broken: bool) -> None:
    seen = _second_iteration_under_traffic(
        loop, **({"CONTROLLER_TEST_BROKEN_MODEL": "1"} if broken else {})
    )
    project = Project.open(loop)
    try:
        actions = [e.action for e in reversed(project.metadata.events.find("pipeline/train"))]
        decided = {e.action: e for e in project.metadata.events.find("endpoint/web")}
        if broken:  # the servers' check of the new version failed: it never got traffic
            assert _outcome(loop) is Outcome.FAILED
            assert not [k for k in seen if "sales:2" in k]
            assert project.models.get("sales@champion").version == 1
            assert project.endpoints.get("web").weights["sales:1"] == 100
            assert actions[-3:] == [
                "controller.approved",
                "controller.deployed",
                "controller.failed",
            ]
            failed = project.metadata.events.find("pipeline/train")[0]
            assert decided["endpoint.failed"].reason in (failed.reason or "")
        else:
            assert _outcome(loop) is Outcome.PROMOTED
            assert seen["200 sales:2"] > 0 and not [k for k in seen if not k.startswith("200 ")]
            assert project.models.get("sales@champion").version == 2
            assert project.endpoints.get("web").weights == {"sales:2": 100}
            assert actions[-3:] == [
                "controller.approved",
                "controller.deployed",
                "controller.promoted",
            ]
            assert decided["endpoint.promoted"].actor == ROLLOUT_ACTOR  # the servers' analysis
            promoted = project.metadata.events.find("pipeline/train")[0]
            assert promoted.details["analysis"]["verdict"] == "pass"  # the numbers behind it
    finally:
        project.close()


FLAKY = (
    "controller:\n  train:\n    endpoint: web\n    strategy: canary\n"
    "    options: {steps: '50', interval: 300ms, min-requests: '5', threshold: '2', "
    "deadline: 1h}\n"
)


def test_a_challenger_that_fails_on_traffic_is_rolled_back_by_the_canary(
    make_project: Callable[..., Path],
) -> None:
    """sales:2 passes the registry's gates and the servers' check (its first predict works),
    then fails one predict in 10: the canary analysis rolls it back on real traffic, the
    champion takes all traffic again, and the controller's iteration ends rolled back, its
    Event naming the failed gate and the numbers behind it."""
    loop = make_project("loop")
    write_loop_project(loop, cooldown="0", extra=FLAKY)
    try:
        seen = _second_iteration_under_traffic(loop, "--trust", CONTROLLER_TEST_FLAKY_EVERY="10")
        assert seen["500 sales:2"] > 0 and seen["200 sales:2"] > 0  # it had its share
        project = Project.open(loop)
        try:
            assert _outcome(loop) is Outcome.ROLLED_BACK
            assert project.models.get("sales@champion").version == 1
            assert project.endpoints.get("web").weights == {"sales:1": 100, "sales:2": 0}
            events = list(reversed(project.metadata.events.find("pipeline/train")))
            assert [e.action for e in events[-3:]] == [
                "controller.approved",
                "controller.deployed",
                "controller.rolled_back",
            ]
            rolled = events[-1]
            endpoint = project.metadata.events.find("endpoint/web")[0]
            assert endpoint.action == "endpoint.rolled_back" and endpoint.actor == ROLLOUT_ACTOR
            assert "success_rate failed 2 intervals in a row" in (rolled.reason or "")
            assert rolled.details["outcome"] == "rolled_back" and rolled.details["weight"] == 50
            assert rolled.details["deployment"] == endpoint.details["deployment"] == 2
            gates = {g["gate"]: g for g in rolled.details["analysis"]["gates"]}
            assert rolled.details["analysis"] == endpoint.details["analysis"]
            assert gates["success_rate"]["verdict"] == "fail"
            assert 80 < gates["success_rate"]["observed"] < 99 == gates["success_rate"]["bound"]
        finally:
            project.close()
    finally:
        forget(loop)
