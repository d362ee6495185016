"""Bring a database to the schema this mloop knows, once, even when many processes start at once.

The common case (already current) costs one query and imports nothing. Otherwise the first
process takes a lock (a file lock beside a SQLite database, an advisory lock in PostgreSQL),
looks again, and runs Alembic; the others wait on the lock and find the work done.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from mloop.errors import StoreUnavailable
from mloop.store.metadata.sql.db import Database, Tx

HEAD = "0011"
KNOWN = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011")
MIGRATIONS = Path(__file__).parent / "migrations"
PG_LOCK_KEY = 7_263_540_117


def current_revision(tx: Tx) -> str | None:
    if tx.dialect == "sqlite":
        present = tx.scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        )
    else:
        present = tx.scalar("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not present:
        return None
    value = tx.scalar("SELECT version_num FROM alembic_version")
    return None if value is None else str(value)


def _check_known(revision: str | None) -> None:
    if revision is not None and revision not in KNOWN:
        raise StoreUnavailable(
            f"the metadata store has schema revision {revision}, newer than this mloop knows",
            "upgrade mloop: pip install -U mloop",
        )


def ensure_schema(db: Database) -> None:
    revision = db.read(current_revision)
    if revision == HEAD:
        return
    _check_known(revision)
    if db.dialect == "sqlite":
        lock_path = db.path.with_name(db.path.name + ".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _upgrade(db)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    else:
        _upgrade(db)


def _upgrade(db: Database) -> None:
    import sqlalchemy
    from alembic import command
    from alembic.config import Config

    engine: Any = sqlalchemy.create_engine(db.sqlalchemy_url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.begin() as conn:
            if db.dialect == "postgresql":
                conn.execute(sqlalchemy.text(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"))
            revision = None
            if sqlalchemy.inspect(conn).has_table("alembic_version"):
                query = sqlalchemy.text("SELECT version_num FROM alembic_version")
                revision = conn.execute(query).scalar()
            _check_known(revision)
            if revision == HEAD:
                return
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()
