"""`mloop data checkout` never writes where mloop or git keep their own state, whatever a
manifest says: a shared metadata store (or a buggy writer) can plant any path in a version.

The manifests are planted with plain SQL into the SQLite store, as an attacker with write access
to the database would (the same steps as shared/research/probes/plant.py).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult


def plant(database: Path, name: str, path: str, source: str) -> None:
    """A new dataset `name` whose one file is `source:1`'s file, under the manifest path `path`."""
    db = sqlite3.connect(database)
    try:
        (vid,) = db.execute(
            "SELECT id FROM dataset_versions WHERE dataset = ? AND version = 1", (source,)
        ).fetchone()
        digest, size = db.execute(
            "SELECT digest, size FROM dataset_files WHERE version_id = ?", (vid,)
        ).fetchone()
        db.execute("INSERT INTO datasets (name, created, latest) VALUES (?, 0, 1)", (name,))
        columns = [r[1] for r in db.execute("PRAGMA table_info(dataset_versions)")]
        row = dict(
            zip(
                columns,
                db.execute("SELECT * FROM dataset_versions WHERE id = ?", (vid,)).fetchone(),
                strict=True,
            )
        )
        row.pop("id")
        row["dataset"] = name
        marks = ",".join("?" * len(row))
        cursor = db.execute(
            f"INSERT INTO dataset_versions ({','.join(row)}) VALUES ({marks})", list(row.values())
        )
        db.execute(
            "INSERT INTO dataset_files (version_id, path, digest, size) VALUES (?, ?, ?, ?)",
            (cursor.lastrowid, path, digest, size),
        )
        db.commit()
    finally:
        db.close()


