"""A thin DB-API layer over sqlite3 and psycopg: connections, transactions, placeholders.

SQL is written once with `:name` placeholders in the subset SQLite and PostgreSQL share
(`ON CONFLICT … DO UPDATE`, `RETURNING`); for psycopg the placeholders are rewritten to
`%(name)s`. SQLite gets one connection per thread, WAL, a busy timeout and `BEGIN IMMEDIATE`
for writes, so concurrent writers queue instead of failing; PostgreSQL gets a bounded pool.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from mloop.domain.uris import redact
from mloop.errors import InvalidInput, MissingDependency, StoreUnavailable

T = TypeVar("T")
V = TypeVar("V", str, int)
Params = Mapping[str, Any] | Sequence[Any] | None
BUSY_TIMEOUT_MS = 60_000
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def sqlite_path(uri: str) -> Path:
    """`sqlite:///relative.db` or `sqlite:////absolute.db`, as SQLAlchemy spells them."""
    rest = uri.split("://", 1)[1]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        raise StoreUnavailable(
            f"store_uri {uri!r} names no database file", "use sqlite:////absolute/path/mloop.db"
        )
    return Path(rest[1:])


class Tx:
    """One transaction: run statements, fetch rows."""

    def __init__(self, raw: Any, dialect: str) -> None:
        self.raw = raw
        self.dialect = dialect
        self._cur = raw.cursor()

    def _sql(self, sql: str) -> str:
        if self.dialect == "sqlite":
            return sql
        return _pg_sql(sql)

    def execute(self, sql: str, params: Params = None) -> Any:
        self._cur.execute(self._sql(sql), params if params is not None else {})
        return self._cur

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self._cur.executemany(self._sql(sql), rows)

    def all(self, sql: str, params: Params = None) -> list[Any]:
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: Params = None) -> Any:
        return self.execute(sql, params).fetchone()

    def named(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        """Rows as {column: value}: readers name columns instead of counting them, and a new
        column cannot shift the others (the same on sqlite3 and psycopg)."""
        cursor = self.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def named_one(self, sql: str, params: Params = None) -> dict[str, Any] | None:
        cursor = self.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def scalar(self, sql: str, params: Params = None) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]


_PG_CACHE: dict[str, str] = {}


def _pg_sql(sql: str) -> str:
    converted = _PG_CACHE.get(sql)
    if converted is None:
        converted = _PLACEHOLDER.sub(r"%(\1)s", sql.replace("%", "%%"))
        _PG_CACHE[sql] = converted
    return converted


def _use_wal(conn: Any) -> None:
    """Switch a SQLite file to WAL, waiting out other connections doing the same.

    WAL is stored in the file, so this changes something only the first time. Switching needs
    the file to itself, and SQLite answers "database is locked" at once, without its busy
    handler, when several processes open a brand-new store together: retry until the timeout.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)  # the other opener holds the file for a moment; back off
            pause = min(pause * 2, 0.05)


