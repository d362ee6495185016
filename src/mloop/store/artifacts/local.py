"""A local folder of objects: `ab/cdef…` files, written to `tmp/` first and renamed into place.

Callers sync once per batch (`sync()`), before they commit the metadata that refers to the
objects, so a crash can leave unreferenced objects (which `mloop gc` removes) but never
metadata pointing at a missing one. What a sync costs depends on the batch: the objects this
process wrote or relied on since its last sync are remembered, and a few of them (a run's
package listing, a model) are made durable each with an fdatasync and their folders with an
fsync, while a large batch (`data add` of 10,000 files) takes one `syncfs` of the file
system. `syncfs` also flushes every other program's dirty data on that disk: on a busy machine
it was seen to take 80 ms at the 95th percentile and 450 ms at worst where a few fsyncs took
under 4 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mloop.store.artifacts.protocol import Staged, missing_object

TMP = "tmp"
TMP_PREFIX = ".tmp-"  # temporary files inside shard folders; never listed as objects


_PID = [os.getpid()]  # refreshed in a forked child, so parent and child never share a name
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
COPY_CHUNK = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return function


def _durable_copy(src: Path, dest: Path) -> int:
    """Copy `src` to the new file `dest` and make its data durable; returns the size."""
    start_writeback = _sync_file_range()
    fd_in = os.open(src, os.O_RDONLY)
    try:
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            offset = 0
            while True:
                try:
                    n = os.copy_file_range(fd_in, fd_out, COPY_CHUNK)
                except OSError:  # another filesystem, or no support: let Python copy
                    import shutil  # not at the top: every run that stores a file imports this

                    os.lseek(fd_in, offset, os.SEEK_SET)
                    with (
                        open(fd_in, "rb", closefd=False) as fin,
                        open(fd_out, "wb", closefd=False) as fout,
                    ):
                        shutil.copyfileobj(fin, fout, COPY_CHUNK)
                    offset = os.fstat(fd_out).st_size
                    break
                if n == 0:
                    break
                if start_writeback is not None:
                    start_writeback(fd_out, offset, n, _SYNC_FILE_RANGE_WRITE)
                offset += n
            os.fdatasync(fd_out)
            return offset
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


_NAMES = itertools.count()
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)  # Linux only
FEW_OBJECTS = 64  # up to this many objects in a batch are synced one by one; more: syncfs


class _Unsynced:
    """The objects (and folders) written or relied on since the last sync of one store folder,
    for the whole process: a store opened twice on one folder shares it, so whichever syncs
    makes the other's writes durable too."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: set[str] = set()
        self.folders: set[str] = set()
        self.everything = False  # too many to list, or not known: sync the whole file system

    def add(self, target: str | None, folder: str) -> None:
        """`target` (a file, or None for a folder entry alone) and the folder that names it."""
        with self.lock:
            if self.everything:
                return
            if target is not None:
                self.files.add(target)
            self.folders.add(folder)
            if len(self.files) > FEW_OBJECTS:
                self.all()

    def all(self) -> None:
        self.everything = True
        self.files.clear()
        self.folders.clear()

    def take(self) -> tuple[bool, list[str], list[str]]:
        with self.lock:
            taken = (self.everything, sorted(self.files), sorted(self.folders))
            self.everything = False
            self.files.clear()
            self.folders.clear()
            return taken


_UNSYNCED: dict[str, _Unsynced] = {}
_UNSYNCED_LOCK = threading.Lock()


def _unsynced(base: str) -> _Unsynced:
    with _UNSYNCED_LOCK:
        found = _UNSYNCED.get(base)
        if found is None:
            found = _UNSYNCED[base] = _Unsynced()
        return found


