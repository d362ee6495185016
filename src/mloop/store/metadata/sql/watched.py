"""Watched files in SQL: one row per (trigger, path); a check reads its trigger's rows at once
and writes only those that changed."""

from __future__ import annotations

from collections.abc import Sequence

from mloop.domain.landing import WatchedFile
from mloop.store.metadata.sql.db import Database, Tx, chunks, in_clause

_UPSERT = (
    "INSERT INTO watched_files (trigger_key, path, size, stamp, modified, digest, rows, "
    "first_seen) VALUES (:t, :p, :s, :st, :m, :d, :r, :f) ON CONFLICT (trigger_key, path) "
    "DO UPDATE SET size = excluded.size, stamp = excluded.stamp, modified = excluded.modified, "
    "digest = excluded.digest, rows = excluded.rows, first_seen = excluded.first_seen"
)
# Positional on purpose: 10,000 rows are read on every check, and the columns are named here.
_SELECT = (
    "SELECT path, size, stamp, modified, digest, rows, first_seen FROM watched_files "
    "WHERE trigger_key = :t"
)


class SqlWatchedFileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def files(self, trigger: str) -> dict[str, WatchedFile]:
        """Every file remembered for `trigger`, by path."""

        def work(tx: Tx) -> dict[str, WatchedFile]:
            return {
                row[0]: WatchedFile(
                    row[0], int(row[1]), row[2], float(row[3]), row[4], int(row[5]), float(row[6])
                )
                for row in tx.all(_SELECT, {"t": trigger})
            }

        return self.db.read(work)

    def save(self, trigger: str, seen: Sequence[WatchedFile], gone: Sequence[str] = ()) -> None:
        """Remember `seen` (replacing what was kept for the same paths) and forget `gone`, in
        one transaction."""
        rows = [
            {
                "t": trigger,
                "p": f.path,
                "s": f.size,
                "st": f.stamp,
                "m": f.modified,
                "d": f.digest,
                "r": f.rows,
                "f": f.first_seen,
            }
            for f in seen
        ]

        def work(tx: Tx) -> None:
            tx.executemany(_UPSERT, rows)
            for chunk in chunks(sorted(set(gone))):
                clause, args = in_clause(chunk)
                tx.execute(
                    f"DELETE FROM watched_files WHERE trigger_key = :t AND path IN {clause}",
                    {"t": trigger, **args},
                )

        self.db.write(work)
