"""`mloop runs list|show|compare` as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mloop


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
