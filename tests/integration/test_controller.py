"""The controller in-process on a real project: real pipeline runs, registrations, gates and
deployments on SQLite and PostgreSQL, each scenario asserting the decision and its Events."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mloop.domain.controller import ITERATION_TAG, IterationState, Outcome
from mloop.domain.endpoint import EndpointState
from mloop.project import Project
from tests.integration.controller_project import (
    forget,
    land,
    trained,
    write_loop_project,
    write_yaml,
)

DAY_SECONDS = 86_400.0
STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def loop(make_project: Callable[..., Path], request: pytest.FixtureRequest) -> Iterator[Path]:
    store = getattr(request, "param", "sqlite")
    root = make_project("loop", store=store)
    write_loop_project(root)
    yield root
    forget(root)


def _open(root: Path) -> Project:
    return Project.open(root)


def _actions(project: Project) -> list[str]:
    return [e.action for e in reversed(project.metadata.events.find("pipeline/train"))]


def _tagged_runs(project: Project) -> int:
    return len(project.runs.find(f"tags.`{ITERATION_TAG}` ~ '*' and kind = pipeline"))


@pytest.mark.parametrize("loop", STORES, indirect=True)
def test_new_rows_retrain_once_when_they_reach_the_threshold_and_once_per_cooldown(
    loop: Path,
) -> None:
    project = _open(loop)
    controller = project.controller()
    land(loop, "a.csv", 3)
    tick = controller.tick()
    assert tick.leader and tick.begun == ()  # 3 new rows < 5: nothing starts
    state = controller.status().triggers[0]
    assert state.value["new_rows"] == 3 and not state.value["fired"]
    assert project.metadata.controller.recent() == []

    land(loop, "b.csv", 3, start=20)  # 6 >= 5
    tick = controller.tick()
    assert len(tick.begun) == 1
    (it,) = project.metadata.controller.recent()
    assert it.state is IterationState.DONE and it.outcome is Outcome.PASSED
    assert it.dataset == "sales:2" and it.model == "sales:1"
    assert it.numbers["new_rows"] == 6 and it.numbers["gates"][0]["passed"]
    assert project.models.get("sales@champion").version == 1  # no endpoint: the alias moved
    assert project.data.get("sales").file_count == 3
    assert trained(loop) == 1 and _tagged_runs(project) == 1
    assert _actions(project) == [
        "controller.triggered",
        "controller.snapshotted",
        "controller.retrained",
        "controller.approved",
        "controller.promoted",
    ]
    promoted = project.metadata.events.find("pipeline/train")[0]
    assert "no endpoint configured" in (promoted.reason or "")

    # A burst crossing the threshold twice more within the hour's cool-down: no retrain.
    land(loop, "c.csv", 6, start=40)
    assert controller.tick().begun == ()
    land(loop, "d.csv", 6, start=60)
    assert controller.tick().begun == ()
    assert trained(loop) == 1 and len(project.metadata.controller.recent()) == 1
    assert project.data.get("sales").version == 2  # the burst is not landed either
    assert _actions(project)[-1] == "controller.suppressed"  # said once, not every tick
    assert _actions(project).count("controller.suppressed") == 1
    shown = project.controller().status().triggers[0]
    assert shown.value["new_rows"] == 12 and "cool-down" in shown.value["held"]
    project.close()


def test_a_challenger_failing_its_gates_is_held_and_not_deployed(loop: Path) -> None:
    write_yaml(loop, gate="rows >= 1000000", extra="controller:\n  train: {endpoint: web}\n")
    project = _open(loop)
    land(loop, "a.csv", 6)
    project.controller().tick()
    (it,) = project.metadata.controller.recent()
    assert it.outcome is Outcome.HELD and it.endpoint is None
    held = project.metadata.events.find("pipeline/train")[0]
    assert held.action == "controller.held"
    assert "rows >= 1000000" in (held.reason or "") and "not deployed" in (held.reason or "")
    assert project.endpoints.find() == []  # nothing deployed
    assert project.models.get("sales:1").gates[0].passed is False  # recorded on the version
    with pytest.raises(Exception, match="champion"):
        project.models.get("sales@champion")
    project.close()


def test_a_failing_pipeline_leaves_the_champion_and_counts_as_failed(
    loop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_yaml(loop, cooldown="0")
    project = _open(loop)
    controller = project.controller()
    land(loop, "a.csv", 6)
    controller.tick()
    assert project.models.get("sales@champion").version == 1

    monkeypatch.setenv("CONTROLLER_TEST_BREAK", "1")
    land(loop, "b.csv", 6, start=30)
    controller.tick()
    latest = project.metadata.controller.recent()[0]
    assert latest.outcome is Outcome.FAILED and latest.state is IterationState.DONE
    assert "broken on purpose" in (latest.error or "")
    assert project.models.get("sales@champion").version == 1  # the champion serves on
    assert [v.version for v in project.models.versions("sales")] == [1]
    assert controller.status().failed == 1
    failed = project.metadata.events.find("pipeline/train")[0]
    assert failed.action == "controller.failed" and "champion serves on" in (failed.reason or "")
    project.close()


def test_the_rollout_is_the_endpoints_to_decide_and_its_verdict_ends_the_iteration(
    loop: Path,
) -> None:
    write_yaml(loop, cooldown="0", extra="controller:\n  train: {endpoint: web}\n")
    project = _open(loop)
    controller = project.controller()
    land(loop, "a.csv", 6)
    controller.tick()
    first = project.metadata.controller.recent()[0]
    # Nothing served the endpoint: the first version went direct, and serves.
    assert first.outcome is Outcome.PROMOTED and first.deployment == 1
    assert project.endpoints.get("web").weights == {"sales:1": 100}

    land(loop, "b.csv", 6, start=30)
    controller.tick()
    it = project.metadata.controller.current("train")
    assert it is not None and it.state is IterationState.ROLLING_OUT and it.model == "sales:2"
    canary = project.endpoints.get("web")
    assert canary.sequence == 2 and canary.strategy == "canary"
    assert canary.state is EndpointState.PROGRESSING
    assert controller.tick().moved == ()  # the servers have not decided: it waits
    assert project.models.get("sales@champion").version == 1

    project.endpoints.rollback("web", reason="error rate")  # as the servers' analysis would
    controller.tick()
    ended = project.metadata.controller.get(it.id)
    assert ended.outcome is Outcome.ROLLED_BACK
    assert project.models.get("sales@champion").version == 1
    assert _actions(project)[-2:] == ["controller.deployed", "controller.rolled_back"]

    land(loop, "c.csv", 6, start=50)
    controller.tick()
    again = project.metadata.controller.current("train")
    assert again is not None and again.model == "sales:3"
    project.endpoints.promote("web")
    controller.tick()
    assert project.metadata.controller.get(again.id).outcome is Outcome.PROMOTED
    assert project.models.get("sales@champion").version == 3
    assert _actions(project)[-1] == "controller.promoted"
    project.close()


def test_a_watched_folder_that_fails_is_retried_with_backoff_while_the_loop_goes_on(
    loop: Path,
) -> None:
    write_yaml(loop)
    text = (loop / "mloop.yaml").read_text().replace("path: landing/", "path: gone/")
    (loop / "mloop.yaml").write_text(text)
    project = _open(loop)
    controller = project.controller()
    now = [1_000_000.0]
    controller.clock = lambda: now[0]
    controller.tick()
    state = controller.status().triggers[0]
    assert state.failures == 1 and state.error and state.checked == now[0]
    now[0] += 10  # within the 30 s backoff: not looked at again
    controller.tick()
    assert controller.status().triggers[0].checked == 1_000_000.0
    now[0] += 30
    controller.tick()
    assert controller.status().triggers[0].failures == 2  # then 60 s
    (loop / "gone").mkdir()
    land(loop, "a.csv", 1)
    now[0] += 61
    controller.tick()
    back = controller.status().triggers[0]
    assert back.failures == 0 and back.error is None and back.value["new_rows"] == 0
    assert _actions(project) == ["controller.check_failed"]  # said once per outage
    project.close()


def test_status_json_names_triggers_iterations_and_failures(
    loop: Path, cli: Callable[..., object]
) -> None:
    import json

    land(loop, "a.csv", 6)
    done = cli("controller", "--once")
    assert done.code == 0, done.err  # type: ignore[attr-defined]
    assert "done, passed" in done.out  # type: ignore[attr-defined]
    shown = cli("controller", "status", "--json")
    found = json.loads(shown.out)  # type: ignore[attr-defined]
    assert found["failed"] == 0 and found["holder"] is None  # --once gave the lease up
    assert found["triggers"][0]["trigger"] == "triggers.train[0].new_data"
    assert found["recent"][0]["outcome"] == "passed"
    assert os.environ.get("CONTROLLER_TEST_BREAK") is None


def test_a_schedule_fires_once_per_fire_time_and_unchanged_data_registers_nothing(
    loop: Path,
) -> None:
    from datetime import UTC, datetime

    text = (loop / "mloop.yaml").read_text()
    text = text.replace("    - new_data:", '    - schedule: "0 3 * * *"\n    - new_data:')
    (loop / "mloop.yaml").write_text(text)
    project = _open(loop)
    controller = project.controller()
    now = [datetime(2026, 12, 1, 2, 0, tzinfo=UTC).timestamp()]
    controller.clock = lambda: now[0]
    assert controller.tick().begun == ()  # first seen: waits for 03:00, does not fire now
    shown = controller.status().triggers[0]
    assert shown.next_check == datetime(2026, 12, 1, 3, 0, tzinfo=UTC).timestamp()
    now[0] += 3600 + 30  # 03:00:30
    (it,) = controller.tick().begun
    assert it.trigger == "triggers.train[0].schedule" and "03:00" in it.reason
    assert project.metadata.controller.get(it.id).outcome is Outcome.PASSED
    now[0] += 60
    assert controller.tick().begun == ()  # the same fire time does not fire twice
    now[0] += DAY_SECONDS
    (again,) = controller.tick().begun
    ended = project.metadata.controller.get(again.id)
    assert ended.outcome is Outcome.NO_CHALLENGER  # nothing changed: every step was reused
    assert trained(loop) == 1
    project.close()


def test_a_plugged_in_check_starts_an_iteration_on_the_data_as_it_is(loop: Path) -> None:
    """Drift, accuracy and Alertmanager are checked by functions handed to the controller
    (services/automation/signals.py, written beside this branch): here one that fires once
    with its numbers, and one that raises, which is recorded and backed off."""
    from dataclasses import dataclass, field
    from typing import Any

    from mloop.domain.trigger import Trigger, TriggerKind

    @dataclass(frozen=True)
    class Found:
        fired: bool
        reason: str
        numbers: dict[str, Any] = field(default_factory=dict)

    text = (loop / "mloop.yaml").read_text()
    text = text.replace(
        "    - new_data:",
        "    - accuracy: {endpoint: web, below: 0.8}\n"
        "    - drift: {endpoint: web}\n"
        "    - new_data:",
    )
    (loop / "mloop.yaml").write_text(text)
    answers = [Found(True, "psi 0.31 > 0.2 on x", {"psi": 0.31})]

    def drift(trigger: Trigger) -> Found:
        return answers.pop() if answers else Found(False, "psi 0.01")

    def accuracy(trigger: Trigger) -> Found:
        raise RuntimeError("no labels table")

    project = _open(loop)
    controller = project.controller({TriggerKind.DRIFT: drift, TriggerKind.ACCURACY: accuracy})
    (it,) = controller.tick().begun
    ended = project.metadata.controller.get(it.id)
    assert ended.kind == "drift" and ended.numbers["psi"] == 0.31
    assert ended.dataset is None and ended.outcome is Outcome.PASSED  # trained on sales:1
    assert project.models.get("sales:1").datasets[0].version == 1
    failing = controller.status().triggers[0]
    assert failing.failures == 1 and failing.error == "RuntimeError: no labels table"
    assert "controller.check_failed" in _actions(project)
    project.close()


@pytest.mark.parametrize(
    ("yaml", "message", "hint"),
    [
        ("project: x\n", "no triggers in mloop.yaml", "schedule: '0 3 * * *'"),
        (
            "project: x\npipelines: {train: pipeline:train_pipeline}\n"
            "triggers: {train: [{schedule: '0 3 * * *'}]}\ncontroller: {trian: {}}\n",
            "controller.trian: no pipeline 'trian'",
            "did you mean 'train'?",
        ),
        ("project: x\n", "--interval 'soon' is not a duration", "60s, 10m"),
    ],
    ids=["no-triggers", "unknown-pipeline", "bad-interval"],
)
def test_the_controller_refuses_what_it_cannot_run_with_one_line(
    project: Path, cli: Callable[..., object], yaml: str, message: str, hint: str
) -> None:
    (project / "mloop.yaml").write_text(yaml)
    args = ["controller", "--once"] + (["--interval", "soon"] if "soon" in message else [])
    done = cli(*args)
    assert done.code == 1  # type: ignore[attr-defined]
    err = done.err  # type: ignore[attr-defined]
    assert err.startswith("error: ") and message in err and "hint: " in err and hint in err
    assert "Traceback" not in err
