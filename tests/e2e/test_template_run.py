"""The template's pipeline as a newcomer edits it: a changed constant and changed working data
both reach the registered model (each went unseen before: all steps came from the cache)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_mloop
from tests.e2e.test_template import Cli, init, run

NUMERIC = 'NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]'


def states(answer: dict) -> dict[str, str]:
    return {s["step"]: s["state"] for s in answer["steps"]}


def model_columns(root: Path) -> list[str]:
    done = run_mloop("models", "show", "churn", "--json", cwd=root)
    assert done.code == 0, done.err
    return [column["name"] for column in json.loads(done.out)["signature"]["inputs"]]


def test_editing_a_module_constant_retrains_the_model(cli: Cli, tmp_path: Path) -> None:
    root = init(cli, tmp_path)
    run(root)
    assert "monthly_charges" in model_columns(root)
    source = (root / "pipeline.py").read_text()
    assert NUMERIC in source
    (root / "pipeline.py").write_text(source.replace(NUMERIC, 'NUMERIC = ["tenure_months"]'))
    assert states(run(root)) == {  # validate checks the feature columns, NUMERIC among them
        "ingest": "cached",
        "validate": "finished",
        "prepare": "cached",
        "train": "finished",
        "evaluate": "finished",
        "register": "finished",
    }
    assert model_columns(root) == ["tenure_months", "contract", "payment_method"]


def test_edited_working_data_is_versioned_and_trained_on(cli: Cli, tmp_path: Path) -> None:
    root = init(cli, tmp_path)
    run(root)
    data = root / "data" / "churn.csv"
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[: len(lines) * 3 // 4]))  # a quarter of the rows withdrawn
    done = run_mloop("run", cwd=root)
    assert done.code == 0, done.out + done.err
    assert "churn: working files changed → churn:2 (versioned by this run)" in done.out
    assert "ingest           finished" in done.out
    model = json.loads(run_mloop("models", "show", "churn", "--json", cwd=root).out)
    assert "churn:2" in model["datasets"]  # the new model was trained on churn:2
