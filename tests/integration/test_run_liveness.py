"""Runs whose process was killed: shown as lost, and marked failed by the user, with a real
process SIGKILLed mid-run; and the one heartbeat writer a process shares among its runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mloop.domain.event import Event
from mloop.domain.run import RunStatus
from mloop.project import Project
from mloop.services.tracking.heartbeat import HOST, LOST_AFTER, Heartbeats
from mloop.services.tracking.runs import RunService
from tests.conftest import CliResult
from tests.contract.records import make_run
from tests.servers import wait_for

Cli = Callable[..., CliResult]

# Starts a run and a child run inside it, prints both ids, then waits for a line on stdin.
SCRIPT = """\
import sys
import mloop

with mloop.start_run("victim") as run:
    with mloop.start_run("victim-step") as step:
        print(run.id, step.id, flush=True)
        sys.stdin.readline()
"""


class Victim:
    """A training script in its own process, holding two open runs until told to stop."""

    def __init__(self, project: Path) -> None:
        (project / "victim.py").write_text(SCRIPT)
        self.process = subprocess.Popen(
            [sys.executable, "victim.py"],
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.run_id, self.step_id = self.process.stdout.readline().split()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def finish(self) -> None:
        self.process.communicate("\n", timeout=60)


@pytest.fixture
def victims(project: Path) -> Iterator[list[Victim]]:
    started: list[Victim] = []
    yield started
    for victim in started:
        if victim.process.poll() is None:
            victim.kill()


def lost_ids(cli: Cli) -> set[str]:
    result = cli("runs", "list", "--filter", "status=lost", "--json")
    assert result.code == 0, result.err
    return {r["id"] for r in json.loads(result.out)}


def test_a_killed_run_is_lost_and_can_be_marked_failed(
    project: Path, victims: list[Victim], cli: Cli
) -> None:
    victim = Victim(project)
    victims.append(victim)
    assert lost_ids(cli) == set()  # alive: running, not lost
    alive = cli("runs", "fail", victim.run_id[:12])
    assert alive.code == 1
    assert f"process {victim.process.pid} on {HOST}" in alive.err
    assert "--force" in alive.err

    victim.kill()

    assert lost_ids(cli) == {victim.run_id, victim.step_id}
    shown = cli("runs", "show", victim.run_id[:12])
    assert shown.code == 0, shown.err
    status = next(line for line in shown.out.splitlines() if line.startswith("status"))
    assert "lost (no sign of life since 20" in status
    assert f"{victim.process.pid} on {HOST}" in shown.out
    assert f"mloop runs fail {victim.run_id[:12]}" in shown.out
    fsck = cli("fsck")
    assert fsck.code == 0
    assert "warning: 2 runs are lost" in fsck.out
    assert "mloop runs fail --lost" in fsck.out

    failed = cli("runs", "fail", victim.run_id[:12], "--reason", "OOM-killed")

    assert failed.code == 0, failed.err
    assert failed.out.splitlines() == [
        f"marked failed: {victim.run_id[:12]} victim (was lost)",
        f"marked failed: {victim.step_id[:12]} victim-step (was lost)",  # the run below it
    ]
    assert lost_ids(cli) == set()
    tracking = Project.open().runs
    run = tracking.get(victim.run_id)
    assert run.status is RunStatus.FAILED
    assert run.error == "marked failed by " + tracking.actor + ": OOM-killed"
    assert run.ended == run.heartbeat  # it ended when it was last seen alive
    [event] = [
        e for e in tracking.metadata.events.find(f"run/{run.id}") if e.action == "run.failed"
    ]
    assert (event.reason, event.details["was"]) == ("OOM-killed", "lost")
    again = cli("runs", "fail", victim.run_id[:12])
    assert again.code == 1
    assert "has ended already (failed)" in again.err


def test_fail_lost_marks_every_lost_run_and_leaves_live_ones(
    project: Path, victims: list[Victim], cli: Cli
) -> None:
    killed = [Victim(project), Victim(project)]
    survivor = Victim(project)
    victims.extend([*killed, survivor])
    for victim in killed:
        victim.kill()

    result = cli("runs", "fail", "--lost", "--json")

    assert result.code == 0, result.err
    expected = {i for v in killed for i in (v.run_id, v.step_id)}
    assert {r["id"] for r in json.loads(result.out)} == expected
    assert lost_ids(cli) == set()
    survivor.finish()
    tracking = Project.open().runs
    assert tracking.get(survivor.run_id).status is RunStatus.FINISHED
    assert cli("runs", "fail", "--lost").out == "no lost runs\n"
    both = cli("runs", "fail", "--lost", survivor.run_id)
    assert both.code == 1
    assert "not both" in both.err


def test_a_run_on_another_host_is_lost_once_its_heartbeat_is_stale(project: Path) -> None:
    opened = Project.open(project)
    now = time.time()
    for run_id, beat in (("a" * 32, now - LOST_AFTER - 60), ("b" * 32, now - 5)):
        run = make_run(id=run_id, pid=1, host="another-machine", started=now - 3600, heartbeat=beat)
        opened.metadata.runs.create(run, Event(now, "ada", "run.started", f"run/{run_id}"))

    # pid 1 is alive here, but on that machine it is not ours to look at: only beats count
    assert opened.runs.get("a" * 32).status is RunStatus.LOST
    assert opened.runs.get("b" * 32).status is RunStatus.RUNNING
    opened.close()


def test_one_thread_beats_for_all_of_a_process_runs(project: Path) -> None:
    opened = Project.open(project)
    beats = Heartbeats(interval=0.05)
    tracker = RunService(opened.metadata, opened.artifacts, "ada", project, heartbeats=beats)
    tracker.environment()  # captured once per process anyway; not part of what is counted
    before = set(threading.enumerate())
    runs = [tracker.start(f"trial-{i}") for i in range(20)]
    assert set(threading.enumerate()) - before == {beats.thread}  # one thread, not one per run

    def beaten_together() -> bool:
        found = [opened.metadata.runs.get(r.id) for r in runs]
        stamps = {r.heartbeat for r in found}
        return len(stamps) == 1 and all(r.last_seen > r.started for r in found)

    wait_for(beaten_together, 30, "one heartbeat write for all 20 runs")
    for run in runs:
        run.end()
    wait_for(lambda: beats.thread is None, 30, "the heartbeat thread to stop with no open run")
    last = opened.metadata.runs.get(runs[0].id).heartbeat
    beats.add(opened.metadata, runs[0].id)  # even if asked, an ended run is not beaten for
    beats.beat()
    assert opened.metadata.runs.get(runs[0].id).heartbeat == last
    beats.discard(opened.metadata, runs[0].id)  # else its 50 ms thread beats on, into later tests
    opened.close()


FORK = """import json, os, sys
from mloop.services.tracking.heartbeat import Heartbeats
from mloop.store import open_metadata_store

beats = Heartbeats(interval=3600)
beats.add(open_metadata_store(sys.argv[1]), "parent-run")
pid = os.fork()
if pid == 0:
    beats.add(open_metadata_store(sys.argv[1]), "child-run")
    print(json.dumps(list(beats.open_runs().values())), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_forked_child_beats_only_for_its_own_runs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mloop.db'}"
    done = subprocess.run(
        [sys.executable, "-c", FORK, uri], capture_output=True, text=True, timeout=120, check=True
    )

    assert json.loads(done.stdout) == [["child-run"]]