def fingerprint(*folders: Path) -> dict[str, str]:
    """Every file under the folders with a digest of its bytes (what "nothing written" means),
    less SQLite's own changes: the write-ahead log, and the machine-local stat cache, whose log
    SQLite folds into the file whenever an earlier command's connection is closed; and less the
    parsed copy of mloop.yaml, which any command writes once the file is a second old."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(
                ("-shm", "-wal", "state.db", "settings.json")
            ):
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def repo(project: Path, cli: Callable[..., CliResult]) -> Path:
    """A project that is also a git repository, with two datasets: `clean` (data/ok.csv) and
    `hook` (a file whose content would be a harmful git config or hook)."""
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "data").mkdir()
    (project / "data/ok.csv").write_text("a,b\n1,2\n")
    (project / "data/hook.txt").write_text('[core]\n\tfsmonitor = "touch PWNED; false"\n')
    assert cli("data", "add", "clean", "data/ok.csv", "-q").code == 0
    assert cli("data", "add", "hook", "data/hook.txt", "-q").code == 0
    return project


def ok_object(project: Path, cli: Callable[..., CliResult]) -> str:
    digest = json.loads(cli("data", "show", "clean", "--json").out)["files"][0]["digest"]
    return f".mloop/objects/{digest[:2]}/{digest[2:]}"


PLANTED = {
    "object": lambda root, cli: ok_object(root, cli),
    "database": lambda root, cli: ".mloop/mloop.db",
    "git-config": lambda root, cli: ".git/config",
    "git-hook": lambda root, cli: ".git/hooks/pre-commit",
    # what `.git/config` is on a case-insensitive filesystem (macOS, Windows)
    "git-config-upper-case": lambda root, cli: ".GIT/config",
}


def assert_refused_and_intact(
    result: CliResult, root: Path, before: dict[str, str], cli: Callable[..., CliResult]
) -> None:
    assert result.code == 1, result.out + result.err
    lines = result.err.splitlines()
    assert lines[0].startswith("error: ") and "which mloop manages" in lines[0], result.err
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.err
    assert fingerprint(root / ".mloop", root / ".git", root / "data") == before
    assert not (root / "PWNED").exists()
    fsck = cli("fsck", "--full")
    assert fsck.code == 0, fsck.out + fsck.err
    assert cli("data", "show", "clean:1").code == 0


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("where", list(PLANTED))
def test_checkout_never_writes_into_mloop_or_git(
    repo: Path, cli: Callable[..., CliResult], where: str, force: bool
) -> None:
    path = PLANTED[where](repo, cli)
    plant(repo / ".mloop/mloop.db", "evil", path, "hook")
    before = fingerprint(repo / ".mloop", repo / ".git", repo / "data")
    result = cli("data", "checkout", "evil:1", *(["--force"] if force else []))
    assert_refused_and_intact(result, repo, before, cli)
    assert subprocess.run(["git", "-C", str(repo), "status"], capture_output=True).returncode == 0
    assert not (repo / "PWNED").exists()


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("where", ["git-config", "mloop-db"])
def test_checkout_to_a_folder_refuses_the_same_paths(
    repo: Path, cli: Callable[..., CliResult], where: str, force: bool
) -> None:
    """With --to DIR, DIR/.git/config and DIR/.mloop/… are just as off limits."""
    path = {"git-config": ".git/config", "mloop-db": ".mloop/mloop.db"}[where]
    out = repo / "out"
    subprocess.run(["git", "init", "-q", str(out)], check=True)
    plant(repo / ".mloop/mloop.db", "evil", path, "hook")
    before = fingerprint(out)
    result = cli("data", "checkout", "evil:1", "--to", "out", *(["--force"] if force else []))
    assert result.code == 1 and "which mloop manages" in result.err, result.err
    assert fingerprint(out) == before
    assert not (out / ".mloop").exists()


@pytest.mark.parametrize("target", [".mloop", ".mloop/objects", ".git", "data/../.git/hooks"])
def test_checkout_refuses_a_target_folder_mloop_manages(
    repo: Path, cli: Callable[..., CliResult], target: str
) -> None:
    before = fingerprint(repo / ".mloop", repo / ".git")
    result = cli("data", "checkout", "clean:1", "--to", target, "--force")
    assert result.code == 1, result.out
    assert "which mloop manages" in result.err and "--to" in result.err
    assert fingerprint(repo / ".mloop", repo / ".git") == before


@pytest.fixture
def moved_stores(project: Path, monkeypatch: pytest.MonkeyPatch, cli) -> Path:
    """A project whose stores are configured in ordinary-looking folders, `meta/mloop.db` and
    `data/objects` (not `.mloop/`), so only their configuration says they are managed."""
    (project / "meta").mkdir()
    monkeypatch.setenv("MLOOP_STORE_URI", f"sqlite:///{project / 'meta/mloop.db'}")
    monkeypatch.setenv("MLOOP_ARTIFACTS_URI", "data/objects")
    (project / "data").mkdir()
    (project / "data/ok.csv").write_text("a,b\n1,2\n")
    (project / "data/other.txt").write_text("not a database")
    assert cli("data", "add", "clean", "data/ok.csv", "-q").code == 0, "setup"
    assert cli("data", "add", "hook", "data/other.txt", "-q").code == 0, "setup"
    return project


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("where", ["object", "database", "wal"])
def test_checkout_never_writes_into_configured_store_locations(
    moved_stores: Path, cli: Callable[..., CliResult], where: str, force: bool
) -> None:
    root = moved_stores
    digest = json.loads(cli("data", "show", "clean", "--json").out)["files"][0]["digest"]
    path = {
        "object": f"data/objects/{digest[:2]}/{digest[2:]}",
        "database": "meta/mloop.db",
        "wal": "meta/mloop.db-wal",
    }[where]
    plant(root / "meta/mloop.db", "evil", path, "hook")
    before = fingerprint(root / "data")
    database = (root / "meta/mloop.db").read_bytes()
    result = cli("data", "checkout", "evil:1", *(["--force"] if force else []))
    assert result.code == 1 and "which mloop manages" in result.err, result.out + result.err
    assert fingerprint(root / "data") == before
    assert (root / "meta/mloop.db").read_bytes() == database
    fsck = cli("fsck", "--full")
    assert fsck.code == 0, fsck.out + fsck.err


def test_add_never_snapshots_configured_store_locations(
    moved_stores: Path, cli: Callable[..., CliResult]
) -> None:
    root = moved_stores
    for given in ("data/objects", "data/objects/tmp", "meta/mloop.db", "./data/../meta/mloop.db"):
        refused = cli("data", "add", "bad", given)
        assert refused.code == 1 and "which mloop manages" in refused.err, (given, refused.err)
    # The folder holding the object store is snapshotted without it.
    (root / "data/raw").mkdir()
    (root / "data/raw/x.bin").write_bytes(b"x")
    added = cli("data", "add", "everything", "data", "--json")
    assert added.code == 0, added.err
    paths = sorted(f["path"] for f in json.loads(added.out)["version"]["files"])
    assert paths == ["data/ok.csv", "data/other.txt", "data/raw/x.bin"]
    assert json.loads(cli("data", "status", "everything", "--json").out)[0]["clean"]
    # The folder holding the database is snapshotted without the database and its journal.
    (root / "meta/notes.txt").write_text("about the store")
    beside = json.loads(cli("data", "add", "beside", "meta", "--json").out)
    assert [f["path"] for f in beside["version"]["files"]] == ["meta/notes.txt"]
