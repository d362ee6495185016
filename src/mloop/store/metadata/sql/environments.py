"""Environments in SQL: stored once per digest, by the run that first names one or by `put`."""

from __future__ import annotations

from mloop.domain.lineage import Environment
from mloop.errors import NotFound
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import Database, Tx


def insert_environment(tx: Tx, env: Environment) -> None:
    """In the caller's transaction, so a run and its new environment are written together."""
    tx.execute(
        "INSERT INTO environments (digest, python, packages_digest, package_count) "
        "VALUES (:d, :py, :pd, :n) ON CONFLICT (digest) DO NOTHING",
        {"d": env.digest, "py": env.python, "pd": env.packages_digest, "n": env.package_count},
    )


class SqlEnvironmentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, env: Environment) -> None:
        self.db.write(lambda tx: insert_environment(tx, env))

    def get(self, digest: str) -> Environment:
        row = self.db.read(
            lambda tx: tx.named_one("SELECT * FROM environments WHERE digest = :d", {"d": digest})
        )
        if row is None:
            raise NotFound(f"no environment {digest[:12]}")
        return rows.ENVIRONMENT.read(row)
