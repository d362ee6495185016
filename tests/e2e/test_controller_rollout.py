"""The whole loop with real parts: new rows land, the controller (its own process) retrains,
gates and starts a canary on endpoint `web`; `mloop serve --endpoint web` (its own process)
serves real traffic, analyses the canary and promotes it; the controller reads the verdict and
moves the champion alias. A broken challenger (it registers, then fails every prediction) fails
the servers' check before it gets any traffic: the rollout fails, the champion serves on."""

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


def _traffic(url: str, stop: threading.Event, seen: Counter[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            answer = client.post("/invocations", json={"dataframe_records": [{"x": 1.0}]})
            seen[f"{answer.status_code} {answer.headers.get('mloop-model', '?')}"] += 1


def _outcome(root: Path) -> Outcome | None:
    project = Project.open(root)
    try:
        latest = project.metadata.controller.recent(1)[0]
        return latest.outcome if latest.model == "sales:2" else None
    finally:
        project.close()


@pytest.mark.parametrize("broken", [False, True], ids=["healthy", "broken"])
def test_the_endpoints_servers_decide_the_challengers_rollout(loop: Path, broken: bool) -> None:
    land(loop, "a.csv", 6)
    _once(loop)  # sales:1 now serves web (nothing served it: deployed direct)
    seen: Counter[str] = Counter()
    stop = threading.Event()
    with serving(loop) as url:
        sender = threading.Thread(target=_traffic, args=(url, stop, seen), daemon=True)
        sender.start()
        land(loop, "b.csv", 6, start=30)
        controller = _start(loop, **({"CONTROLLER_TEST_BROKEN_MODEL": "1"} if broken else {}))
        try:
            wait_for(lambda: _outcome(loop) is not None, 120, "the rollout's verdict")
        finally:
            stop.set()
            sender.join(timeout=30)
            controller.send_signal(signal.SIGTERM)
            controller.communicate(timeout=60)
    assert controller.returncode == 0
    assert seen["200 sales:1"] > 0
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
    finally:
        project.close()
