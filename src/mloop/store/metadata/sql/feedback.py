"""Labels in SQL: one row per (endpoint, request id, row), the label as JSON text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mloop.domain.feedback import Label, Stored
from mloop.store.metadata.sql.db import Database, Tx, chunks, in_clause

_UPSERT = (
    'INSERT INTO feedback_labels (endpoint, request_id, "row", label, at, source) '
    'VALUES (:e, :r, :n, :l, :at, :s) ON CONFLICT (endpoint, request_id, "row") DO UPDATE '
    "SET label = excluded.label, at = excluded.at, source = excluded.source"
)


def _label(row: dict[str, Any]) -> Label:
    return Label(
        request_id=row["request_id"],
        value=json.loads(row["label"]),
        at=float(row["at"]),
        source=row["source"],
        row=int(row["row"]),
    )


class SqlFeedbackStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, endpoint: str, labels: Sequence[Label]) -> Stored:
        """Store `labels` for `endpoint` in one transaction; each replaces a label given
        before for its request and row (the last of a batch wins over the ones before it)."""
        latest = {(label.request_id, label.row): label for label in labels}
        in_batch = len(labels) - len(latest)
        rows = [
            {
                "e": endpoint,
                "r": label.request_id,
                "n": label.row,
                "l": json.dumps(label.value),
                "at": label.at,
                "s": label.source,
            }
            for label in latest.values()
        ]

        def work(tx: Tx) -> Stored:
            before = 0
            ids = sorted({rid for rid, _ in latest})
            for chunk in chunks(ids):
                clause, args = in_clause(chunk)
                found = tx.named(
                    'SELECT request_id, "row" FROM feedback_labels '
                    f"WHERE endpoint = :e AND request_id IN {clause}",
                    {"e": endpoint, **args},
                )
                before += sum((r["request_id"], int(r["row"])) in latest for r in found)
            if rows:
                tx.executemany(_UPSERT, rows)
            return Stored(len(labels), before + in_batch)

        return self.db.write(work)

    def find(self, endpoint: str, request_ids: Sequence[str]) -> list[Label]:
        """The labels of `endpoint` for the requests `request_ids` (every row of each)."""

        def work(tx: Tx) -> list[Label]:
            found: list[Label] = []
            for chunk in chunks(sorted(set(request_ids))):
                clause, args = in_clause(chunk)
                sql = (
                    "SELECT * FROM feedback_labels "
                    f'WHERE endpoint = :e AND request_id IN {clause} ORDER BY request_id, "row"'
                )
                found += [_label(r) for r in tx.named(sql, {"e": endpoint, **args})]
            return found

        return self.db.read(work)

    def received(
        self, endpoint: str, since: float | None = None, until: float | None = None
    ) -> list[Label]:
        """The labels of `endpoint` that arrived from `since` to `until` (both included),
        oldest first."""
        where = ["endpoint = :e"]
        params: dict[str, Any] = {"e": endpoint}
        if since is not None:
            where.append("at >= :since")
            params["since"] = since
        if until is not None:
            where.append("at <= :until")
            params["until"] = until
        sql = (
            f"SELECT * FROM feedback_labels WHERE {' AND '.join(where)} "
            'ORDER BY at, request_id, "row"'
        )
        return self.db.read(lambda tx: [_label(r) for r in tx.named(sql, params)])
