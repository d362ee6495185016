"""`mloop data remove`, `mloop runs delete` and the gc that reclaims them, as a user types them:
soft removals with events, hidden from listings, undone, refused while a model needs the data,
then purged by `mloop gc` with the objects only they referred to."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import mloop
from tests.conftest import CliResult
from tests.integration.records import object_path

Cli = Callable[..., CliResult]


def digests(cli: Cli, ref: str) -> dict[str, str]:
    shown = json.loads(cli("data", "show", ref, "--json").out)
    return {f["path"]: f["digest"] for f in shown["files"]}


@pytest.fixture
def sales(project: Path, cli: Cli) -> Path:
    """sales:1 (a.csv) and sales:2 (a.csv changed, b.csv added); a model trained on sales:1."""
    from sklearn.linear_model import LinearRegression

    data = project / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n0,0\n1,1\n")
    assert cli("data", "add", "sales", "data").code == 0
    (data / "a.csv").write_text("x,y\n0,0\n1,2\n")
    (data / "b.csv").write_text("x,y\n5,5\n")
    assert cli("data", "add", "sales", "data").code == 0
    with mloop.start_run("train") as run:
        run.log_input("dataset", "sales:1")
        mloop.register_model(LinearRegression().fit([[0], [1]], [0, 1]), "churn")
    return project


def test_a_removed_version_is_hidden_restored_and_finally_purged(sales: Path, cli: Cli) -> None:
    kept, gone = digests(cli, "sales:1"), digests(cli, "sales:2")

    removed = cli("data", "remove", "sales:2", "--reason", "bad export")

    assert removed.code == 0, removed.err
    assert removed.out == (
        "removed sales:2; `mloop data remove sales:2 --undo` brings it back until "
        "`mloop gc` purges it\n"
    )
    assert cli("data", "list", "--json").out.count('"latest": 1') == 1
    assert json.loads(cli("data", "status", "--json").out)[0]["version"] == 1
    hidden = cli("data", "show", "sales:2")
    assert hidden.code == 1
    assert hidden.err.splitlines() == [
        "error: dataset sales:2 was removed",
        "hint: bring it back with `mloop data remove sales:2 --undo`",
    ]
    event = cli("events", "dataset/sales:2").out.splitlines()[1]
    assert "dataset.removed" in event and "bad export" in event
    assert cli("data", "remove", "sales:2", "--undo").out == "restored sales:2\n"
    assert cli("data", "show", "sales:2").code == 0
    assert cli("data", "remove", "sales:2").code == 0

    dry = cli("gc", "--grace", "0", "--dry-run")
    assert dry.out.splitlines()[0] == (
        "would purge 0 deleted runs and 1 removed dataset versions (sales:2)"
    )
    assert f"would remove {gone['data/b.csv'][:12]}" in dry.out
    assert object_path(sales, gone["data/b.csv"]).exists()

    done = cli("gc", "--grace", "0")

    assert done.code == 0, done.err
    assert (
        done.out.splitlines()[0] == "purged 0 deleted runs and 1 removed dataset versions (sales:2)"
    )
    assert not object_path(sales, gone["data/a.csv"]).exists()
    assert not object_path(sales, gone["data/b.csv"]).exists()
    assert object_path(sales, kept["data/a.csv"]).exists()
    assert cli("fsck", "--full").code == 0
    undo = cli("data", "remove", "sales:2", "--undo")
    assert undo.code == 1
    assert undo.err.startswith("error: dataset 'sales' has no version 2")


def test_data_a_model_was_trained_on_needs_force(sales: Path, cli: Cli) -> None:
    refused = cli("data", "remove", "sales:1")

    assert refused.code == 1
    assert refused.err.splitlines() == [
        "error: dataset sales:1 trained model version churn:1 (sales:1)",
        "hint: the model keeps its files but loses this data from its lineage once gc purges "
        "it; to remove it anyway: mloop data remove sales:1 --force",
    ]
    whole = cli("data", "remove", "sales")
    assert whole.code == 1
    assert "churn:1 (sales:1)" in whole.err
    assert cli("data", "show", "sales:1").code == 0

    forced = cli("data", "remove", "sales", "--force", "--json")

    assert json.loads(forced.out) == {"removed": ["sales:1", "sales:2"]}
    assert cli("data", "list").out.startswith("no datasets yet")
    assert cli("data", "status", "--json").out.strip() == "[]"
    assert cli("data", "remove", "sales", "--undo").out == "restored sales:1, sales:2\n"


def test_a_deleted_run_and_its_artifacts_go_with_gc(project: Path, cli: Cli) -> None:
    (project / "model.pkl").write_bytes(b"weights only this run has")
    (project / "shared.txt").write_bytes(b"also logged by a kept run")
    with mloop.start_run("doomed") as doomed:
        [model] = doomed.log_artifact(project / "model.pkl")
        doomed.log_artifact(project / "shared.txt")
    with mloop.start_run("kept") as kept:
        [shared] = kept.log_artifact(project / "shared.txt")

    assert cli("runs", "delete", doomed.id[:8]).code == 0
    assert cli("gc", "--grace", "3600").out.startswith("removed 0 unreferenced")  # too recent
    assert object_path(project, model.digest).exists()
    done = cli("gc", "--grace", "0")

    assert done.out.splitlines()[0] == "purged 1 deleted runs and 0 removed dataset versions"
    assert not object_path(project, model.digest).exists()
    assert object_path(project, shared.digest).exists()
    assert cli("runs", "show", doomed.id[:8]).code == 1
    assert [r["name"] for r in json.loads(cli("runs", "list", "--json").out)] == ["kept"]
    assert cli("fsck", "--full").code == 0
    trail = [line.split()[3] for line in cli("events", f"run/{doomed.id}").out.splitlines()[1:]]
    assert trail == ["run.purged", "run.deleted", "run.finished", "run.started"]
