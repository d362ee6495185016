"""The stat cache behind `data add` and `data status` (`.mloop/state.db`): what it vouches for,
what it refuses to vouch for, and that a damaged or old cache only costs time."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mloop.store.statcache import StatCache
from tests.conftest import CliResult

HOUR_AGO = time.time() - 3600


def write_old(path: Path, text: str) -> None:
    """A file last modified an hour ago: old enough for the cache to trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (HOUR_AGO, HOUR_AGO))


def swap_keeping_stat(path: Path, text: str) -> None:
    """New content of the same size, with the old modification time put back (same inode)."""
    st = path.stat()
    with open(path, "r+") as fh:
        fh.write(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def status(cli: Callable[..., CliResult], name: str) -> dict:
    result = cli("data", "status", name, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)[0]


def test_status_of_an_unchanged_tree_trusts_the_snapshot(project: Path, cli) -> None:
    """Like git's index: a file whose stat has not changed since it was verified is not read
    again, so a change that keeps size, mtime and inode goes unseen (documented behaviour)."""
    for i in range(3):
        write_old(project / f"data/f{i}.txt", f"file {i}")
    assert cli("data", "add", "d", "data").code == 0
    assert status(cli, "d")["clean"] is True
    swap_keeping_stat(project / "data/f1.txt", "FILE 1")
    assert status(cli, "d")["clean"] is True  # the stat vouches for it
    os.utime(project / "data/f1.txt")  # a real edit moves the mtime
    assert status(cli, "d")["modified"] == ["data/f1.txt"]


def test_add_reuses_digests_another_dataset_verified(project: Path, cli) -> None:
    write_old(project / "data/a.txt", "alpha")
    assert cli("data", "add", "first", "data").code == 0
    swap_keeping_stat(project / "data/a.txt", "ALPHA")
    added = json.loads(cli("data", "add", "second", "data", "--json").out)
    first = json.loads(cli("data", "show", "first", "--json").out)
    # the digest came from the snapshot of `first`, not from reading the file again
    assert added["version"]["files"][0]["digest"] == first["files"][0]["digest"]


def test_files_modified_just_now_are_verified_again(project: Path, cli) -> None:
    """A file modified within the last second may change again within the same clock tick
    without its mtime moving ("racy clean"): the cache must not vouch for it yet."""
    (project / "data").mkdir()
    (project / "data/a.txt").write_text("aaaa")
    assert cli("data", "add", "d", "data").code == 0
    swap_keeping_stat(project / "data/a.txt", "bbbb")
    assert status(cli, "d")["modified"] == ["data/a.txt"]


def test_only_new_files_are_reported_without_the_manifest(project: Path, cli) -> None:
    write_old(project / "data/a.txt", "a")
    assert cli("data", "add", "d", "data").code == 0
    write_old(project / "data/new.txt", "n")
    report = status(cli, "d")
    assert (report["added"], report["modified"], report["deleted"]) == (["data/new.txt"], [], [])
    assert report["unchanged"] == 1


def test_an_old_or_damaged_cache_only_costs_time(project: Path, cli) -> None:
    write_old(project / "data/a.txt", "a")
    write_old(project / "data/b.txt", "b")
    state = project / ".mloop/state.db"
    # The first layout (a row per file, JSON snapshots) is replaced, not misread.
    db = sqlite3.connect(state)
    db.execute("CREATE TABLE stat (path TEXT PRIMARY KEY, size, mtime_ns, inode, digest, c)")
    db.execute("CREATE TABLE snapshot (dataset TEXT PRIMARY KEY, body TEXT)")
    db.commit()
    db.close()
    assert cli("data", "add", "d", "data").code == 0
    tables = {r[0] for r in sqlite3.connect(state).execute("SELECT name FROM sqlite_master")}
    assert "stat" not in tables and "snapshots" in tables
    # Garbage in every per-file column: status verifies from the manifest instead.
    db = sqlite3.connect(state)
    db.execute("UPDATE snapshots SET paths = x'00ff', sizes = x'01', scan = 'nonsense'")
    db.commit()
    db.close()
    assert status(cli, "d")["clean"] is True
    (project / "data/b.txt").write_text("changed")
    assert status(cli, "d")["modified"] == ["data/b.txt"]


def test_paths_that_are_not_utf8_survive_the_cache(tmp_path: Path) -> None:
    cache = StatCache(tmp_path / "state.db")
    odd = os.fsdecode(b"data/caf\xe9.csv")  # Latin-1 bytes: a lone surrogate in Python
    cache.save("d", 1, ["data"], [(odd, 5, 1, 7, "ab" * 32)], count=1, verified_at=10**19, scan="")
    assert cache.files("d") == {odd: (5, 1, 7, "ab" * 32)}
    assert cache.known(["data/sub"]) == {odd: (5, 1, 7, "ab" * 32)}
    assert cache.known(["other"]) == {}
    cache.close()


@pytest.mark.parametrize("verified_at", [10**19, 0], ids=["old-enough", "too-recent"])
def test_a_scan_digest_is_kept_only_when_every_file_is_trusted(
    tmp_path: Path, verified_at: int
) -> None:
    cache = StatCache(tmp_path / "state.db")
    cache.save(
        "d",
        3,
        ["data"],
        [("data/a", 1, 5, 9, "cd" * 32)],
        count=1,
        verified_at=verified_at,
        scan="s",
    )
    snap = cache.snapshot("d")
    assert snap is not None and (snap.version, snap.file_count) == (3, 1)
    assert snap.scan == ("s" if verified_at else "")
    assert cache.files("d")["data/a"][3] == ("cd" * 32 if verified_at else "")
    cache.close()


def test_a_state_db_that_is_not_a_database_is_started_over(project: Path, cli) -> None:
    write_old(project / "data/a.txt", "a")
    assert cli("data", "add", "d", "data").code == 0
    state = project / ".mloop/state.db"
    for sidecar in ("-wal", "-shm"):  # else SQLite reads the pages from the write-ahead log
        Path(f"{state}{sidecar}").unlink(missing_ok=True)
    state.write_bytes(b"not a database at all" * 100)
    assert status(cli, "d")["clean"] is True
    write_old(project / "data/b.txt", "b")
    added = cli("data", "add", "d", "data")
    assert added.code == 0, added.err
    assert status(cli, "d")["clean"] is True
