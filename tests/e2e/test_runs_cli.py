"""`mloop runs list|show|compare` as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mloop
from tests.conftest import run_mloop


@pytest.fixture
def three_runs(project: Path) -> list[str]:
    ids = []
    for name, model, lr, acc in (
        ("a", "rf", 0.1, 0.91),
        ("b", "svm", 0.01, 0.85),
        ("c", "rf", 1, 0.7),
    ):
        with mloop.start_run(name, params={"model": model, "lr": lr}, tags={"team": "x"}) as run:
            mloop.log_metric("acc", acc)
            mloop.log_metric("loss", 1 - acc)
        ids.append(run.id)
    with pytest.raises(RuntimeError), mloop.start_run("broken"):
        raise RuntimeError("no")
    return ids


def names(out: str) -> list[str]:
    return [r["name"] for r in json.loads(out)]


def test_list_filters_with_or_not_and_parentheses(three_runs: list[str], cli) -> None:
    assert names(cli("runs", "list", "--json").out) == ["broken", "c", "b", "a"]
    query = "(params.model = rf and metrics.acc > 0.8) or params.lr < 0.05"
    assert names(cli("runs", "list", "--filter", query, "--json").out) == ["b", "a"]
    assert names(cli("runs", "list", "--filter", "not status = finished", "--json").out) == [
        "broken"
    ]
    assert names(cli("runs", "list", "--filter", "name ~ b", "--json").out) == ["broken", "b"]
    assert names(cli("runs", "list", "--filter", "started >= 2000-01-01", "--json").out) == [
        "broken",
        "c",
        "b",
        "a",
    ]


def test_list_sorts_and_limits(three_runs: list[str], cli) -> None:
    by_acc = cli("runs", "list", "--sort=-metrics.acc", "--json").out
    assert names(by_acc) == ["a", "b", "c", "broken"]  # runs without the metric come last
    spelled = cli("runs", "list", "--sort", "metrics.acc desc", "--json").out
    assert names(spelled) == names(by_acc)
    limited = cli("runs", "list", "--sort", "metrics.acc", "--limit", "2")
    assert limited.code == 0
    lines = limited.out.splitlines()
    assert lines[1].split()[1] == "c" and lines[2].split()[1] == "b"
    assert "raise --limit" in limited.out


def test_a_bad_filter_points_at_the_position(three_runs: list[str], cli) -> None:
    result = cli("runs", "list", "--filter", "metrics.acc > and x")
    assert result.code == 1
    assert result.err.startswith("error: invalid filter at position 15: expected a value")
    lines = result.err.splitlines()
    caret = lines[2]
    assert lines[1] == "hint: metrics.acc > and x"
    assert caret.index("^") == len("hint: ") + 14
    unknown = cli("runs", "list", "--filter", "accuracy > 3")
    assert "unknown field 'accuracy'" in unknown.err


def test_show_by_unique_prefix(three_runs: list[str], cli) -> None:
    result = cli("runs", "show", three_runs[0][:8])
    assert result.code == 0
    assert "lr     0.1" in result.out.replace("\t", " ") or "0.1" in result.out
    shown = json.loads(cli("runs", "show", f"run/{three_runs[0]}", "--json").out)
    assert shown["params"] == {"model": "rf", "lr": "0.1"}
    assert shown["metrics"]["acc"]["value"] == 0.91
    assert shown["code"]["commit"] is None  # not in git
    missing = cli("runs", "show", "abcdef12")
    assert missing.code == 1
    assert "no run 'abcdef12'" in missing.err


def test_compare_marks_differences(three_runs: list[str], cli) -> None:
    result = cli("runs", "compare", three_runs[0][:8], three_runs[2][:8])
    assert result.code == 0
    rows = {
        next(w for w in line.split() if w.startswith(("params.", "metrics."))): line
        for line in result.out.splitlines()[1:-1]
    }
    assert rows["params.model"].startswith("   ")  # same value: not marked
    assert rows["params.lr"].startswith("*")
    assert rows["metrics.acc"].startswith("*")
    data = json.loads(cli("runs", "compare", three_runs[0], three_runs[1], "--json").out)
    differs = {(r["group"], r["key"]): r["differs"] for r in data["rows"]}
    assert differs[("params", "model")] is True and differs[("metrics", "acc")] is True


def test_empty_project_lists_nothing(project: Path, cli) -> None:
    result = cli("runs", "list")
    assert result.code == 0
    assert result.out.strip() == "no runs yet"
    assert json.loads(cli("runs", "list", "--json").out) == []


def test_sort_takes_a_descending_key_after_a_space(three_runs: list[str], cli) -> None:
    spaced = cli("runs", "list", "--sort", "-metrics.acc", "--json")
    assert spaced.code == 0, spaced.err
    assert names(spaced.out) == ["a", "b", "c", "broken"]
    assert names(cli("runs", "list", "--sort", "-name", "--json").out) == [
        "c",
        "broken",
        "b",
        "a",
    ]


@pytest.fixture
def pipeline_like(project: Path) -> list[str]:
    """A parent run with two child runs (as a pipeline records its steps), and a lone run."""
    with mloop.start_run("pipeline") as parent:
        for step in ("prepare", "train"):
            with mloop.start_run(step, params={"alpha": 0.5}):
                mloop.log_metric("rmse", 2.0)
    with mloop.start_run("lone", params={"alpha": 0.1}) as lone:
        mloop.log_metric("rmse", 3.0)
    return [parent.id, lone.id]


def test_top_lists_only_top_level_runs(pipeline_like: list[str], cli) -> None:
    assert names(cli("runs", "list", "--json").out) == ["lone", "train", "prepare", "pipeline"]
    assert names(cli("runs", "list", "--top", "--json").out) == ["lone", "pipeline"]
    filtered = cli("runs", "list", "--filter", "parent = null", "--json")
    assert names(filtered.out) == ["lone", "pipeline"]
    combined = cli("runs", "list", "--top", "--filter", "params.alpha > 0", "--json")
    assert names(combined.out) == ["lone"]
    helptext = " ".join(run_mloop("runs", "list", "--help").out.split())
    assert "`parent = null`: top-level runs only" in helptext


def test_columns_choose_what_the_table_shows(pipeline_like: list[str], cli) -> None:
    result = cli("runs", "list", "--top", "--columns", "name,params.alpha,metrics.rmse,parent")

    assert result.code == 0, result.err
    assert [line.split() for line in result.out.splitlines()] == [
        ["NAME", "params.alpha", "metrics.rmse", "PARENT"],
        ["lone", "0.1", "3", "-"],
        ["pipeline", "-", "-", "-"],
    ]
    kinds = cli("runs", "list", "--top", "--columns", "name,kind,pipeline", "--sort", "kind")
    assert [line.split() for line in kinds.out.splitlines()] == [
        ["NAME", "KIND", "PIPELINE"],
        ["lone", "run", "-"],
        ["pipeline", "run", "-"],  # nested runs of a script, not a pipeline's
    ]
    bad = cli("runs", "list", "--columns", "name,accuracy")
    assert bad.code == 1
    assert bad.err.startswith("error: --columns: unknown column 'accuracy'\nhint: use params.KEY")


def test_json_lists_each_runs_inputs_and_outputs(project: Path, cli) -> None:
    (project / "model.pkl").write_bytes(b"weights")
    with mloop.start_run("train") as run:
        run.log_input("dataset", "sales:1", "train")
        run.log_artifact(project / "model.pkl")

    [listed] = json.loads(cli("runs", "list", "--json").out)

    assert listed["inputs"] == [{"kind": "dataset", "ref": "sales:1", "name": "train"}]
    assert [(o["name"], o["size"]) for o in listed["outputs"]] == [("model.pkl", 7)]


@pytest.mark.parametrize("limit", ["99999999999999999999", "9223372036854775808", "0"])
def test_a_limit_out_of_range_is_one_clear_line(three_runs: list[str], cli, limit: str) -> None:
    result = cli("runs", "list", "--limit", limit)

    assert result.code == 2
    assert result.err.splitlines() == [
        f"error: argument --limit: '{limit}' is not a whole number from 1 to 1000000000",
        "hint: see `mloop runs list --help`",
    ]


@pytest.mark.parametrize("ref", ["%", "_", "%874bfc", "a_"])
def test_a_run_ref_with_wildcards_is_refused(three_runs: list[str], cli, ref: str) -> None:
    result = cli("runs", "show", ref)

    assert result.code == 1
    assert result.err.splitlines()[0] == (
        f"error: invalid run id {ref!r}: a run id is 1 to 32 hexadecimal digits (0-9, a-f)"
    )
    assert result.out == ""


def test_delete_hides_a_run_and_restore_brings_it_back(pipeline_like: list[str], cli) -> None:
    parent, _ = pipeline_like

    deleted = cli("runs", "delete", parent[:10], "--reason", "a smoke test")

    assert deleted.code == 0, deleted.err
    assert deleted.out == (
        f"deleted run {parent[:12]} and 2 runs below it; `mloop runs restore {parent[:12]}` "
        "brings it back until `mloop gc` purges it\n"
    )
    assert names(cli("runs", "list", "--json").out) == ["lone"]
    assert names(cli("runs", "list", "--deleted", "--json").out) == [
        "train",
        "prepare",
        "pipeline",
    ]
    table = cli("runs", "list", "--deleted", "--top").out.splitlines()
    assert table[0].split()[:6] == ["ID", "NAME", "STATUS", "STARTED", "DURATION", "DELETED"]
    shown = cli("runs", "show", parent[:10])
    assert "deleted " in shown.out
    assert f"mloop runs restore {parent[:12]}" in shown.out
    events = cli("events", f"run/{parent}").out.splitlines()
    assert events[1].split()[3:5] == ["run.deleted", f"run/{parent[:12]}"]
    assert "a smoke test" in events[1]

    restored = cli("runs", "restore", parent[:10])

    assert restored.out == f"restored run {parent[:12]} and 2 runs below it\n"
    assert names(cli("runs", "list", "--top", "--json").out) == ["lone", "pipeline"]
    assert cli("runs", "list", "--deleted").out == "no deleted runs yet\n"
    twice = cli("runs", "restore", parent[:10])
    assert twice.code == 1
    assert twice.err == f"error: run {parent[:12]} is not deleted\n"
