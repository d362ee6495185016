"""The store unreachable for a while: a long-lived controller on PostgreSQL keeps running while
the server is down, says so (a warning per failed evaluation, `mloop_controller_store_up 0`
and its failures in a row on /metrics), waits longer after each failure, and when the server
is back takes on what landed meanwhile: one iteration, one retrain, one registration."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mloop.domain.controller import ITERATION_TAG, IterationState, Outcome
from mloop.domain.durations import parse_duration
from mloop.domain.run import RunStatus
from mloop.project import Project
from tests.e2e.test_controller_restart import _start, _state
from tests.integration.controller_project import forget, land, trained, write_loop_project
from tests.servers import free_port, postgres_outage, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def loop(make_project: Callable[..., Path]) -> Iterator[Path]:
    root = make_project("loop", store="postgres")
    write_loop_project(root, cooldown="0")  # no endpoint: an iteration ends after the gates
    yield root
    forget(root)


def _metric(port: int, name: str) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def test_the_controller_outlives_a_store_outage_and_loses_nothing(
    loop: Path, postgres_server: str
) -> None:
    land(loop, "a.csv", 6)
    port = free_port()
    controller = _start(loop, "--metrics-port", str(port))
    try:
        wait_for(lambda: _state(loop) is IterationState.DONE, 60, "the first iteration")
        wait_for(lambda: _metric(port, "mloop_controller_store_up") == 1.0, 30, "metrics")
        with postgres_outage(postgres_server):
            land(loop, "b.csv", 6, start=30)  # lands while the store is down
            wait_for(lambda: _metric(port, "mloop_controller_store_up") == 0.0, 30, "store down")
            failures = "mloop_controller_evaluation_failures"
            wait_for(lambda: (_metric(port, failures) or 0) >= 4, 60, "four failed evaluations")
            assert controller.poll() is None  # still running
        wait_for(lambda: _state(loop, 2) is IterationState.DONE, 120, "the second iteration")
        assert _metric(port, "mloop_controller_store_up") == 1.0
        assert _metric(port, "mloop_controller_evaluation_failures") == 0.0
    finally:
        controller.send_signal(signal.SIGTERM)
        out, err = controller.communicate(timeout=60)
    assert controller.returncode == 0, err
    assert "controller stopped" in out
    said = [line for line in err.splitlines() if "cannot connect to" in line]
    assert len(said) >= 4, err
    waits = [parse_duration(w) for w in re.findall(r"tried again in (\S+)\)", "\n".join(said))]
    assert waits[:4] == [0.2, 0.4, 0.8, 1.6], said  # the interval, doubled at each failure
    project = Project.open(loop)
    try:
        first, second = project.metadata.controller.recent()[::-1]
        assert first.outcome is second.outcome is Outcome.PASSED
        assert (first.model, second.model) == ("sales:1", "sales:2")
        assert second.dataset == "sales:3" and second.numbers["new_rows"] == 6
        assert trained(loop) == 2  # one retrain each: none lost, none twice
        assert [v.version for v in project.models.versions("sales")] == [1, 2]
        assert [v.version for v in project.data.versions("sales")] == [1, 2, 3]
        actions = [e.action for e in project.metadata.events.find("pipeline/train")]
        assert actions.count("controller.triggered") == 2
        assert actions.count("controller.snapshotted") == 2
    finally:
        project.close()


def test_a_store_outage_in_the_middle_of_a_retrain(loop: Path, postgres_server: str) -> None:
    """The server stops while the run is at its train step: the step fails to write, the
    evaluation stops and is retried; when the server is back the same iteration resumes its run
    (the run this process left open is resumed, not waited on for ever) and ends with one
    registration and one Event of each step."""
    hold = loop.parent / "hold"
    hold.mkdir()
    land(loop, "a.csv", 6)
    port = free_port()
    controller = _start(loop, "--metrics-port", str(port), CONTROLLER_TEST_HOLD=str(hold))
    try:
        (hold / "ingest").touch()
        wait_for(lambda: (hold / "at-train").exists(), 60, "the run at its train step")
        with postgres_outage(postgres_server):
            (hold / "train").touch()
            (hold / "register").touch()
            failures = "mloop_controller_evaluation_failures"
            wait_for(lambda: (_metric(port, failures) or 0) >= 2, 60, "two failed evaluations")
        wait_for(lambda: _state(loop) is IterationState.DONE, 120, "the iteration")
    finally:
        controller.send_signal(signal.SIGTERM)
        _out, err = controller.communicate(timeout=60)
    assert controller.returncode == 0, err
    assert "this evaluation stopped: cannot connect to" in err
    project = Project.open(loop)
    try:
        (it,) = project.metadata.controller.recent()
        assert it.outcome is Outcome.PASSED and it.model == "sales:1", it
        assert [v.version for v in project.models.versions("sales")] == [1]
        runs = project.runs.find(f"tags.`{ITERATION_TAG}` = '{it.id}' and kind = pipeline")
        cut, resumed = sorted(runs, key=lambda r: r.started)
        assert resumed.id == it.run_id and resumed.status is RunStatus.FINISHED
        assert cut.status is RunStatus.FAILED and "resumed by" in (cut.error or "")
        actions = [e.action for e in project.metadata.events.find("pipeline/train")]
        assert actions[::-1] == [
            "controller.triggered",
            "controller.snapshotted",
            "controller.retrained",
            "controller.approved",
            "controller.promoted",
        ]
    finally:
        project.close()


def test_a_connection_lost_in_a_transaction_is_the_store_unavailable(postgres_db: str) -> None:
    """The server ends the session under an open transaction (as a restart does): the caller
    gets StoreUnavailable, what the loop retries, not the driver's error; the next read, on a
    new connection, works."""
    from mloop.errors import StoreUnavailable
    from mloop.store.metadata.sql.db import Database

    db = Database(postgres_db)
    try:
        with pytest.raises(StoreUnavailable, match="lost the connection to") as caught:
            db.read(lambda tx: tx.all("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert "check that the server is running" in (caught.value.hint or "")
        assert db.read(lambda tx: tx.all("SELECT 1")) == [(1,)]
    finally:
        db.close()
