"""The Alembic migrations build exactly the schema declared in tables.py, and HEAD is current."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mloop.errors import StoreUnavailable
from mloop.store import open_metadata_store
from mloop.store.metadata.sql import migrate, tables


def migrated(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mloop.db'}"
    open_metadata_store(uri).close()
    return uri


def test_migrated_database_matches_the_declared_schema(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(migrated(tmp_path))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, tables.metadata)
            names = set(sqlalchemy.inspect(conn).get_table_names())
    finally:
        engine.dispose()

    assert differences == []
    assert names == {*tables.metadata.tables, "alembic_version"}


def test_head_is_the_newest_migration_script() -> None:
    scripts = ScriptDirectory(str(migrate.MIGRATIONS))

    assert scripts.get_current_head() == migrate.HEAD
    assert set(migrate.KNOWN) == {s.revision for s in scripts.walk_revisions()}


def test_opening_again_keeps_the_schema_at_head(tmp_path: Path) -> None:
    uri = migrated(tmp_path)
    open_metadata_store(uri).close()

    with sqlite3.connect(tmp_path / "mloop.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migrate.HEAD,)
        ]


def test_a_schema_newer_than_this_mloop_is_refused(tmp_path: Path) -> None:
    uri = migrated(tmp_path)
    with sqlite3.connect(tmp_path / "mloop.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")

    with pytest.raises(StoreUnavailable, match="schema revision 9999, newer") as caught:
        open_metadata_store(uri)
    assert caught.value.hint == "upgrade mloop: pip install -U mloop"
