"""The controller as real processes: SIGKILLed at each step of an iteration and started again,
it ends where an uninterrupted run ends, with no second retrain, registration or deployment;
two controllers on one store, one acts; SIGTERM stops one cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mloop.domain.controller import ITERATION_TAG, IterationState, Outcome
from mloop.project import Project
from tests.conftest import MLOOP, run_mloop
from tests.integration.controller_project import forget, land, trained, write_loop_project
from tests.servers import free_port, wait_for

ENDPOINT = "controller:\n  train: {endpoint: web}\n"


@pytest.fixture
def loop(make_project: Callable[..., Path]) -> Iterator[Path]:
    root = make_project("loop")
    write_loop_project(root, cooldown="0", extra=ENDPOINT)
    yield root
    forget(root)


def _start(root: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*MLOOP, "controller", "--interval", "0.2s", *args],
        cwd=root,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _state(root: Path, of: int = 1) -> IterationState | None:
    """The state of the `of`th iteration (None before it begins)."""
    project = Project.open(root)
    try:
        found = project.metadata.controller.recent()
        return found[-of].state if len(found) >= of else None
    finally:
        project.close()


def _once(root: Path) -> None:
    done = run_mloop("controller", "--once", cwd=root)
    assert done.code == 0, done.err


def _first_iteration(root: Path) -> None:
    """sales:1 serves endpoint web (nothing served it: deployed direct, promoted)."""
    land(root, "a.csv", 6)
    _once(root)
    assert _state(root) is IterationState.DONE


# Where the second iteration is killed: a step held at a point (the file the step waits for),
# or a state seen in the store (the steps after it take milliseconds, so the kill lands at that
# state or one of the next few: still a kill between two writes of the iteration).
KILL_POINTS = [
    pytest.param(("hold", "ingest"), id="run-started"),
    pytest.param(("hold", "train"), id="mid-train"),
    pytest.param(("hold", "register"), id="after-registration-in-the-run"),
    pytest.param(("state", IterationState.REGISTERED), id="registered"),
    pytest.param(("state", IterationState.GATED), id="gated"),
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_at_each_step_and_restarted_it_ends_as_an_uninterrupted_run(
    loop: Path, tmp_path: Path, point: tuple[str, object]
) -> None:
    _first_iteration(loop)
    land(loop, "b.csv", 6, start=30)
    holds = tmp_path / "holds"
    holds.mkdir()
    kind, where = point
    env = {"CONTROLLER_TEST_HOLD": str(holds)} if kind == "hold" else {}
    steps = ["ingest", "train", "register"]
    for name in steps if kind == "state" else steps[: steps.index(str(where))]:
        (holds / name).write_text("")  # released: the run goes on to the held step
    process = _start(loop, **env)
    try:
        if kind == "hold":
            wait_for(lambda: (holds / f"at-{where}").exists(), 60, f"the run to reach {where}")
        else:
            order = list(IterationState)
            target = order.index(IterationState(str(where)))
            deadline = time.monotonic() + 60
            # Polled without backing off (unlike tests.servers.wait_for): the states after
            # this one are milliseconds apart, and the kill should land as near as it can.
            while (s := _state(loop, of=2)) is None or order.index(s) < target:
                assert time.monotonic() < deadline, f"the iteration never reached {where}"
            assert s is not IterationState.DONE  # killed on the way (see KILL_POINTS)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    for name in ("ingest", "train", "register"):
        (holds / name).write_text("")
    _once(loop)  # restarted: continues the same iteration to the rollout's start

    project = Project.open(loop)
    try:
        first, second = reversed(project.metadata.controller.recent())
        assert second.state is IterationState.ROLLING_OUT and second.model == "sales:2"
        assert [v.version for v in project.models.versions("sales")] == [1, 2]
        assert trained(loop) == 2  # one training per iteration, none repeated
        history = project.endpoints.metadata.endpoints.history("web")
        assert [d.sequence for d in history] == [2, 1]  # one deployment per iteration
        assert history[0].weights == {"sales:1": 100, "sales:2": 0}  # the canary's start
        actions = [e.action for e in project.metadata.events.find("pipeline/train")]
        assert actions.count("controller.triggered") == 2
        assert actions.count("controller.retrained") == 2
        assert actions.count("controller.deployed") == 2
        assert project.data.get("sales").version == 3
        runs = project.runs.find(f"tags.`{ITERATION_TAG}` = '{second.id}' and kind = pipeline")
        assert 1 <= len(runs) <= 2  # a run killed before it registered is resumed, once
        assert first.outcome is Outcome.PROMOTED and second.outcome is None
    finally:
        project.close()


def test_two_controllers_on_one_store_one_acts_and_sigterm_stops_both(loop: Path) -> None:
    land(loop, "a.csv", 6)
    port = free_port()
    a, b = _start(loop, "--metrics-port", str(port)), _start(loop)
    try:
        wait_for(lambda: _state(loop) is IterationState.DONE, 60, "the iteration to end")
        project = Project.open(loop)
        holder = project.metadata.controller.holder("controller", time.time())
        project.close()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'mloop_controller_iterations_total{outcome="promoted"} 1.0' in metrics
        assert 'mloop_controller_iterations_total{outcome="failed"} 0.0' in metrics
        leads = holder is not None and holder.split(":")[1] == str(a.pid)
        assert f"mloop_controller_leader {1.0 if leads else 0.0}" in metrics
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=60) for p in (a, b)]
    assert [a.returncode, b.returncode] == [0, 0]
    assert all("controller stopped" in out for out, _ in outs)
    assert sum("standing by" in out for out, _ in outs) >= 1
    assert holder is not None and holder.split(":")[1] in (str(a.pid), str(b.pid))
    project = Project.open(loop)
    try:
        assert len(project.metadata.controller.recent()) == 1
        actions = [e.action for e in project.metadata.events.find("pipeline/train")]
        assert actions.count("controller.triggered") == 1
        assert trained(loop) == 1
        assert [v.version for v in project.models.versions("sales")] == [1]
        assert project.metadata.controller.holder("controller", time.time()) is None  # released
    finally:
        project.close()
