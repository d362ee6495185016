"""The byte-level interface every artifact backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from mloop.errors import NotFound


@dataclass
class Staged:
    """A file handed to the backend under a temporary name (or, for remote stores, the source
    file itself), not yet visible as an object."""

    path: Path
    size: int


class ObjectBackend(Protocol):
    """Immutable objects under keys (`ab/cdef…`). Writes are atomic: all or nothing is visible.

    `stage` copies a file in under a temporary name and `commit` publishes it under its key (or
    drops it when the key exists already), so the caller can hash a large file while it is being
    copied and choose the key afterwards.
    """

    uri: str

    def stage(self, src: Path) -> Staged: ...

    def commit(self, staged: Staged, key: str) -> bool: ...

    def discard(self, staged: Staged) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> bool: ...

    def open(self, key: str) -> BinaryIO: ...

    def local_path(self, key: str) -> Path | None: ...

    def size(self, key: str) -> int | None: ...

    def list(self) -> Iterator[tuple[str, int, float]]: ...

    def delete(self, key: str) -> None: ...

    def sync(self) -> None: ...


def missing_object(key: str, uri: str) -> NotFound:
    """The error every backend raises for an object it does not have."""
    return NotFound(
        f"object {key.replace('/', '')[:12]} is missing from {uri}",
        "fetch it with `mloop data pull`; `mloop fsck` lists everything missing",
    )
