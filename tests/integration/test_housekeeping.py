"""fsck and gc against a real project: objects deleted, damaged, unreferenced, old and new."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mloop
from mloop.errors import InvalidInput
from mloop.project import Project
from tests.conftest import CliResult
from tests.integration.records import add_dataset_version, object_path

Cli = Callable[..., CliResult]
HOUR = 3600.0


@pytest.fixture
def opened(project: Path) -> Iterator[Project]:
    found = Project.open(project)
    yield found
    found.close()


def age(path: Path, seconds: float) -> None:
    """Make `path` look written `seconds` ago (instead of waiting that long)."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def damage(path: Path) -> None:
    """Flip one bit, keeping the size: only a re-hash can notice."""
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))


def test_fsck_is_clean_on_a_healthy_project(project: Path, cli: Cli) -> None:
    add_dataset_version(project, "sales", {"a.csv": b"x\n1\n"})
    (project / "model.pkl").write_bytes(b"weights")
    with mloop.start_run("train") as run:
        run.log_artifact(project / "model.pkl")
    result = cli("fsck")
    assert result.code == 0, result.err
    # a.csv, model.pkl and the environment's package list
    assert result.out == "3 objects checked, all present and intact\n"
    full = cli("fsck", "--full")
    assert full.code == 0
    assert full.out == (
        "3 objects checked, all present and intact; 0 unreferenced objects re-hashed\n"
    )


def test_fsck_names_a_missing_object_and_every_owner(project: Path, cli: Cli) -> None:
    shared = b"id,amount\n1,10\n"
    v1 = add_dataset_version(project, "sales", {"data/a.csv": shared})
    add_dataset_version(project, "sales", {"data/a.csv": shared, "data/b.csv": b"id\n2\n"})
    digest = v1.files[0].digest
    object_path(project, digest).unlink()
    result = cli("fsck")
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0].startswith(f"{digest[:12]}  missing  referenced by ")
    assert "dataset/sales:1" in lines[0]
    assert "dataset/sales:2" in lines[0]
    assert lines[1] == "2 objects checked: 1 bad (1 missing)"


def test_fsck_full_finds_a_corrupted_object(project: Path, cli: Cli) -> None:
    (project / "model.pkl").write_bytes(b"weights")
    with mloop.start_run("train") as run:
        [output] = run.log_artifact(project / "model.pkl")
    damage(object_path(project, output.digest))

    quick = cli("fsck")
    assert quick.code == 0  # same size: only --full reads the bytes
    result = cli("fsck", "--full", "--json")
    assert result.code == 1
    body = json.loads(result.out)
    assert body["ok"] is False
    [problem] = body["problems"]
    assert problem["digest"] == output.digest
    assert problem["kind"] == "corrupt"
    assert problem["owners"] == [f"run/{run.id} model.pkl"]

    text = cli("fsck", "--full")
    assert text.code == 1
    assert text.out.splitlines()[0] == (
        f"{output.digest[:12]}  corrupt (content does not match its digest)"
        f"  referenced by run/{run.id} model.pkl"
    )


def test_fsck_reports_a_wrong_size(project: Path, opened: Project) -> None:
    version = add_dataset_version(project, "sales", {"a.csv": b"x\n1\n"})
    digest = version.files[0].digest
    object_path(project, digest).write_bytes(b"truncated!")
    report = opened.storage.fsck()
    [problem] = report.problems
    assert (problem.kind, problem.detail) == ("size", "size is 10 bytes, expected 4")
    assert problem.owners == ("dataset/sales:1 a.csv",)


def test_fsck_full_warns_about_damaged_unreferenced_objects(
    project: Path, opened: Project, cli: Cli
) -> None:
    stray = opened.artifacts.put_bytes(b"nobody refers to me")
    damage(object_path(project, stray))
    report = opened.storage.fsck(full=True)
    assert report.ok
    assert [(w.digest, w.kind) for w in report.warnings] == [(stray, "corrupt")]
    result = cli("fsck", "--full")
    assert result.code == 0
    assert result.out.startswith(f"warning: unreferenced {stray[:12]}  corrupt")


def test_fsck_progress_counts_every_object(project: Path, opened: Project) -> None:
    for i in range(5):
        add_dataset_version(project, f"set-{i}", {"a.csv": f"x\n{i}\n".encode()})
    opened.artifacts.put_bytes(b"unreferenced")
    seen: list[int] = []
    plan = opened.storage.plan_fsck(full=True)
    report = opened.storage.fsck(progress=seen.append, plan=plan)
    assert sum(seen) == plan.total == 6
    assert (report.checked, report.unreferenced_checked) == (5, 1)


