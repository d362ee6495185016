"""Steps as tasks on a real Ray (started locally by `ray.init`), and a clear error for a
cluster address that does not answer."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mloop.domain.run import RunKind
from mloop.errors import StoreUnavailable
from mloop.project import Project


@pytest.mark.xdist_group("ray")
def test_steps_run_as_ray_tasks_at_once(pipes: Path) -> None:
    (pipes / "meet").mkdir()
    result = Project.open().pipelines.run("parallel", executor="ray")
    assert result.ok, result.error  # left and right waited for each other: two tasks at once
    tracking = Project.open().runs
    left = tracking.get(result.steps["left"].run_id or "")
    right_pid = (pipes / "meet" / "right").read_text()
    left_pid = (pipes / "meet" / "left").read_text()
    assert left_pid != right_pid  # two worker processes
    assert left.kind is RunKind.STEP
    assert tracking.get(result.run_id).tags["mloop.executor"] == "ray"


@pytest.mark.xdist_group("ray")
def test_a_pipeline_runs_on_ray_and_its_results_are_reused_locally(pipes: Path) -> None:
    on_ray = Project.open().pipelines.run("train", executor="ray")
    assert on_ray.ok, on_ray.error
    local = Project.open().pipelines.run("train", executor="local")
    assert {e.state for e in local.steps.values()} == {"cached"}


def test_a_ray_address_that_does_not_answer_fails_before_anything_runs(
    pipes: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLOOP_RAY_ADDRESS", f"127.0.0.1:{port}")
    before = Project.open().runs.count()
    result = cli("run", "train", "--executor", "ray")
    assert result.code == 1
    assert f"the Ray cluster at 127.0.0.1:{port} does not answer" in result.err
    assert Project.open().runs.count() == before
    with pytest.raises(StoreUnavailable):
        Project.open().pipelines.run("train", executor="ray")
