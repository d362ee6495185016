"""Pipelines run for real: tracing, caching, data and code changes, failure, retries, timeouts,
resume, and independent steps running at once on the process executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mloop
from mloop.domain.run import RunKind, RunStatus
from mloop.project import Project
from tests.conftest import run_mloop
from tests.integration.pipeline_project import write_sales
from tests.integration.records import object_path


def run(name: str, **kwargs):
    events: list[tuple[str, str]] = []
    result = Project.open().pipelines.run(
        name,
        kwargs.pop("params", None),
        on_event=lambda e: events.append((e.step, e.state)),
        **kwargs,
    )
    return result, [e for e in events if e[1] != "running"]


def test_a_run_records_a_parent_run_and_a_child_per_step(pipes: Path) -> None:
    result, events = run("train")
    assert result.ok, result.error
    assert events == [
        ("ingest", "finished"),
        ("prepare", "finished"),
        ("train", "finished"),
        ("evaluate", "finished"),
    ]
    tracking = Project.open().runs
    parent = tracking.get(result.run_id)
    assert (parent.kind, parent.pipeline) == (RunKind.PIPELINE, "train")
    assert parent.params == {"depth": "3", "factor": "1.0"}
    assert parent.metrics["accuracy"].value == pytest.approx(7 / 3 / 13)  # lifted from evaluate
    children = Project.open().metadata.runs.children(result.run_id)
    assert [c.name for c in children] == ["ingest", "prepare", "train", "evaluate"]
    evaluate = tracking.get(children[-1].id)
    assert {i.name for i in evaluate.inputs} == {"model", "frame"}
    assert any(o.name == "outputs/0" for o in evaluate.outputs)
    assert {(c.kind, c.pipeline) for c in children} == {(RunKind.STEP, "train")}
    ingest = tracking.get(children[0].id)
    assert [(i.kind, i.ref) for i in ingest.inputs] == [("dataset", "sales:1")]


def test_nothing_changed_means_everything_is_reused(pipes: Path) -> None:
    first, _ = run("train")
    second, events = run("train")
    assert second.ok
    assert [state for _, state in events] == ["cached"] * 4
    first_children = {c.name: c.id for c in Project.open().metadata.runs.children(first.run_id)}
    for step, event in second.steps.items():
        assert event.cached_from == first_children[step]  # the run that computed it
    third, _ = run("train")
    assert third.steps["train"].cached_from == first_children["train"]  # not a copy of a copy


def test_fsck_is_clean_after_a_run_and_a_cached_rerun(pipes: Path, cli) -> None:
    first, _ = run("train")
    run("train")  # every step reused: its outputs are recorded again, copied

    result = cli("fsck", "--full")

    assert result.code == 0, result.out
    assert result.out.splitlines()[-1].split(" objects checked, ")[1] == (
        "all present and intact; 0 unreferenced objects re-hashed"
    )
    for step in Project.open().runs.find(f"parent = {first.run_id}"):
        manifest = next(o for o in step.outputs if o.name == "outputs/0")
        assert manifest.size == len(object_path(pipes, manifest.digest).read_bytes())


def test_a_param_change_reruns_only_the_steps_it_reaches(pipes: Path) -> None:
    run("train")
    result, events = run("train", params={"depth": 5})
    assert dict(events) == {
        "ingest": "cached",
        "prepare": "cached",
        "train": "finished",
        "evaluate": "finished",
    }
    assert result.ok


def test_new_data_changes_the_key(pipes: Path) -> None:
    run("train")
    write_sales(pipes, [10.0, 20.0])
    mloop.data.add("sales", "data/sales.csv")
    result, events = run("train")
    assert [state for _, state in events] == ["finished"] * 4
    ingest = Project.open().metadata.runs.children(result.run_id)[0]
    inputs = Project.open().runs.get(ingest.id).inputs
    assert [(i.kind, i.ref) for i in inputs] == [("dataset", "sales:2")]


def test_editing_a_step_or_a_helper_it_calls_reruns_it_and_what_follows(pipes: Path) -> None:
    def states() -> dict[str, str]:
        done = run_mloop("run", "train", "--json", cwd=pipes)
        assert done.code == 0, done.err
        return {s["step"]: s["state"] for s in json.loads(done.out)["steps"]}

    assert set(states().values()) == {"finished"}
    assert set(states().values()) == {"cached"}
    source = (pipes / "pipeline.py").read_text()
    (pipes / "pipeline.py").write_text(source.replace("/ (10 + model", "/ (11 + model"))
    assert states() == {
        "ingest": "cached",
        "prepare": "cached",
        "train": "cached",
        "evaluate": "finished",
    }
    (pipes / "helpers.py").write_text("def scale_of(factor):\n    return factor * 2\n")
    assert states() == {
        "ingest": "cached",
        "prepare": "finished",
        "train": "finished",
        "evaluate": "finished",
    }
    (pipes / "unrelated.py").write_text("X = 1\n")
    assert set(states().values()) == {"cached"}


def test_a_failed_step_fails_the_run_and_skips_what_needs_it(
    pipes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPES_TEST_FAILURES", "99")
    result, events = run("fragile")
    assert result.status is RunStatus.FAILED
    assert dict(events) == {
        "ingest": "finished",
        "flaky": "failed",
        "slow": "skipped",
        "summarise": "skipped",
    }
    assert result.error == "step 'flaky' failed: ValueError: flaky failure 3"
    flaky = Project.open().runs.get(result.steps["flaky"].run_id or "")
    assert flaky.status is RunStatus.FAILED
    assert "ValueError: flaky failure 3" in (flaky.error or "")
    assert flaky.tags["mloop.attempts"] == "3"
    assert Project.open().runs.get(result.run_id).status is RunStatus.FAILED
    _, again_events = run("fragile")
    assert dict(again_events)["flaky"] == "failed"  # nothing was cached from the failure


def test_retries_rescue_a_flaky_step(pipes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPES_TEST_FAILURES", "2")
    result, _ = run("fragile")
    assert result.ok, result.error
    assert result.steps["flaky"].attempts == 3
    assert (pipes / "counter.txt").read_text() == "3"


def test_a_step_over_its_timeout_fails(pipes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPES_TEST_SLOW", "1")
    result, events = run("fragile")
    assert dict(events)["slow"] == "failed"
    assert "longer than its timeout of 1 s" in (result.error or "")


def test_resume_reruns_only_the_failed_step_and_what_follows(
    pipes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPES_TEST_FAILURES", "99")
    failed, _ = run("fragile")
    monkeypatch.setenv("PIPES_TEST_FAILURES", "0")
    resumed, events = run("fragile", resume=failed.run_id, use_cache=False)
    assert resumed.ok
    assert dict(events) == {
        "ingest": "cached",
        "flaky": "finished",
        "slow": "finished",
        "summarise": "finished",
    }
    ingest_first = Project.open().metadata.runs.children(failed.run_id)[0].id
    assert resumed.steps["ingest"].cached_from == ingest_first
    record = Project.open().runs.get(resumed.run_id)
    assert record.tags["mloop.resumed_from"] == failed.run_id


def test_independent_steps_run_at_once_on_the_process_executor(pipes: Path) -> None:
    (pipes / "meet").mkdir()
    result, events = run("parallel", executor="process")
    assert result.ok, result.error  # each step waited for the other: both ran at the same time
    assert dict(events) == {"left": "finished", "right": "finished"}


def test_a_step_returning_the_wrong_type_fails_with_a_clear_message(pipes: Path) -> None:
    result, _ = run("mistyped")
    assert result.status is RunStatus.FAILED
    assert "list" in (result.error or "") and "DataFrame" in (result.error or "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "nope"), "no pipeline 'nope'"),
        (("run", "train", "-p", "depthh=3"), "has no param 'depthh'"),
        (("run", "train", "-p", "depth"), "invalid param 'depth'"),
        (("run",), "which pipeline?"),
        (("run", "train", "--resume", "abcdef"), "no run 'abcdef'"),
    ],
    ids=["unknown-pipeline", "unknown-param", "param-syntax", "ambiguous", "unknown-resume"],
)
def test_bad_input_fails_before_anything_runs(pipes: Path, cli, args, message) -> None:
    before = Project.open().runs.count()
    result = cli(*args)
    assert result.code == 1
    assert message in result.err
    assert Project.open().runs.count() == before


def test_pipelines_list_and_show(pipes: Path, cli) -> None:
    listed = cli("pipelines", "list")
    assert "train" in listed.out and "pipeline:train_pipeline" in listed.out
    shown = cli("pipelines", "show", "train", "-p", "depth=7")
    assert "depth=7" in shown.out
    lines = [line.split()[0] for line in shown.out.splitlines()[2:]]
    assert lines == ["ingest", "prepare", "train", "evaluate"]
    graph = json.loads(cli("pipelines", "show", "train", "--json").out)
    assert graph["order"] == ["ingest", "prepare", "train", "evaluate"]


def test_mloop_run_prints_each_step_and_exits_non_zero_on_failure(pipes: Path) -> None:
    ok = run_mloop("run", "train", cwd=pipes)
    assert ok.code == 0, ok.err
    assert "evaluate" in ok.out and "finished" in ok.out
    again = run_mloop("run", "train", cwd=pipes)
    assert again.out.count("cached    from run") == 4
    bad = run_mloop("run", "fragile", cwd=pipes, env={"PIPES_TEST_FAILURES": "99"})
    assert bad.code == 1
    assert "failed: step 'flaky' failed: ValueError" in bad.out
    assert "--resume" in bad.out


def test_the_validate_step_stops_the_pipeline_before_training(pipes: Path) -> None:
    first, events = run("checked")
    assert first.ok, first.error
    assert dict(events)["validate"] == "finished"
    write_sales(pipes, [1.5, 2.5, 3.0, 250.0])  # a price far outside the reference range
    mloop.data.add("sales", "data/sales.csv")
    result, events = run("checked")
    assert result.status is RunStatus.FAILED
    assert dict(events) == {"ingest": "finished", "validate": "failed", "train": "skipped"}
    assert "ValidationFailed" in (result.error or "")
    assert "price: range" in (result.error or "")
    step = Project.open().runs.get(result.steps["validate"].run_id or "")
    assert step.metrics["validation.failed_checks"].value >= 1
    assert step.tags["mloop.validated_against"] == "sales:1 data/sales.csv"


def test_an_edited_constant_reruns_the_steps_that_read_it_and_nothing_else(pipes: Path) -> None:
    """Each run is its own process with its own hash seed: keys must not depend on either. The
    first `mloop run` of each pair goes through the replay plan, so replay must agree."""
    seeds = iter(range(100, 200))
    accuracy: list[float] = []

    def states() -> dict[str, str]:
        done = run_mloop(
            "run", "train", "--json", cwd=pipes, env={"PYTHONHASHSEED": str(next(seeds))}
        )
        assert done.code == 0, done.err
        answer = json.loads(done.out)
        run = Project.open().runs.get(answer["run"])
        accuracy.append(run.metrics["accuracy"].value)
        return {s["step"]: s["state"] for s in answer["steps"]}

    def edit(rel: str, old: str, new: str) -> None:
        text = (pipes / rel).read_text()
        assert old in text
        (pipes / rel).write_text(text.replace(old, new))

    reads = {"ingest": "cached", "prepare": "cached", "train": "finished"}
    assert set(states().values()) == {"finished"}
    assert set(states().values()) == {"cached"}
    edit("pipeline.py", "SHIFT = 0.0", "SHIFT = 1.0")  # a constant of the pipeline's module
    assert states() == {**reads, "evaluate": "finished"}
    assert accuracy[-1] == pytest.approx((7 / 3 + 1) / 13)  # the new value, not a stale copy
    edit("settings.py", "WEIGHT = 1.0", "WEIGHT = 2.0")  # `import settings; settings.WEIGHT`
    assert states() == {**reads, "evaluate": "finished"}
    assert accuracy[-1] == pytest.approx((14 / 3 + 1) / 13)
    edit("settings.py", '"west"}', '"west", "up"}')  # `from settings import LABELS`, a set
    assert states() == {**reads, "evaluate": "finished"}
    edit("settings.py", "WEIGHT = 2.0", "UNREAD = 1\nWEIGHT = 2.0")  # read by no step
    assert set(states().values()) == {"cached"}


def test_a_pipeline_target_that_is_a_path_is_a_clear_error(pipes: Path, cli) -> None:
    text = (pipes / "mloop.yaml").read_text()
    (pipes / "mloop.yaml").write_text(text + "  escape: ../../etc/passwd:x\n")
    result = cli("run", "escape")
    assert result.code == 1
    assert "pipeline 'escape' in mloop.yaml: '../../etc/passwd:x' is not module:function" in (
        result.err
    )
    assert "internal error" not in result.err


TWIN = """
import mloop
from helpers import SCALE


@mloop.step
def scaled() -> float:
    mloop.log_metric("scale", SCALE)
    return SCALE


@mloop.pipeline
def {name}():
    scaled()
"""


def test_two_projects_in_one_process_each_import_their_own_modules(
    make_project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both have a pipeline.py and a helpers.py, which Python names alike: the second project's
    # run must import its own, not find the first one's in sys.modules.
    for name, scale in (("first", 1.0), ("second", 2.0)):
        root = make_project(name)
        (root / "pipeline.py").write_text(TWIN.replace("{name}", name))
        (root / "helpers.py").write_text(f"SCALE = {scale}\n")
        (root / "mloop.yaml").write_text(
            f"project: {name}\npipelines:\n  {name}: pipeline:{name}\n"
        )
        result, _ = run(name)
        assert result.ok, result.error
        [step] = Project.open().metadata.runs.children(result.run_id)
        assert step.metrics["scale"].value == scale
