"""The rule for links and special files holds beyond datasets: a logged folder and a folder a
step returns (or a model packages) are read by the same walk as `data add`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mloop
from mloop.errors import InvalidInput, InvalidPath
from mloop.project import Project
from mloop.services.tracking.values import load_value, store_value
from mloop.store import open_artifact_store


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret.txt").write_text("not for the store")
    return tmp_path / "outside"


def folder_with(root: Path, kind: str, outside: Path) -> Path:
    folder = root / "model"
    folder.mkdir()
    (folder / "weights.txt").write_text("1 2 3")
    if kind == "outside":
        os.symlink(outside / "secret.txt", folder / "secret.txt")
    elif kind == "dangling":
        os.symlink("nowhere", folder / "gone")
    elif kind == "loop":
        os.symlink("..", folder / "up")
    elif kind == "fifo":
        os.mkfifo(folder / "pipe")
    return folder


BAD = {"outside": "secret.txt", "dangling": "gone", "loop": "up", "fifo": "pipe"}


@pytest.mark.parametrize("kind", list(BAD))
def test_log_artifact_of_a_folder_refuses_what_data_add_refuses(
    project: Path, outside: Path, kind: str
) -> None:
    folder_with(project, kind, outside)
    with mloop.start_run("art") as run, pytest.raises(InvalidPath, match=BAD[kind]):
        mloop.log_artifact("model")
    assert Project.open().runs.get(run.id).outputs == ()


def test_log_artifact_follows_links_inside_the_project(project: Path) -> None:
    folder_with(project, "none", project)
    (project / "vocab.txt").write_text("a b c")
    os.symlink("../vocab.txt", project / "model/vocab.txt")
    with mloop.start_run("art") as run:
        mloop.log_artifact("model")
    outputs = {o.name: o.size for o in Project.open().runs.get(run.id).outputs}
    assert outputs == {"model/vocab.txt": 5, "model/weights.txt": 5}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_folder_value_refuses_what_data_add_refuses(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    """A step that returns a Path (the files flavor) is stored by the same rule."""
    artifacts = open_artifact_store(str(tmp_path / "objects"))
    (tmp_path / "step").mkdir()
    source = folder_with(tmp_path / "step", kind, outside)
    # A named pipe cannot even be copied into the bundle: refused there, as clearly.
    refused = InvalidInput if kind == "fifo" else InvalidPath
    with pytest.raises(refused, match=BAD[kind]):
        store_value(artifacts, source, declared=Path)
    assert not list((tmp_path / "objects").glob("??/*"))


def test_a_folder_value_keeps_links_inside_it(tmp_path: Path) -> None:
    artifacts = open_artifact_store(str(tmp_path / "objects"))
    (tmp_path / "step").mkdir()
    source = folder_with(tmp_path / "step", "none", tmp_path)
    os.symlink("weights.txt", source / "latest.txt")
    stored = store_value(artifacts, source, declared=Path)
    loaded = load_value(artifacts, stored.digest, workdir=tmp_path / "loaded")
    assert (loaded / "latest.txt").read_text() == "1 2 3"
    assert not (loaded / "latest.txt").is_symlink()
