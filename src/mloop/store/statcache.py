"""A machine-local cache of (size, mtime, inode) -> digest, so unchanged files are not re-hashed.

Like git's index, an entry is trusted only if the file had not been modified for a while when it
was hashed: a file changed within the same clock tick as the hash would otherwise look unchanged
forever ("racy clean"). Such entries are re-hashed on the next look and then trusted.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

RACY_NS = 1_000_000_000  # trust an entry only if the file was older than this when hashed


@dataclass(frozen=True, slots=True)
class StatEntry:
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
            self._conn = conn
        return self._conn

    def load(self) -> dict[str, StatEntry]:
        if not self.path.exists():
            return {}
        rows = self._db().execute("SELECT * FROM stat").fetchall()
        return {r[0]: StatEntry(*r) for r in rows}

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

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
