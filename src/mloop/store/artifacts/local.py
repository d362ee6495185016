"""A local folder of objects: `ab/cdef…` files, written to `tmp/` first and renamed into place.

Durability costs one `syncfs` per batch (`sync()`), not one fsync per file: callers sync once
before they commit the metadata that refers to the objects, so a crash can leave unreferenced
objects (which `mloop gc` removes) but never metadata pointing at a missing one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mloop.errors import NotFound

TMP = "tmp"


@dataclass
class LocalStaged:
    path: Path
    size: int


class LocalBackend:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)
        self._tmp = self.root / TMP
        self._made: set[str] = set()

    def _dirs(self) -> None:
        if TMP not in self._made:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._made.add(TMP)

    def _target(self, key: str) -> Path:
        shard = key.partition("/")[0]
        if shard not in self._made:
            (self.root / shard).mkdir(parents=True, exist_ok=True)
            self._made.add(shard)
        return self.root / key

    def _temp_name(self) -> Path:
        self._dirs()
        return self._tmp / uuid.uuid4().hex

    def stage(self, src: Path) -> LocalStaged:
        tmp = self._temp_name()
        shutil.copyfile(src, tmp)  # copy_file_range/sendfile: the kernel copies, not Python
        return LocalStaged(tmp, tmp.stat().st_size)

    def commit(self, staged: LocalStaged, key: str) -> bool:  # type: ignore[override]
        target = self._target(key)
        if target.exists():
            staged.path.unlink(missing_ok=True)
            return False
        os.replace(staged.path, target)
        return True

    def discard(self, staged: LocalStaged) -> None:  # type: ignore[override]
        staged.path.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> bool:
        target = self._target(key)
        if target.exists():
            return False
        tmp = self._temp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
        return True

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.root / key, "rb")  # the caller closes it
        except FileNotFoundError:
            raise NotFound(f"object {key.replace('/', '')} is missing from {self.uri}") from None

    def local_path(self, key: str) -> Path | None:
        path = self.root / key
        return path if path.exists() else None

    def size(self, key: str) -> int | None:
        try:
            return (self.root / key).stat().st_size
        except FileNotFoundError:
            return None

    def list(self) -> Iterator[tuple[str, int, float]]:
        if not self.root.is_dir():
            return
        for shard in sorted(os.scandir(self.root), key=lambda e: e.name):
            if shard.name == TMP or len(shard.name) != 2 or not shard.is_dir():
                continue
            for entry in os.scandir(shard.path):
                st = entry.stat()
                yield f"{shard.name}/{entry.name}", st.st_size, st.st_mtime

    def list_temporary(self) -> Iterator[tuple[Path, float]]:
        """Leftovers of interrupted writes: never visible as objects, removed by gc."""
        if self._tmp.is_dir():
            for entry in os.scandir(self._tmp):
                yield Path(entry.path), entry.stat().st_mtime

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def sync(self) -> None:
        if not self.root.exists():
            return
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
