"""A controller process SIGKILLed between writing an iteration's feedback snapshot (the dataset
version, committed) and moving the iteration on: restarted, it finds that version and makes no
second one. PostgreSQL holds the controller at exactly that point: a row lock on the
iteration, taken by the test, blocks the controller's write that would move it on."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from mloop.domain.controller import IterationState, Outcome
from mloop.domain.feedback import Label
from mloop.project import Project
from tests.e2e.test_controller_restart import _once, _start
from tests.integration.test_controller_feedback import (  # noqa: F401 - `loop` is a fixture
    LABELLED,
    begin_iteration,
    loop,
    snapshotted,
    traffic,
)
from tests.servers import wait_for


def _connect(uri: str) -> object:
    import psycopg

    return psycopg.connect(uri.replace("postgresql+psycopg://", "postgresql://"), autocommit=False)


@pytest.mark.postgres
@pytest.mark.parametrize("loop", ["postgres"], indirect=True)
def test_killed_after_the_snapshot_was_written_and_restarted_it_makes_one_version(
    loop: Path,  # noqa: F811 - the fixture imported above
) -> None:
    traffic(loop, {})  # ten logged requests, no label yet
    project = Project.open(loop)
    try:
        # labels stored a minute ago (past the snapshot's settling time), as an import does
        ago = time.time() - 60
        labels = [Label(rid, y, ago, "labels.csv") for rid, y in LABELLED.items()]
        project.metadata.feedback.add("web", labels)
        begin_iteration(project, "killed", time.time())
        uri = project.settings.store_uri
    finally:
        project.close()
    lock = _connect(uri)
    process = None
    try:
        held = lock.execute(  # type: ignore[attr-defined]
            "SELECT id FROM controller_iterations WHERE id = 'killed' FOR UPDATE"
        ).fetchall()
        assert held == [("killed",)]
        process = _start(loop)

        def blocked_after_the_version() -> bool:
            lock.execute("SELECT pg_stat_clear_snapshot()")  # type: ignore[attr-defined]
            made = lock.execute(  # type: ignore[attr-defined]
                "SELECT count(*) FROM dataset_versions WHERE dataset = 'sales'"
            ).fetchone()[0]
            waiting = lock.execute(  # type: ignore[attr-defined]
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()[0]
            return bool(made == 3 and waiting >= 1)

        wait_for(blocked_after_the_version, 60, "the controller to wait after the snapshot")
    finally:
        if process is not None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        lock.rollback()  # type: ignore[attr-defined]
        lock.close()  # type: ignore[attr-defined]

    project = Project.open(loop)
    try:
        it = project.metadata.controller.get("killed")
        assert it.state is IterationState.TRIGGERED  # the kill came before it moved on
        assert project.data.get("sales").version == 3
    finally:
        project.close()
    _once(loop)  # restarted: continues the same iteration

    project = Project.open(loop)
    try:
        it = project.metadata.controller.get("killed")
        assert it.state is IterationState.DONE and it.outcome is Outcome.PROMOTED
        assert it.dataset == "sales:3" and it.numbers["feedback"]["rows"] == 5
        assert project.data.get("sales").version == 3  # one version, not two
        said = snapshotted(project).reason or ""
        assert said.startswith("sales:3 adds 5 labelled rows from endpoint web")
        assert "made before the controller restarted" in said
        frame = project.data.open("sales", 3).to_pandas()
        assert sorted(frame["y"].tolist())[-5:] == sorted(LABELLED.values())
        assert project.models.get("sales:2").datasets[0].version == 3
    finally:
        project.close()
