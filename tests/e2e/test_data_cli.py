"""`mloop data …` as a user types it, on a SQLite project with a local object store."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def objects(root: Path) -> list[Path]:
    base = root / ".mloop" / "objects"
    return [p for p in base.glob("??/*") if not p.name.startswith(".")]


def test_add_stores_each_content_once_and_numbers_versions(project: Path, cli) -> None:
    write(project / "data/raw/a.txt", "alpha")
    write(project / "data/raw/b.txt", "alpha")  # same content: one object
    write(project / "data/raw/sub/c.txt", "gamma")
    first = cli("data", "add", "raw", "data/raw", "-m", "first")
    assert first.code == 0, first.err
    assert "raw:1: 3 files" in first.out
    assert len(objects(project)) == 2

    write(project / "data/raw/a.txt", "alpha two")
    second = cli("data", "add", "raw", "data/raw", "-m", "second", "--json")
    result = json.loads(second.out)
    assert result["version"]["version"] == 2
    assert result["new_objects"] == 1
    assert len(objects(project)) == 3

    again = cli("data", "add", "raw", "data/raw")
    assert "unchanged" in again.out
    listing = json.loads(cli("data", "list", "--json").out)
    assert [(d["name"], d["latest"], d["file_count"]) for d in listing] == [("raw", 2, 3)]


def test_show_lists_files_and_versions(project: Path, cli) -> None:
    write(project / "data/x.txt", "x")
    cli("data", "add", "things", "data/x.txt", "-m", "one")
    shown = json.loads(cli("data", "show", "things:1", "--json").out)
    assert shown["files"][0]["path"] == "data/x.txt"
    assert shown["message"] == "one"
    versions = cli("data", "show", "things", "--versions")
    assert "one" in versions.out
    files = cli("data", "show", "dataset/things:1", "--files")
    assert "data/x.txt" in files.out


def test_status_reports_modified_added_and_deleted(project: Path, cli) -> None:
    for name in ("a", "b", "c"):
        write(project / f"data/{name}.txt", name)
    cli("data", "add", "d", "data")
    clean = json.loads(cli("data", "status", "--json").out)
    assert clean[0]["clean"] is True
    assert clean[0]["unchanged"] == 3

    write(project / "data/a.txt", "changed")
    write(project / "data/new.txt", "new")
    (project / "data/c.txt").unlink()
    report = json.loads(cli("data", "status", "d", "--json").out)[0]
    assert report["modified"] == ["data/a.txt"]
    assert report["added"] == ["data/new.txt"]
    assert report["deleted"] == ["data/c.txt"]
    text = cli("data", "status").out
    assert "modified:" in text and "mloop data add d data" in text


def test_status_sees_same_size_change_despite_stat_cache(project: Path, cli) -> None:
    path = write(project / "data/a.txt", "aaaa")
    cli("data", "add", "d", "data")
    stat = path.stat()
    path.write_text("bbbb")  # same size; put the old mtime back to fool a naive cache
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = json.loads(cli("data", "status", "d", "--json").out)[0]
    # The cache entry was made right after the file was written ("racy"), so it is not
    # trusted and the file is re-hashed: the change is found.
    assert report["modified"] == ["data/a.txt"]


def test_diff_between_versions(project: Path, cli) -> None:
    write(project / "data/keep.txt", "same")
    write(project / "data/gone.txt", "bye")
    write(project / "data/t.csv", "x,y\n1,a\n2,b\n3,c\n")
    cli("data", "add", "d", "data")
    (project / "data/gone.txt").unlink()
    write(project / "data/new.txt", "hi")
    write(project / "data/t.csv", "x,y,z\n10,a,1\n20,b,2\n30,c,3\n40,d,4\n")
    cli("data", "add", "d", "data")
    diff = json.loads(cli("data", "diff", "d:1", "d:2", "--json").out)
    assert [f["path"] for f in diff["added"]] == ["data/new.txt"]
    assert [f["path"] for f in diff["removed"]] == ["data/gone.txt"]
    assert [pair[1]["path"] for pair in diff["modified"]] == ["data/t.csv"]
    table = diff["tables"][0]
    assert (table["old_rows"], table["new_rows"]) == (3, 4)
    assert table["added_columns"] == ["z"]
    text = cli("data", "diff", "d:1", "d:2").out
    assert "+ column z" in text


def test_checkout_restores_files_and_refuses_to_lose_work(project: Path, cli) -> None:
    path = write(project / "data/a.txt", "v1")
    cli("data", "add", "d", "data")
    path.write_text("v2")
    cli("data", "add", "d", "data")

    restored = cli("data", "checkout", "d:1")
    assert restored.code == 0, restored.err
    assert path.read_text() == "v1"

    path.write_text("unsaved work")
    refused = cli("data", "checkout", "d:2")
    assert refused.code == 1
    assert "in no version" in refused.err and "--force" in refused.err
    assert path.read_text() == "unsaved work"  # nothing was lost

    forced = cli("data", "checkout", "d:2", "--force")
    assert forced.code == 0
    assert path.read_text() == "v2"

    elsewhere = cli("data", "checkout", "d:1", "--to", "out")
    assert elsewhere.code == 0
    assert (project / "out/data/a.txt").read_text() == "v1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data", "add", "d", "missing.txt"), "does not exist"),
        (("data", "add", "Bad_Name", "data"), "invalid dataset name"),
        (("data", "add", "d", "/etc/hostname"), "outside the project"),
        (("data", "add", "d", ".mloop"), "which mloop manages"),
        (("data", "show", "nope"), "no dataset 'nope'"),
        (("data", "show", "d:9"), "has no version 9"),
        (("data", "show", "d:zero"), "invalid version"),
        (("data", "show", "d@champion"), "not aliases"),
        (("data", "diff", "d:1", "nope:1"), "no dataset 'nope'"),
        (("data", "push"), "no remote artifact store is configured"),
    ],
    ids=[
        "missing-path",
        "bad-name",
        "outside",
        "state-dir",
        "unknown-dataset",
        "unknown-version",
        "bad-version",
        "alias",
        "diff-unknown",
        "no-remote",
    ],
)
def test_bad_input_is_one_clear_error(
    project: Path, cli: Callable[..., CliResult], args: tuple[str, ...], message: str
) -> None:
    write(project / "data/a.txt", "a")
    assert cli("data", "add", "d", "data").code == 0
    before = sorted(p.name for p in objects(project))
    result = cli(*args)
    assert result.code == 1
    first = result.err.splitlines()[0]
    assert first.startswith("error: ") and message in first
    assert result.err.splitlines()[1].startswith("hint: ")
    assert "Traceback" not in result.err
    assert sorted(p.name for p in objects(project)) == before
    assert json.loads(cli("data", "list", "--json").out)[0]["latest"] == 1


def test_outside_a_project_says_how_to_make_one(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("data", "list")
    assert result.code == 1
    assert "no mloop.yaml" in result.err and "mloop init" in result.err


def test_real_process_round_trip(project: Path, mloop_process) -> None:
    write(project / "data/a.csv", "a,b\n1,2\n3,4\n")
    added = mloop_process("data", "add", "tab", "a.csv", cwd=project / "data")  # from below
    assert added.code == 0, added.err
    assert "tab:1" in added.out and "2 rows x 2 columns" in added.out
    shown = mloop_process("data", "show", "tab", "--json", cwd=project)
    table = json.loads(shown.out)["tables"][0]
    assert table["rows"] == 2
    assert [c["name"] for c in table["columns"]] == ["a", "b"]


def test_help_lists_every_action_in_whole_sentences(cli) -> None:
    shown = cli("data", "--help")
    assert shown.code == 0
    out = shown.out
    line = next(x for x in out.splitlines() if x.strip().startswith("status"))
    assert line.split(None, 1)[1] == "what changed in the working files since the latest version"


def test_status_advice_for_a_deleted_source_works_when_followed(project: Path, cli) -> None:
    write(project / "data/churn.csv", "a\n1\n")
    write(project / "data/extra.csv", "b\n2\n")
    assert cli("data", "add", "churn", "data/churn.csv", "data/extra.csv").code == 0
    (project / "data/churn.csv").unlink()
    text = cli("data", "status").out
    assert "deleted:   data/churn.csv" in text
    advice = text.split("`")[1]
    assert advice == "mloop data add churn data/extra.csv"
    assert "leaves out data/churn.csv" in text
    followed = cli(*advice.split()[1:])
    assert followed.code == 0, followed.err
    assert json.loads(cli("data", "status", "--json").out)[0]["clean"] is True
    assert json.loads(cli("data", "show", "churn", "--json").out)["file_count"] == 1


def test_status_advice_when_every_source_is_gone(project: Path, cli) -> None:
    write(project / "data/churn.csv", "a\n1\n")
    assert cli("data", "add", "churn", "data/churn.csv").code == 0
    (project / "data/churn.csv").unlink()
    report = json.loads(cli("data", "status", "--json").out)[0]
    assert report["missing_sources"] == ["data/churn.csv"]
    text = cli("data", "status").out
    assert "mloop data add" not in text
    assert "`mloop data checkout churn`" in text and "`mloop data remove churn`" in text
    restore = text.split("`")[1]
    assert cli(*restore.split()[1:]).code == 0
    assert (project / "data/churn.csv").read_text() == "a\n1\n"