class LocalBackend:
    """Plain string paths and a per-process counter for temporary names: storing 10,000 small
    files is dominated by system calls, so each one saved shows."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)
        self._base = str(self.root)
        self._tmp = self.root / TMP
        self._made: set[str] = set()
        # Small objects are written as unnamed files (O_TMPFILE) and linked in, where the
        # system allows it (Linux, with /proc); `_probe`: the last object existed already, so
        # look before writing the next one.
        self._unnamed = _O_TMPFILE != 0
        self._root_fd: int | None = None
        self._probe = False
        self._unsynced = _unsynced(self._base)

    def _temp_name(self, folder: str) -> str:
        # One counter for the whole process: two stores open on one folder (a thread each)
        # must never pick the same name. `next` on a count is atomic under the GIL.
        return f"{folder}/{TMP_PREFIX}{_PID[0]}-{next(_NAMES)}"

    def _shard(self, key: str) -> str:
        shard = f"{self._base}/{key[:2]}"
        if shard not in self._made:
            try:
                os.mkdir(shard)
                self._unsynced.add(None, self._base)  # a new entry in the root folder
            except FileExistsError:
                pass
            except FileNotFoundError:  # the store folder itself is new
                os.makedirs(shard, exist_ok=True)
                with self._unsynced.lock:
                    self._unsynced.all()  # new folders up the tree: sync the file system
            self._made.add(shard)
        return shard

    def _touch(self, target: str) -> bool:
        """True if the object exists; its mtime is renewed so that gc's grace period covers a
        write that re-uses an old, unreferenced object. Relied on, it is synced with the
        batch: another process may have written it and not synced it yet."""
        try:
            os.utime(target)
        except FileNotFoundError:
            return False
        self._unsynced.add(target, target.rpartition("/")[0])
        return True

    def stage(self, src: Path) -> Staged:
        """Copy `src` in under a temporary name, durably.

        The kernel copies (copy_file_range) in chunks and is told to start writing each chunk
        to disk at once (sync_file_range), so the disk works while the copy goes on and the
        final fdatasync has little left to wait for: measured here, a durable 1 GiB copy took
        0.52 s this way and 0.75 s as copy-then-sync.
        """
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = Path(self._temp_name(str(self._tmp)))
        try:
            size = _durable_copy(src, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Staged(tmp, size)

    def commit(self, staged: Staged, key: str) -> bool:
        self._shard(key)
        target = f"{self._base}/{key}"
        if self._touch(target):
            staged.path.unlink(missing_ok=True)
            return False
        os.replace(staged.path, target)
        self._unsynced.add(target, target.rpartition("/")[0])
        return True

    def discard(self, staged: Staged) -> None:
        staged.path.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> bool:
        shard = self._shard(key)
        target = f"{self._base}/{key}"
        if self._unnamed:
            try:
                while True:
                    if self._probe and self._touch(target):
                        return False
                    if self._link_unnamed(key, data):
                        self._probe = False
                        self._unsynced.add(target, shard)
                        return True
                    self._probe = True  # it exists: renew its age (or write it if it just went)
            except OSError:  # no O_TMPFILE on this filesystem, or no /proc: name it instead
                self._unnamed = False
        if self._touch(target):
            return False
        tmp = self._temp_name(shard)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, target)
        self._unsynced.add(target, shard)
        return True

    def _link_unnamed(self, key: str, data: bytes) -> bool:
        """Write `data` into a new unnamed file in the shard, then link it in as `key`: the
        object appears whole or not at all, with no temporary name to create, rename or leave
        behind after a crash (two directory operations fewer per object than a named temporary
        file). False when the object exists already."""
        root = self._root_fd
        if root is None:
            root = self._root_fd = os.open(self._base, os.O_RDONLY | os.O_DIRECTORY)
            weakref.finalize(self, os.close, root)
        fd = os.open(key[:2], _O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=root)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # linkat with AT_SYMLINK_FOLLOW (what a destination dir_fd makes os.link use) gives
            # the open file a name; without /proc this fails and the caller falls back.
            os.link(f"/proc/self/fd/{fd}", key, dst_dir_fd=root)
        except FileExistsError:
            return False
        finally:
            os.close(fd)
        return True

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.root / key, "rb")  # the caller closes it
        except FileNotFoundError:
            raise missing_object(key, self.uri) from None

    def local_path(self, key: str) -> Path | None:
        path = self.root / key
        return path if path.exists() else None

    def size(self, key: str) -> int | None:
        try:
            return os.stat(f"{self._base}/{key}").st_size
        except FileNotFoundError:
            return None

    def refresh(self, key: str) -> bool:
        return self._touch(f"{self._base}/{key}")

    def list(self) -> Iterator[tuple[str, int, float]]:
        if not self.root.is_dir():
            return
        for shard in sorted(os.scandir(self.root), key=lambda e: e.name):
            if shard.name == TMP or len(shard.name) != 2 or not shard.is_dir():
                continue
            for entry in os.scandir(shard.path):
                if entry.name.startswith(TMP_PREFIX):
                    continue
                st = entry.stat()
                yield f"{shard.name}/{entry.name}", st.st_size, st.st_mtime

    def list_temporary(self) -> Iterator[tuple[Path, float]]:
        """Leftovers of interrupted writes: never visible as objects, removed by gc."""
        if not self.root.is_dir():
            return
        for folder in os.scandir(self.root):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder.path):
                if folder.name == TMP or entry.name.startswith(TMP_PREFIX):
                    yield Path(entry.path), entry.stat().st_mtime

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def sync(self) -> None:
        """Make durable what this process wrote or relied on since its last sync (see the
        module docstring): nothing to do costs nothing."""
        everything, files, folders = self._unsynced.take()
        if not (everything or files) or not self.root.exists():
            return
        if not everything:
            try:
                for path in files:
                    _fsync(path, os.O_RDONLY)
                for path in folders:
                    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)
                return
            except OSError:  # e.g. an object removed meanwhile: fall back to the file system
                pass
        fd = os.open(self.root, os.O_RDONLY)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
                os.sync()
        except OSError:
            os.sync()
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
