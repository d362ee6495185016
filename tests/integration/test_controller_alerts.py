"""Alertmanager starts the loop: an alert posted to the receiver over real HTTP is one
iteration of the controller, on a real project; a repeat of the same alert starts none, and
an alert that arrives while the trigger cools down waits for the cool-down, not for ever."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mloop.domain.controller import Outcome
from mloop.project import Project
from mloop.server.alerts import start
from tests.conftest import MLOOP, run_mloop
from tests.integration.controller_project import forget, write_loop_project
from tests.integration.test_alert_receiver import ENV, alert, payload, post
from tests.servers import free_port, wait_for

ALERTS = """triggers:
  train:
    - alertmanager: {alertname: MloopFeatureDrift, labels: {endpoint: web}}
      cooldown: 1h
"""


@pytest.fixture
def loop(make_project: Callable[..., Path]) -> Iterator[Path]:
    root = make_project("alerted")
    write_loop_project(root)
    text = (root / "mloop.yaml").read_text()
    head, _, rest = text.partition("triggers:\n")
    (root / "mloop.yaml").write_text(head + ALERTS + rest[rest.index("models:") :])
    yield root
    forget(root)


def test_an_alert_from_alertmanager_is_one_iteration(
    loop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    project = Project.open(loop)
    now = time.time()  # the receiver stamps alerts with the real time
    clock = [now]
    controller = project.controller()
    controller.clock = lambda: clock[0]
    running = start(project, port=0)
    try:
        assert controller.tick().begun == ()  # nothing received: nothing starts

        first = alert()
        assert post(running.url, payload(first)).status_code == 200
        now = clock[0] = time.time()  # the controller acts after the alert came
        (it,) = controller.tick().begun
        ended = project.metadata.controller.get(it.id)
        assert ended.kind == "alertmanager" and ended.outcome is Outcome.PASSED
        assert "MloopFeatureDrift" in ended.reason

        # another alert within the cool-down is held; Alertmanager repeating the first (its
        # repeat_interval) is the same cause, never a second one
        newer = alert(starts="2026-12-02T10:00:00Z", feature="plan")
        assert post(running.url, payload(newer, first)).status_code == 200
        clock[0] = now + 10
        assert controller.tick().begun == ()
        clock[0] = now + 3700  # the cool-down is over: the held alert starts the loop
        (again,) = controller.tick().begun
        fired_by = project.metadata.controller.get(again.id).numbers["fired_by"]
        assert [f["labels"]["feature"] for f in fired_by] == ["plan"]
        clock[0] = now + 7400
        assert controller.tick().begun == ()  # every alert received is consumed
    finally:
        running.stop()
        project.close()


def test_mloop_controller_receives_alerts_and_refuses_to_start_without_a_token(
    loop: Path,
) -> None:
    no_token = {k: v for k, v in os.environ.items() if k not in ENV}
    refused = run_mloop("controller", cwd=loop, env=no_token)
    assert refused.code != 0 and "MLOOP_ALERTMANAGER_TOKEN is not set" in refused.err
    assert "Traceback" not in refused.err

    port = free_port()
    proc = subprocess.Popen(
        [*MLOOP, "controller", "--interval", "0.2s", "--alerts-port", str(port)],
        cwd=loop,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/alerts"
    try:
        wait_for(lambda: _answers(url), 60, "the controller's alert receiver")
        assert post(url, payload(alert()), token="wrong").status_code == 401
        assert post(url, payload(alert())).status_code == 200
        wait_for(lambda: _iterations(loop) == 1, 60, "an iteration started by the alert")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"receiving Alertmanager's webhook at {url}" in out


def _answers(url: str) -> bool:
    try:
        post(url, b"{}", token=None)
    except httpx.HTTPError:
        return False
    return True


def _iterations(root: Path) -> int:
    project = Project.open(root)
    try:
        return len(project.metadata.controller.recent())
    finally:
        project.close()