def test_gc_removes_only_old_unreferenced_objects(project: Path, opened: Project) -> None:
    kept = add_dataset_version(project, "sales", {"a.csv": b"x\n1\n"}).files[0].digest
    old = opened.artifacts.put_bytes(b"left behind by a crash long ago")
    fresh = opened.artifacts.put_bytes(b"stored by a `data add` still in progress")
    age(object_path(project, old), 2 * HOUR)
    age(object_path(project, kept), 2 * HOUR)  # old but referenced

    report = opened.storage.gc()
    assert report.removed == ((old, 31),)
    assert report.kept_recent == 1
    assert not object_path(project, old).exists()
    assert object_path(project, fresh).exists()
    assert object_path(project, kept).exists()

    again = opened.storage.gc(grace=0)
    assert again.removed == ((fresh, len(b"stored by a `data add` still in progress")),)
    assert object_path(project, kept).exists()
    assert opened.storage.fsck(full=True).ok

    audit = [e for e in opened.metadata.events.find() if e.action == "artifacts.gc"]
    assert [e.details["objects"] for e in audit] == [1, 1]  # newest first, one per removal
    assert audit[0].actor == opened.actor


@pytest.mark.parametrize(
    "folder",
    ["tmp", "ab"],
    ids=["staging-folder", "shard-folder"],
)
def test_gc_removes_old_temporary_files(project: Path, opened: Project, folder: str) -> None:
    tmp = project / ".mloop" / "objects" / folder
    tmp.mkdir(parents=True, exist_ok=True)
    stale = tmp / ".tmp-999-0"  # how the local backend names a write in progress
    stale.write_bytes(b"half a file")
    age(stale, 2 * HOUR)
    writing = tmp / ".tmp-999-1"
    writing.write_bytes(b"a write in progress")
    report = opened.storage.gc()
    assert report.temporary == ((str(stale), 11),)
    assert not stale.exists()
    assert writing.exists()


def test_gc_dry_run_removes_nothing(project: Path, opened: Project, cli: Cli) -> None:
    old = opened.artifacts.put_bytes(b"old")
    age(object_path(project, old), 2 * HOUR)
    result = cli("gc", "--dry-run")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"would remove {old[:12]}  3 B",
        "would remove 1 unreferenced objects (3 B) and 0 temporary files (0 B); "
        "0 objects are referenced",
    ]
    assert object_path(project, old).exists()


def test_gc_cli_respects_the_grace_period(project: Path, opened: Project, cli: Cli) -> None:
    fresh = opened.artifacts.put_bytes(b"just written")
    kept = cli("gc")
    assert kept.code == 0, kept.err
    assert kept.out.splitlines() == [
        "removed 0 unreferenced objects (0 B) and 0 temporary files (0 B); "
        "0 objects are referenced",
        "kept 1 unreferenced objects (12 B) younger than 3600 seconds: "
        "they may belong to a write in progress",
    ]
    assert object_path(project, fresh).exists()

    removed = cli("gc", "--grace", "0", "--json")
    assert removed.code == 0, removed.err
    body = json.loads(removed.out)
    assert body["removed"] == [[fresh, 12]]
    assert body["removed_bytes"] == 12
    assert not object_path(project, fresh).exists()


def test_gc_keeps_an_object_that_became_referenced_meanwhile(
    project: Path, opened: Project
) -> None:
    """A writer that finds its object already stored commits metadata without rewriting it."""
    content = b"x\n1\n"
    digest = opened.artifacts.put_bytes(content)
    age(object_path(project, digest), 2 * HOUR)
    plan = opened.storage.plan_gc()
    assert [d for d, _ in plan.removed] == [digest]
    add_dataset_version(project, "sales", {"a.csv": content})  # commits between plan and gc
    report = opened.storage.gc(plan=plan)
    assert report.removed == ()
    assert opened.storage.fsck(full=True).ok


def test_gc_refuses_a_negative_grace(project: Path, opened: Project, cli: Cli) -> None:
    with pytest.raises(InvalidInput, match="grace"):
        opened.storage.gc(grace=-1)
    result = cli("gc", "--grace", "-5")
    assert result.code == 1
    assert result.err.startswith("error: the grace period must be 0 seconds or more")
