"""The event log in SQL: appended to, never changed; read newest first."""

from __future__ import annotations

from mloop.domain.event import Event
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import Database, check_limit, escape_like


class SqlEventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, event: Event) -> None:
        self.db.write(lambda tx: tx.execute(rows.INSERT_EVENT, rows.event_to_row(event)))

    def find(self, ref: str | None = None, limit: int = 100) -> list[Event]:
        sql = "SELECT * FROM events"
        params: dict[str, object] = {}
        if ref is not None:
            sql += " WHERE ref = :ref OR ref LIKE :prefix ESCAPE '\\'"
            params = {"ref": ref, "prefix": escape_like(ref) + ":%"}
        sql += f" ORDER BY id DESC LIMIT {check_limit(limit)}"
        return [rows.EVENT.read(r) for r in self.db.read(lambda tx: tx.named(sql, params))]
