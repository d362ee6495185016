"""Symbolic links and special files in what mloop reads in: one rule everywhere.

A link whose target resolves inside the project is followed (its content stored); a link out of
the project, a dangling link, a loop and a special file are refused with one clear error naming
the path and the link's target. The same walk serves `data add`, `data status`, a logged folder
and a folder a step returns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult


def objects(root: Path) -> list[str]:
    return sorted(p.name for p in (root / ".mloop/objects").glob("??/*"))


# kind -> (link name under data/, its target, what the error must name); OUT is the outside folder
LINKS = {
    "outside-file": ("secret.txt", "OUT/secret.txt", "OUT/secret.txt"),
    "etc-passwd": ("passwd", "/etc/passwd", "/etc/passwd"),
    "outside-folder": ("elsewhere", "OUT", "OUT"),
    "relative-escape": ("up.txt", "../../outside/secret.txt", "../../outside/secret.txt"),
    "dangling": ("gone.csv", "nowhere.csv", "nowhere.csv"),
    "into-mloop": ("db", "../.mloop/mloop.db", ".mloop/mloop.db"),
}


def make_link(root: Path, kind: str, outside: Path) -> tuple[str, str]:
    """Put one troublesome entry into data/; return (its path, what the error must name)."""
    data = root / "data"
    if kind in LINKS:
        name, target, named = (x.replace("OUT", str(outside)) for x in LINKS[kind])
        os.symlink(target, data / name)
        return f"data/{name}", named
    if kind == "loop":
        os.symlink("b.lnk", data / "a.lnk")
        os.symlink("a.lnk", data / "b.lnk")
        return "data/", ".lnk"
    if kind == "folder-loop":
        (data / "sub").mkdir()
        os.symlink("..", data / "sub/up")
        return "data/sub/up", ".."
    assert kind == "fifo"
    os.mkfifo(data / "pipe")
    return "data/pipe", "FIFO"


BAD = [
    "outside-file",
    "etc-passwd",
    "outside-folder",
    "relative-escape",
    "dangling",
    "loop",
    "folder-loop",
    "into-mloop",
    "fifo",
]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("not for the store")
    return folder


@pytest.fixture
def data(project: Path) -> Path:
    (project / "data").mkdir()
    (project / "data/ok.csv").write_text("a,b\n1,2\n")
    return project / "data"


def assert_one_clear_error(result: CliResult, *named: str) -> None:
    assert result.code == 1, result.out + result.err
    lines = result.err.splitlines()
    assert lines[0].startswith("error: "), result.err
    for text in named:
        assert text in lines[0], (text, lines[0])
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.err and "internal error" not in result.err


@pytest.mark.parametrize("kind", BAD)
def test_add_refuses_links_out_of_the_project_and_special_files(
    project: Path, data: Path, outside: Path, cli: Callable[..., CliResult], kind: str
) -> None:
    path, target = make_link(project, kind, outside)
    result = cli("data", "add", "d", "data")
    assert_one_clear_error(result, path, target)
    assert json.loads(cli("data", "list", "--json").out) == []
    assert objects(project) == []
    if kind in ("outside-file", "etc-passwd", "relative-escape"):
        assert "copy the file into the project" in result.err


@pytest.mark.parametrize("kind", BAD)
def test_status_applies_the_same_rule(
    project: Path, data: Path, outside: Path, cli: Callable[..., CliResult], kind: str
) -> None:
    assert cli("data", "add", "d", "data").code == 0
    path, target = make_link(project, kind, outside)
    assert_one_clear_error(cli("data", "status"), path, target)


def test_links_inside_the_project_are_followed(
    project: Path, data: Path, cli: Callable[..., CliResult]
) -> None:
    (project / "shared/tables").mkdir(parents=True)
    (project / "shared/tables/t.csv").write_text("x\n1\n")
    (project / "shared/lookup.csv").write_text("k,v\n1,2\n")
    os.symlink("../shared/lookup.csv", data / "lookup.csv")
    os.symlink(project / "shared/tables", data / "tables")  # absolute, but inside
    added = cli("data", "add", "d", "data", "--json")
    assert added.code == 0, added.err
    files = {f["path"]: f["size"] for f in json.loads(added.out)["version"]["files"]}
    assert files == {"data/lookup.csv": 8, "data/ok.csv": 8, "data/tables/t.csv": 4}
    assert json.loads(cli("data", "status", "--json").out)[0]["clean"] is True
    (project / "shared/lookup.csv").write_text("k,v\n1,3\n")  # changed through the link
    assert json.loads(cli("data", "status", "--json").out)[0]["modified"] == ["data/lookup.csv"]
    restored = cli("data", "checkout", "d:1", "--to", "copy")
    assert restored.code == 0, restored.err
    assert (project / "copy/data/tables/t.csv").read_text() == "x\n1\n"


def test_a_named_link_out_of_the_project_is_refused(
    project: Path, outside: Path, cli: Callable[..., CliResult]
) -> None:
    os.symlink(outside / "secret.txt", project / "secret.txt")
    assert_one_clear_error(cli("data", "add", "d", "secret.txt"), "outside the project")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "the path is empty"),
        (".", "is the whole project"),
        ("data/..", "is the whole project"),
        (".mloop", "inside .mloop/"),
        ("./.mloop/objects", "inside .mloop/"),
        ("data/../.mloop/mloop.db", "inside .mloop/"),
        (".git", "inside .git/"),
    ],
    ids=["empty", "dot", "root-via-dotdot", "state", "objects", "database", "git"],
)
def test_add_refuses_the_project_itself_and_what_mloop_manages(
    project: Path, data: Path, cli: Callable[..., CliResult], given: str, message: str
) -> None:
    (project / ".git").mkdir()
    result = cli("data", "add", "d", given)
    assert_one_clear_error(result, message)
    assert json.loads(cli("data", "list", "--json").out) == []
    if message == "is the whole project" or given == "":
        assert "mloop data add NAME data/" in result.err


def test_add_refuses_a_link_into_mloop_named_directly(
    project: Path, data: Path, cli: Callable[..., CliResult]
) -> None:
    os.symlink("../.mloop", data / "state")
    assert_one_clear_error(cli("data", "add", "d", "data/state"), "inside .mloop/")
