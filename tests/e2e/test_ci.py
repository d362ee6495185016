"""`mloop ci` as a CI system runs it, on a project made with `mloop init --template`.

Every case is a real process in a real project: a fresh project passes; new data that holds is
versioned and trained on; data that fails validation, a failing project test and a gate set
too high each fail CI at their stage, with the stages after it "not run" and the numbers in
the Markdown report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mloop.templates import TEMPLATES
from tests.conftest import CliResult, run_mloop

Cli = Callable[..., CliResult]
REPORT = Path(".mloop") / "ci-report.md"


@pytest.fixture
def churn(cli: Cli, tmp_path: Path) -> Path:
    root = tmp_path / "churn"
    done = cli("init", str(root), "--template", "classification")
    assert done.code == 0, done.err
    return root


def ci(root: Path, *args: str) -> tuple[CliResult, dict[str, Any]]:
    """`mloop ci ARGS --json` in the project, and the result it printed."""
    done = run_mloop("ci", *args, "--json", cwd=root)
    assert done.code in (0, 1), done.err
    return done, json.loads(done.out)


def states(result: dict[str, Any]) -> dict[str, str]:
    return {stage["name"]: stage["state"] for stage in result["stages"]}


def versions(root: Path) -> list[tuple[int, str]]:
    shown = run_mloop("data", "show", "churn", "--versions", "--json", cwd=root)
    return [(v["version"], v["message"]) for v in json.loads(shown.out)]


def test_a_fresh_project_passes_and_the_report_says_why(churn: Path) -> None:
    done = run_mloop("ci", cwd=churn)
    assert done.code == 0, done.out + done.err
    lines = done.out.splitlines()
    assert lines[0] == "mloop ci: pipeline train"
    assert lines[1].split()[:3] == ["data", "passed", "churn:1"]
    assert lines[2].split()[:2] == ["tests", "passed"] and "passed in" in lines[2]
    assert [line.split()[:2] for line in lines[3:9]] == [
        [step, "finished"] for step in ("ingest", "validate", "prepare", "train", "evaluate")
    ] + [["register", "finished"]]
    assert lines[9].split()[:2] == ["pipeline", "passed"]
    assert lines[10].startswith("  gates     passed   2 of 2 passed: accuracy = 0.")
    assert lines[-1] == "ci passed; report: .mloop/ci-report.md"

    report = (churn / REPORT).read_text()
    assert report.startswith("## mloop ci: passed ✅\n")
    data_row = "| data | ✅ passed | churn:1 unchanged; churn-holdout:1 unchanged |"
    for row in (data_row, "| tests | ✅ passed |"):
        assert row in report
    assert "| pipeline | ✅ passed | run " in report and "| gates | ✅ passed |" in report
    assert "| `accuracy >= 0.7` | 0." in report and "| `f1_macro >= 0.6` | 0." in report
    assert "| train | finished | " in report and "Run id: `" in report

    # Again, as a CI job re-run: nothing changed, so every step is reused.
    again, result = ci(churn, "--skip-tests", "--report", "out/report.md")
    assert again.code == 0 and result["ok"]
    assert states(result) == {
        "data": "passed",
        "tests": "skipped",
        "pipeline": "passed",
        "gates": "passed",
    }
    assert {step["state"] for step in result["steps"]} == {"cached"}
    assert [g["passed"] for g in result["gates"]] == [True, True]
    assert Path(result["report"]) == churn / "out" / "report.md"
    assert "| tests | ➖ skipped | --skip-tests |" in (churn / "out" / "report.md").read_text()


def test_new_data_that_holds_is_versioned_validated_and_trained_on(churn: Path) -> None:
    TEMPLATES["classification"].make_data(400, 11).to_csv(churn / "data/churn.csv", index=False)
    done, result = ci(churn, "--skip-tests")
    assert done.code == 0, result["stages"]
    assert [d for d in result["datasets"] if d["dataset"] == "churn"] == [
        {
            "dataset": "churn",
            "state": "validated",
            "version": "churn:2",
            "reference": "churn:1",
            "failures": [],
        }
    ]
    holdout = [d for d in result["datasets"] if d["dataset"] == "churn-holdout"]
    assert [d["state"] for d in holdout] == ["unchanged"]
    assert versions(churn) == [(1, "sample data"), (2, "ci")]
    assert {step["state"] for step in result["steps"]} == {"finished"}  # new data: all rerun
    ingest = run_mloop("runs", "show", result["steps"][0]["run_id"], "--json", cwd=churn)
    assert [i["ref"] for i in json.loads(ingest.out)["inputs"]] == ["churn:2"]


def test_data_that_fails_validation_stops_ci_and_is_not_versioned(churn: Path) -> None:
    frame = pd.read_csv(churn / "data/churn.csv")
    frame.loc[3, "contract"] = "weekly"  # a category the reference never had
    frame.loc[5, "tenure_months"] = 500  # far outside the reference range [1, 72]
    frame.to_csv(churn / "data/churn.csv", index=False)

    done, result = ci(churn)
    assert done.code == 1
    assert not result["ok"]
    assert states(result) == {
        "data": "failed",
        "tests": "not run",
        "pipeline": "not run",
        "gates": "not run",
    }
    (check,) = [d for d in result["datasets"] if d["dataset"] == "churn"]
    assert (check["state"], check["version"], check["reference"]) == ("failed", None, "churn:1")
    assert [f.split(": ")[1:3] for f in check["failures"]] == [
        ["tenure_months", "range"],
        ["contract", "category"],
    ]
    assert result["run_id"] is None and result["steps"] == []
    report = (churn / REPORT).read_text()
    assert "| data | ❌ failed | churn: changed files failed 2 checks against churn:1" in report
    assert "| pipeline | ⏸️ not run | an earlier stage failed |" in report
    assert "contract: category: 1 value not among the reference's categories" in report
    assert "(row 3: 'weekly')" in report and "(row 5: 500)" in report
    assert versions(churn) == [(1, "sample data")]  # the bad files never became a version

    rerun, _ = ci(churn)  # re-running the job does not make the bad data pass
    assert rerun.code == 1


def test_failing_project_tests_stop_ci_before_the_pipeline(churn: Path) -> None:
    (churn / "tests" / "test_broken.py").write_text("def test_broken():\n    assert 1 == 2\n")
    done, result = ci(churn)
    assert done.code == 1
    assert states(result) == {
        "data": "passed",
        "tests": "failed",
        "pipeline": "not run",
        "gates": "not run",
    }
    assert result["tests"]["summary"].startswith("1 failed, ")
    assert "test_broken.py:2: AssertionError" in result["tests"]["output"]
    report = (churn / REPORT).read_text()
    assert "<summary>pytest output</summary>" in report and "assert 1 == 2" in report


def test_a_gate_set_too_high_fails_ci_with_its_numbers(churn: Path) -> None:
    settings = churn / "mloop.yaml"
    settings.write_text(settings.read_text().replace("accuracy >= 0.7", "accuracy >= 0.99"))
    done, result = ci(churn, "--skip-tests")
    assert done.code == 1
    assert states(result)["pipeline"] == "passed" and states(result)["gates"] == "failed"
    accuracy, f1 = result["gates"]
    assert accuracy["gate"] == {"metric": "accuracy", "op": ">=", "threshold": 0.99}
    assert not accuracy["passed"] and f1["passed"]
    shown = f"{accuracy['value']:.4g}"
    assert accuracy["reason"] == f"accuracy = {shown}, needs >= 0.99"
    report = (churn / REPORT).read_text()
    assert f"| `accuracy >= 0.99` | {shown} | ❌ failed: accuracy = {shown}, needs >= 0.99 |" in (
        report
    )
    assert "| gates | ❌ failed | 1 of 2 passed: accuracy = " in report

    text = run_mloop("ci", "--skip-tests", cwd=churn)  # the same, as a person reads it
    assert text.code == 1
    assert f"  gates     failed   1 of 2 passed: accuracy = {shown}, needs >= 0.99" in text.out
    assert text.out.splitlines()[-1] == "ci failed; report: .mloop/ci-report.md"


def test_mistakes_in_the_command_or_the_settings_are_errors_before_any_stage(
    churn: Path, cli: Cli
) -> None:
    unknown = cli("-C", str(churn), "ci", "--pipeline", "nope")
    assert unknown.code == 1
    assert "error: no pipeline 'nope' in mloop.yaml (known: train)" in unknown.err
    settings = churn / "mloop.yaml"
    settings.write_text(settings.read_text().replace("accuracy >= 0.7", "accuracy >> 0.7"))
    malformed = cli("-C", str(churn), "ci")
    assert malformed.code == 1
    assert "gates: invalid value" in malformed.err
    assert "train: invalid gate 'accuracy >> 0.7'" in malformed.err
    assert "hint: what a pipeline's run must reach" in malformed.err
    assert not (churn / REPORT).exists()
