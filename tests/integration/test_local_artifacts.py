"""The local object folder's two ways of writing a small object (an unnamed file linked in, or a
named temporary file renamed into place where the system has no O_TMPFILE) keep the same
promises: whole objects only, no leftovers, and an old object written again is renewed for gc."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mloop.domain.digests import digest_bytes
from mloop.store.artifacts.cas import ArtifactStore, key_of
from mloop.store.artifacts.local import FEW_OBJECTS, LocalBackend

WAYS = [pytest.param(True, id="unnamed"), pytest.param(False, id="named")]


def store_at(folder: Path, unnamed: bool) -> ArtifactStore:
    backend = LocalBackend(folder)
    # Forcing the fallback the way a filesystem without O_TMPFILE (or a system without /proc)
    # would: the backend switches itself to named temporary files when linking fails.
    backend._unnamed = unnamed and backend._unnamed
    return ArtifactStore(backend)


def every_file(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("unnamed", WAYS)
def test_objects_are_whole_and_nothing_else_is_left(tmp_path: Path, unnamed: bool) -> None:
    store = store_at(tmp_path / "objects", unnamed)
    blobs = [os.urandom(n) for n in (0, 1, 4096, 20 << 10)] + [b"same", b"same"]
    digests = [store.put_bytes(b) for b in blobs]
    assert digests == [digest_bytes(b) for b in blobs]
    assert every_file(tmp_path / "objects") == sorted({key_of(d) for d in digests})
    for blob, digest in zip(blobs, digests, strict=True):
        assert store.read_bytes(digest) == blob
        assert os.stat(tmp_path / "objects" / key_of(digest)).st_mode & 0o777 == 0o644 & ~_umask()
    if unnamed and hasattr(os, "O_TMPFILE"):  # Linux: the unnamed way worked, no fallback
        assert store.backend._unnamed  # type: ignore[attr-defined]


@pytest.mark.parametrize("unnamed", WAYS)
def test_writing_an_old_object_again_renews_it_for_gc(tmp_path: Path, unnamed: bool) -> None:
    """gc removes unreferenced objects older than its grace period: an add that re-uses one
    must make it young again, or gc could remove it before the add commits."""
    store = store_at(tmp_path / "objects", unnamed)
    old = [store.put_bytes(f"old {i}".encode()) for i in range(3)]
    hours_ago = time.time() - 7200
    for digest in old:
        os.utime(tmp_path / "objects" / key_of(digest), (hours_ago, hours_ago))
    # new, old, new, old, old: both the write-first and the look-first turns are taken
    order = [b"new 0", b"old 0", b"new 1", b"old 1", b"old 2"]
    created = [store.backend.put_bytes(key_of(digest_bytes(b)), b) for b in order]
    assert created == [True, False, True, False, False]
    for digest in old:
        assert os.stat(tmp_path / "objects" / key_of(digest)).st_mtime > hours_ago + 3600


def test_an_object_removed_between_the_look_and_the_write_is_written(tmp_path: Path) -> None:
    store = store_at(tmp_path / "objects", True)
    digest = store.put_bytes(b"kept")
    assert store.put_bytes(b"kept") == digest  # now the backend looks before writing
    (tmp_path / "objects" / key_of(digest)).unlink()  # as gc would, concurrently
    assert store.backend.put_bytes(key_of(digest), b"kept") is True
    assert store.read_bytes(digest) == b"kept"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


SYNC_SCRIPT = """
import sys
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.artifacts.local import LocalBackend
store = ArtifactStore(LocalBackend(sys.argv[1]))
for i in range(int(sys.argv[2])):
    store.put_bytes(b"object %d" % i)
store.sync()
store.sync()  # nothing new since: nothing to do
"""


def sync_calls(folder: Path, objects: int) -> dict[str, int]:
    """The sync system calls a process makes to store `objects` small objects and sync twice."""
    import subprocess
    import sys

    folder.mkdir(exist_ok=True)  # as `mloop init` makes it
    log = folder.parent / f"strace-{objects}.log"
    command = ["strace", "-f", "-qq", "-e", "trace=syncfs,sync,fsync,fdatasync", "-o", str(log)]
    done = subprocess.run(
        [*command, sys.executable, "-c", SYNC_SCRIPT, str(folder), str(objects)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = [line.split("(", 1)[0].split()[-1] for line in log.read_text().splitlines()]
    return {name: calls.count(name) for name in ("syncfs", "sync", "fsync", "fdatasync")}


def test_a_few_objects_are_synced_one_by_one_and_many_with_one_syncfs(tmp_path: Path) -> None:
    # syncfs flushes every program's dirty data on the disk (seen at 450 ms on a busy machine);
    # a run's package listing or a model is a few objects, each made durable on its own.
    few = sync_calls(tmp_path / "few", 3)
    assert few["syncfs"] == 0 and few["sync"] == 0
    shards = {p.parent for p in (tmp_path / "few").rglob("*") if p.is_file()}
    # 3 objects, their shard folders and the root folder that gained the shards, once each
    assert few["fsync"] + few["fdatasync"] == 3 + len(shards) + 1
    many = sync_calls(tmp_path / "many", FEW_OBJECTS + 1)
    assert many["syncfs"] == 1 and many["fsync"] + many["fdatasync"] == 0
    written = tmp_path / "again"
    sync_calls(written, 3)
    again = sync_calls(written, 3)  # the same objects again: relied on, so synced again
    assert again["syncfs"] == 0 and again["fsync"] + again["fdatasync"] == 3 + len(shards)
