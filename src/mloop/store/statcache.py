"""What each dataset's working files were when last verified, so unchanged files are not re-read.

For every dataset, in `.mloop/state.db` (machine-local, never shared): the version its files
were last found identical to, and for each file of that version the (size, mtime, inode) it had
then with its digest. Like git's index, this lets `data status` confirm an unchanged tree from
one scan, without the manifest or any hashing, and lets `data add` skip hashing every file whose
stat has not changed.

An entry is trusted only if the file had not been modified for a while when it was verified: a
file changed within the same clock tick as the hash would otherwise look unchanged forever
("racy clean"). Such entries are kept without a digest and verified again next time.

A snapshot also keeps the digest of the walk that found the files (every path with its stat),
recorded only when the files were exactly the version's and all trusted: a later walk with the
same digest proves nothing changed without reading the per-file table at all, which is
`status`'s common case. The per-file table is one row per dataset holding each field as one
column (paths and digests NUL-joined, numbers as arrays of 64-bit integers): 10,000 files are
written and read in a few milliseconds, where a row per file or JSON took tens.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

RACY_NS = 1_000_000_000  # trust an entry only if the file was older than this when verified
SCHEMA = 2  # PRAGMA user_version of state.db; older caches are dropped (they only cost a rehash)

Entry = tuple[int, int, int, str]
"""(size, mtime_ns, inode, digest) of one file; the digest is "" when it is not trusted."""
Known = dict[str, Entry]


class Snapshot(NamedTuple):
    """A dataset's files as last verified against `version` (the per-file table is separate)."""

    version: int
    sources: list[str]
    file_count: int  # files in the version
    scan: str  # digest of the walk (`Survey.digest`) when it found exactly the version, else ""


def _overlap(a: str, b: str) -> bool:
    return a == b or "." in (a, b) or a.startswith(b + "/") or b.startswith(a + "/")


class StatCache:
    """Snapshots keyed by dataset name in `path` (`.mloop/state.db`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # locked, read-only, ...: say so
                    raise
                # Not a database at all (a damaged cache): it only ever saves time, so start over.
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DROP TABLE IF EXISTS stat")  # the first layout: one row per file
                conn.execute("DROP TABLE IF EXISTS snapshot")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS snapshots (dataset TEXT PRIMARY KEY, "
                    "version INTEGER, sources TEXT, count INTEGER, scan TEXT, paths BLOB, "
                    "sizes BLOB, mtimes BLOB, inodes BLOB, digests BLOB)"
                )
                conn.execute(f"PRAGMA user_version = {SCHEMA}")
                conn.execute("COMMIT")
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def snapshot(self, dataset: str) -> Snapshot | None:
        """The snapshot's summary (not its per-file table), or None."""
        if not self.path.exists():
            return None
        row = (
            self._db()
            .execute(
                "SELECT version, sources, count, scan FROM snapshots WHERE dataset = ?", (dataset,)
            )
            .fetchone()
        )
        if row is None:
            return None
        try:
            return Snapshot(int(row[0]), list(json.loads(row[1])), int(row[2]), str(row[3]))
        except (ValueError, TypeError):
            return None  # an unreadable snapshot only costs a slower status

    def files(self, dataset: str) -> Known:
        """The per-file table of one dataset's snapshot (empty when there is none)."""
        if not self.path.exists():
            return {}
        row = self._db().execute(
            "SELECT paths, sizes, mtimes, inodes, digests FROM snapshots WHERE dataset = ?",
            (dataset,),
        )
        found = row.fetchone()
        return _decode(found) if found is not None else {}

    def known(self, sources: list[str]) -> Known:
        """Trusted entries from every snapshot whose sources overlap `sources` (a folder added
        under a new name still skips hashing what another dataset verified)."""
        if not self.path.exists():
            return {}
        found: Known = {}
        rows = self._db().execute("SELECT dataset, sources FROM snapshots").fetchall()
        for dataset, theirs in rows:
            try:
                other = json.loads(theirs)
            except ValueError:
                continue
            if any(_overlap(a, b) for a in sources for b in other):
                found.update((p, e) for p, e in self.files(dataset).items() if e[3])
        return found

    def save(
        self,
        dataset: str,
        version: int,
        sources: list[str],
        files: Iterable[tuple[str, int, int, int, str]],
        *,
        count: int,
        verified_at: int,
        scan: str,
    ) -> None:
        """Record (path, size, mtime_ns, inode, digest) of the version's files as verified at
        `verified_at` (ns, taken before the files were read). `scan` is the digest of the walk
        that found them when the working files were exactly the version's, else "": it is kept
        only if every file could be trusted, so that the same digest later proves no change."""
        paths: list[str] = []
        sizes: list[int] = []
        mtimes: list[int] = []
        inodes: list[int] = []
        digests: list[str] = []
        for path, size, mtime_ns, inode, digest in files:
            paths.append(path)
            sizes.append(size)
            mtimes.append(mtime_ns)
            inodes.append(inode)
            # A file modified too recently to vouch for is verified again next time.
            digests.append(digest if mtime_ns + RACY_NS < verified_at else "")
        if len(paths) != count or not all(digests):
            scan = ""
        self._db().execute(
            "INSERT OR REPLACE INTO snapshots (dataset, version, sources, count, scan, paths, "
            "sizes, mtimes, inodes, digests) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dataset,
                version,
                json.dumps(sources),
                count,
                scan,
                _text("\0".join(paths)),
                array("Q", sizes).tobytes(),
                array("q", mtimes).tobytes(),
                array("Q", inodes).tobytes(),
                _text("\0".join(digests)),
            ),
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _text(text: str) -> bytes:
    # Paths that are not valid UTF-8 (decoded by Python with surrogateescape) survive as bytes.
    return text.encode("utf-8", "surrogateescape")


def _column(blob: bytes, code: str) -> list[int]:
    values = array(code)
    values.frombytes(blob)
    return values.tolist()


def _decode(row: tuple[bytes, bytes, bytes, bytes, bytes]) -> Known:
    """The per-file table from its columns; anything unreadable is an empty table (which only
    costs hashing again)."""
    try:
        names, sizes, mtimes, inodes, digests = row
        if not names:
            return {}
        paths = names.decode("utf-8", "surrogateescape").split("\0")
        sums = digests.decode("ascii").split("\0")
        columns = zip(
            _column(sizes, "Q"), _column(mtimes, "q"), _column(inodes, "Q"), sums, strict=True
        )
        return dict(zip(paths, columns, strict=True))
    except (ValueError, TypeError, UnicodeDecodeError):
        return {}
