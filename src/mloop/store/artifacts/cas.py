"""Content addressing over any backend: digests, write-once, verify on every read.

A digest is the object's name, so identical content is stored once and a flipped bit is caught
by the next read: every read path hashes what it returns and raises CorruptArtifact on mismatch.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from mloop.domain.digests import digest_bytes, is_digest
from mloop.errors import Conflict, CorruptArtifact, NotFound
from mloop.store.artifacts.hashing import SMALL_FILE, hash_file
from mloop.store.artifacts.protocol import ObjectBackend

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["ArtifactStore", "hash_file", "key_of"]

CHUNK = 8 << 20


def key_of(digest: str) -> str:
    return f"{digest[:2]}/{digest[2:]}"


def _corrupt(digest: str, uri: str) -> CorruptArtifact:
    return CorruptArtifact(
        f"object {digest[:12]} in {uri} is corrupt: its content does not match its digest",
        "run `mloop fsck --full` to list every damaged object; restore it with `mloop data pull`",
    )


class VerifyingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through and checks the digest at the end."""

    def __init__(self, raw: Any, digest: str, uri: str) -> None:
        self._raw = raw
        self._digest = digest
        self._uri = uri
        self._hasher = blake3.blake3()
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = int(self._raw.readinto(buffer))
        if n:
            self._hasher.update(memoryview(buffer)[:n])
        elif not self._done:
            self._done = True
            if self._hasher.hexdigest() != self._digest:
                raise _corrupt(self._digest, self._uri)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class ArtifactStore:
    """The artifact store mloop uses: put files and bytes, get them back verified."""

    def __init__(self, backend: ObjectBackend) -> None:
        self.backend = backend
        self.uri = backend.uri
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor  # imported when first needed

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mloop-cas")
            return self._pool

    def put_bytes(self, data: bytes) -> str:
        """Store `data` once and return its digest.

        Example:
            >>> store.put_bytes(b"hello")[:12]  # doctest: +SKIP
            'ea8f163db386'
        """
        digest = digest_bytes(data)
        self.backend.put_bytes(key_of(digest), data)
        return digest

    def put_path(
        self,
        path: str | os.PathLike[str],
        known_digest: str | None = None,
        size: int | None = None,
    ) -> tuple[str, int, bool]:
        """Store a file; return (digest, size, stored_now).

        `known_digest` (from a cache the caller trusts) skips hashing; `size` (from a scan the
        caller made) saves a stat and sizes the read exactly. A large file is copied in under a
        temporary name while it is hashed, then published under its digest; if the file
        changes meanwhile, nothing is published.
        """
        if known_digest is not None:
            found = os.stat(path).st_size if size is None else size
            if self.backend.size(key_of(known_digest)) == found:
                refresh = getattr(self.backend, "refresh", None)
                if refresh is not None:
                    refresh(key_of(known_digest))  # renew its age for gc's grace period
                return known_digest, found, False
        if size is None or size <= SMALL_FILE:
            fd = os.open(path, os.O_RDONLY)
            try:
                data = os.read(fd, (SMALL_FILE if size is None else size) + 1)
            finally:
                os.close(fd)
            if len(data) <= SMALL_FILE and (size is None or len(data) == size):
                digest = digest_bytes(data)
                return digest, len(data), self.backend.put_bytes(key_of(digest), data)
            del data  # a large file: do not hold its first megabytes while copying it
        path = Path(path)
        before = path.stat()
        size = before.st_size
        staging = self._executor().submit(self.backend.stage, path)
        try:
            digest = hash_file(path)
        finally:
            staged = staging.result()
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (size, before.st_mtime_ns) or staged.size != size:
            self.backend.discard(staged)
            raise Conflict(f"{path} changed while it was being stored", "add it again")
        return digest, size, self.backend.commit(staged, key_of(digest))

    def exists(self, digest: str) -> bool:
        return self.backend.size(key_of(digest)) is not None

    def size(self, digest: str) -> int | None:
        return self.backend.size(key_of(digest))

    def open(self, digest: str) -> io.BufferedReader:
        """A buffered stream of the object that raises CorruptArtifact if the bytes are wrong."""
        raw = self.backend.open(key_of(digest))
        return io.BufferedReader(VerifyingReader(raw, digest, self.uri), CHUNK)

    def read_bytes(self, digest: str) -> bytes:
        with self.backend.open(key_of(digest)) as fh:
            data = fh.read()
        if digest_bytes(data) != digest:
            raise _corrupt(digest, self.uri)
        return data

    def verified_local_path(self, digest: str) -> Path | None:
        """The object's own file, after checking its content, when the backend is a folder."""
        path = self.backend.local_path(key_of(digest))
        if path is not None and hash_file(path) != digest:
            raise _corrupt(digest, self.uri)
        return path

    def export(self, digest: str, dest: Path) -> None:
        """Write the object to `dest` (temp name, verify, rename): `dest` is never half-written."""
        import shutil
        import uuid

        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            source = self.backend.local_path(key_of(digest))
            if source is not None:
                copying = self._executor().submit(shutil.copyfile, source, tmp)
                try:
                    actual = hash_file(source)
                finally:
                    copying.result()
                if actual != digest:
                    raise _corrupt(digest, self.uri)
            else:
                with self.open(digest) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def check(self, digest: str, size: int | None, full: bool) -> str | None:
        """What is wrong with one object ('missing', a size or a content mismatch), or None."""
        found = self.backend.size(key_of(digest))
        if found is None:
            return "missing"
        if size is not None and found != size:
            return f"size is {found} bytes, expected {size}"
        if full:
            try:
                with self.open(digest) as fh:
                    while fh.read(CHUNK):
                        pass
            except CorruptArtifact:
                return "content does not match its digest"
        return None

    def iter_objects(self) -> Iterator[tuple[str, int, float]]:
        """Every object as (digest, size, modified time)."""
        for key, size, mtime in self.backend.list():
            digest = key.replace("/", "")
            if is_digest(digest):
                yield digest, size, mtime

    def delete(self, digest: str) -> None:
        self.backend.delete(key_of(digest))

    def sync(self) -> None:
        """Make every object written so far durable (one filesystem sync, not one per file)."""
        self.backend.sync()

    def require(self, digest: str) -> None:
        if not self.exists(digest):
            raise NotFound(
                f"object {digest[:12]} is not in {self.uri}",
                "fetch it with `mloop data pull`, or run `mloop fsck` to see what is missing",
            )
