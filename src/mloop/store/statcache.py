"""A machine-local cache of (size, mtime, inode) -> digest, so unchanged files are not re-hashed.

Like git's index, an entry is trusted only if the file had not been modified for a while when it
was hashed: a file changed within the same clock tick as the hash would otherwise look unchanged
forever ("racy clean"). Such entries are re-hashed on the next look and then trusted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

RACY_NS = 1_000_000_000  # trust an entry only if the file was older than this when hashed


class StatEntry(NamedTuple):
    path: str
    size: int
    mtime_ns: int
    inode: int
    digest: str
    cached_ns: int

    @property
    def trusted(self) -> bool:
        return self.mtime_ns + RACY_NS < self.cached_ns

    def matches(self, size: int, mtime_ns: int, inode: int) -> bool:
        return (
            self.trusted and self.size == size and self.mtime_ns == mtime_ns and self.inode == inode
        )


class Snapshot(NamedTuple):
    """The working files of a dataset as last found identical to version `version`.

    `files` maps every manifest path to the (size, mtime_ns, inode) it had when its content was
    verified, or None when it was not verified (changed, or too recently modified to trust).
    While a file's stat still matches, `data status` needs neither the manifest nor a hash.
    """

    version: int
    sources: list[str]
    files: dict[str, list[int] | None]


class StatCache:
    """Entries keyed by project-relative path, in `.mloop/state.db` (never shared)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, inode INTEGER, digest TEXT, cached_ns INTEGER)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS snapshot (dataset TEXT PRIMARY KEY, body TEXT)"
            )
            self._conn = conn
        return self._conn

    def load(self) -> dict[str, StatEntry]:
        if not self.path.exists():
            return {}
        rows = self._db().execute("SELECT * FROM stat").fetchall()
        make = StatEntry._make
        return {r[0]: make(r) for r in rows}

    def update(self, entries: Iterable[tuple[str, int, int, int, str]]) -> None:
        """Record (path, size, mtime_ns, inode, digest) as hashed now."""
        now = time.time_ns()
        rows = [(*e, now) for e in entries]
        if not rows:
            return
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def snapshot(self, dataset: str) -> Snapshot | None:
        if not self.path.exists():
            return None
        row = (
            self._db().execute("SELECT body FROM snapshot WHERE dataset = ?", (dataset,)).fetchone()
        )
        if row is None:
            return None
        try:
            body = json.loads(row[0])
            return Snapshot(int(body["version"]), list(body["sources"]), dict(body["files"]))
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable snapshot only costs a slower status

    def save_snapshot(self, dataset: str, snapshot: Snapshot) -> None:
        now = time.time_ns()
        files = {
            path: (stat if stat is not None and stat[1] + RACY_NS < now else None)
            for path, stat in snapshot.files.items()
        }
        body = json.dumps(
            {"version": snapshot.version, "sources": snapshot.sources, "files": files},
            separators=(",", ":"),
        )
        self._db().execute(
            "INSERT OR REPLACE INTO snapshot (dataset, body) VALUES (?, ?)", (dataset, body)
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
