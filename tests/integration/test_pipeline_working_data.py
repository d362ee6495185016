"""`mloop run` looks at the working files of the datasets it reads: changed files become a new
version (the steps reading it run again), `--no-version-data` keeps the latest version with a
warning, pinned versions and deletions are never versioned, and nothing is ignored silently."""

from __future__ import annotations

import json
from pathlib import Path

from mloop.project import Project
from mloop.services.pipelines.sweep import Sweeper, combinations, parse_axis
from mloop.services.pipelines.working import DataChange, WorkingData
from tests.conftest import run_mloop
from tests.integration.pipeline_project import write_sales


def run(name: str, **kwargs):
    changes: list[DataChange] = []
    states: dict[str, str] = {}
    result = Project.open().pipelines.run(
        name,
        on_event=lambda e: states.__setitem__(e.step, e.state),
        on_data=changes.append,
        **kwargs,
    )
    assert result.ok, result.error
    assert result.data == changes
    return result, states, changes


def versions() -> list[int]:
    return [v.version for v in Project.open().data.versions("sales")]


def test_changed_working_files_become_a_version_the_run_reads(pipes: Path) -> None:
    run("train")
    write_sales(pipes, [10.0, 20.0])
    result, states, changes = run("train")
    assert [(c.dataset, c.action, c.latest, c.version) for c in changes] == [
        ("sales", "versioned", 1, 2)
    ]
    assert changes[0].modified == ("data/sales.csv",)
    assert set(states.values()) == {"finished"}
    assert result.datasets == {"sales": 2}
    made = Project.open().data.get("sales:2")
    assert made.message.startswith("versioned by `mloop run train`: working files changed")
    assert "modified data/sales.csv" in made.message
    events = Project.open().metadata.events.find(ref="dataset/sales:2")
    assert [(e.action, e.reason) for e in events] == [("dataset.version_created", made.message)]
    _, states, changes = run("train")  # nothing changed since: all reused, nothing said
    assert changes == [] and set(states.values()) == {"cached"}
    assert versions() == [1, 2]


def test_the_latest_versions_as_they_are_with_a_warning(pipes: Path) -> None:
    assert run_mloop("run", "train", cwd=pipes).code == 0
    write_sales(pipes, [10.0, 20.0])
    for _ in range(2):  # through the trace, then through the replay plan: warned both times
        kept = run_mloop("run", "train", "--no-version-data", cwd=pipes)
        assert kept.code == 0, kept.err
        assert (
            "warning: sales: working files differ from sales:1 (modified data/sales.csv); "
            "using sales:1 as it is (--no-version-data)"
        ) in kept.err
        assert kept.out.count("cached    from run") == 4
    assert versions() == [1]
    done = run_mloop("run", "train", "--json", "--no-version-data", cwd=pipes)
    assert [(c["dataset"], c["action"]) for c in json.loads(done.out)["data"]] == [
        ("sales", "kept")
    ]
    assert "warning: sales: working files differ from sales:1" in done.err  # JSON or not


def test_the_replay_plan_notices_changed_working_files(pipes: Path) -> None:
    for _ in range(2):  # the second run is replayed from the plan, without importing the code
        assert run_mloop("run", "train", cwd=pipes).code == 0
    write_sales(pipes, [10.0, 20.0])
    changed = run_mloop("run", "train", cwd=pipes)
    assert changed.code == 0, changed.err
    lines = changed.out.splitlines()
    assert lines[0] == "sales: working files changed → sales:2 (versioned by this run)"
    assert "ingest           finished" in changed.out
    assert versions() == [1, 2]


def test_pinned_versions_are_never_versioned_again(pipes: Path) -> None:
    run("pinned")
    write_sales(pipes, [10.0, 20.0])
    result, states, changes = run("pinned")
    assert changes == [] and set(states.values()) == {"cached"}
    assert result.datasets == {"sales:1": 1}
    assert versions() == [1]


def test_deleted_working_files_are_reported_not_versioned(pipes: Path) -> None:
    run("train")
    (pipes / "data" / "sales.csv").unlink()
    _, states, changes = run("train")
    assert [(c.action, c.deleted, c.version) for c in changes] == [
        ("deleted", ("data/sales.csv",), 1)
    ]
    assert set(states.values()) == {"cached"}
    assert versions() == [1]
    done = run_mloop("run", "train", cwd=pipes)
    assert done.code == 0, done.err
    assert "sales: working files differ from sales:1 (deleted data/sales.csv)" in done.err
    assert "a run never versions a deletion (restore them: mloop data checkout sales:1)" in (
        done.err
    )


def test_a_sweep_versions_changed_files_once_before_its_trials(pipes: Path) -> None:
    write_sales(pipes, [10.0, 20.0])
    trials = combinations([parse_axis("depth=1:3")], {}, None, None)
    heard: list[DataChange] = []
    result = Sweeper(Project.open().pipelines).run("train", trials, on_data=heard.append)
    assert [(c.action, c.version) for c in result.data] == [("versioned", 2)]
    assert list(result.data) == heard
    assert versions() == [1, 2]
    assert Project.open().data.get("sales:2").message.startswith("versioned by `mloop sweep")
    assert {t.result.datasets["sales"] for t in result.trials} == {2}
    kept = Sweeper(Project.open().pipelines).run(
        "train", trials[:1], working_data=WorkingData.LATEST
    )
    assert kept.data == ()  # the working files are the latest version now
