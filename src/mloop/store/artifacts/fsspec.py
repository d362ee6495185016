"""Objects on S3 or any fsspec URL (`s3://bucket/prefix`, `gs://…`, `memory://…`).

Object stores publish a PUT atomically, so `commit` uploads straight to the key; other
filesystems get a temporary name and a move. Credentials and endpoints come from the usual
environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, …), as for every other AWS tool.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mloop.errors import MissingDependency, StoreUnavailable
from mloop.store.artifacts.protocol import Staged, missing_object

TMP = "tmp"  # inside the store, where readers never look for objects
ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "memory"}
INSTALL_HINTS = {"s3": "pip install 'mloop[s3]'", "s3a": "pip install 'mloop[s3]'"}


class FsspecBackend:
    def __init__(self, uri: str) -> None:
        import fsspec

        self.uri = uri.rstrip("/")
        protocol = self.uri.split("://", 1)[0]
        try:
            fs, root = fsspec.core.url_to_fs(self.uri)
        except (ImportError, ValueError) as exc:
            hint = INSTALL_HINTS.get(protocol, f"install the fsspec backend for {protocol}://")
            raise MissingDependency(f"cannot open {self.uri}: {exc}", hint) from None
        self.fs: Any = fs
        self.root = root.rstrip("/")
        self._atomic = protocol in ATOMIC_PUT

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _put(self, src: Path, key: str) -> None:
        target = self._path(key)
        try:
            if self._atomic:
                self.fs.put_file(str(src), target)
            else:
                tmp = f"{self.root}/{TMP}/{uuid.uuid4().hex}"
                self.fs.put_file(str(src), tmp)
                self.fs.mv(tmp, target)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write to {self.uri}: {exc}") from None

    def stage(self, src: Path) -> Staged:
        return Staged(src, src.stat().st_size)

    def commit(self, staged: Staged, key: str) -> bool:
        if self.size(key) is not None:
            return False
        self._put(staged.path, key)
        return True

    def discard(self, staged: Staged) -> None:
        return None

    def put_bytes(self, key: str, data: bytes) -> bool:
        if self.size(key) is not None:
            return False
        try:
            self.fs.pipe_file(self._path(key), data)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write to {self.uri}: {exc}") from None
        return True

    def open(self, key: str) -> BinaryIO:
        try:
            return self.fs.open(self._path(key), "rb")  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise missing_object(key, self.uri) from None

    def local_path(self, key: str) -> Path | None:
        return None

    def size(self, key: str) -> int | None:
        try:
            return int(self.fs.info(self._path(key))["size"])
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot reach {self.uri}: {exc}") from None

    def list(self) -> Iterator[tuple[str, int, float]]:
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return
        finally:
            # find() fills the listings cache, and size()/open() would answer from it: an
            # object removed or replaced by another process would still look present.
            self.fs.invalidate_cache()
        prefix = len(self.root) + 1
        for path, info in sorted(found.items()):
            key = path[prefix:]
            shard, _, rest = key.partition("/")
            if len(shard) != 2 or not rest or "/" in rest:
                continue
            modified = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
            yield key, int(info["size"]), stamp

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            return

    def sync(self) -> None:
        return None