class Database:
    """Connections to one database, and `read`/`write` that run a function in a transaction."""

    def __init__(self, uri: str, pool_size: int = 5) -> None:
        self.uri = uri
        scheme = uri.split("://", 1)[0]
        self.dialect = "sqlite" if scheme.startswith("sqlite") else "postgresql"
        self._local = threading.local()
        self._engine: Any = None
        self._pool_size = pool_size
        self._sqlite_conns: list[Any] = []
        self._conns_lock = threading.Lock()
        if self.dialect == "sqlite":
            self.path = sqlite_path(uri)
            if not self.path.parent.is_dir():
                raise StoreUnavailable(
                    f"cannot open the metadata store: folder {self.path.parent} does not exist",
                    "run `mloop init` in the project folder, or fix MLOOP_STORE_URI",
                )

    @property
    def sqlalchemy_url(self) -> str:
        if self.uri.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.uri.split("://", 1)[1]
        return self.uri

    # connections --------------------------------------------------------------------------
    def _sqlite(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite3

            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                _use_wal(conn)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise StoreUnavailable(
                    f"cannot open the metadata store {self.path}: {exc}",
                    "check that the file is a SQLite database and the folder is writable",
                ) from None
            self._local.conn = conn
            with self._conns_lock:
                self._sqlite_conns.append(conn)
        return conn

    def engine(self) -> Any:
        if self._engine is None:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise MissingDependency(
                    "PostgreSQL support needs psycopg", "pip install 'mloop[postgres]'"
                ) from None
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(
                self.sqlalchemy_url,
                pool_size=self._pool_size,
                max_overflow=0,
                pool_timeout=60,
                pool_pre_ping=True,
            )
        return self._engine

    @contextmanager
    def _pg(self) -> Iterator[Any]:
        try:
            raw = self.engine().raw_connection()
        except Exception as exc:  # the driver's errors vary; all mean "cannot reach it"
            if isinstance(exc, MissingDependency):
                raise
            raise StoreUnavailable(
                f"cannot connect to {redact(self.uri)}: {str(exc).splitlines()[0]}",
                "check that the server is running and MLOOP_STORE_URI is right",
            ) from None
        try:
            yield raw
        finally:
            raw.close()

    # transactions -------------------------------------------------------------------------
    def _run(self, fn: Callable[[Tx], T], write: bool) -> T:
        if self.dialect == "sqlite":
            import sqlite3

            conn = self._sqlite()
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(
                    f"the metadata store {self.path} is busy: {exc}",
                    "another process holds a long write lock; try again",
                ) from None
            try:
                result = fn(Tx(conn, "sqlite"))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        import psycopg

        with self._pg() as raw:
            try:
                result = fn(Tx(raw, "postgresql"))
                raw.commit()
            except psycopg.OperationalError as exc:
                # The server went away under an open connection (stopped, restarted, the
                # network): the same answer as failing to connect, not a crash of the caller.
                if raw.closed or raw.broken:
                    with suppress(Exception):
                        raw.invalidate()  # not back into the pool
                    raise StoreUnavailable(
                        f"lost the connection to {redact(self.uri)}: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        "check that the server is running; the work is tried again",
                    ) from None
                with suppress(Exception):
                    raw.rollback()
                raise  # a conflict (retried by `write`), a cancelled statement
            except BaseException:
                with suppress(Exception):  # a connection already gone cannot roll back
                    raw.rollback()
                raise
            return result

    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a read transaction (one consistent snapshot)."""
        return self._run(fn, write=False)

    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a write transaction; retried when PostgreSQL reports a conflict."""
        if self.dialect == "sqlite":
            return self._run(fn, write=True)
        import psycopg.errors as pg_errors

        for attempt in range(5):
            try:
                return self._run(fn, write=True)
            except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected):
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._sqlite_conns:
                conn.close()
            self._sqlite_conns.clear()
        self._local = threading.local()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


CHUNK = 500
# The range of a 64-bit signed integer: what both databases store; a larger Python int must not
# reach a query (SQLite raises OverflowError, PostgreSQL a type error).
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def check_limit(limit: int) -> int:
    """A row limit both databases take; anything else is refused before it reaches SQL."""
    if not 0 <= limit <= INT64_MAX:
        raise InvalidInput(f"limit {limit} is out of range", f"give a limit from 0 to {INT64_MAX}")
    return int(limit)


def in_range(number: int) -> bool:
    """Whether `number` fits a 64-bit integer column (a bigger one cannot match any row)."""
    return INT64_MIN <= number <= INT64_MAX


def escape_like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern written with `ESCAPE '\\'`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def chunks(items: Sequence[V]) -> Iterator[Sequence[V]]:
    """Split a long list for `IN (…)` clauses, which both databases limit in size."""
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def in_clause(values: Sequence[V]) -> tuple[str, dict[str, V]]:
    """`(:i0, :i1, …)` and its parameters."""
    params = {f"i{n}": value for n, value in enumerate(values)}
    return "(" + ", ".join(f":i{n}" for n in range(len(values))) + ")", params
