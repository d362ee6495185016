"""The prediction log's index in SQL: one row per Parquet file, found by endpoint and time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mloop.domain.prediction import PredictionBatch
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import Database, Tx, check_limit, chunks, escape_like, in_clause

BATCH = rows.RowShape(PredictionBatch)
_INSERT = (
    "INSERT INTO prediction_batches (id, endpoint, model, role, first_at, last_at, rows, "
    "requests, digest, bytes, created) VALUES (:id, :endpoint, :model, :role, :first_at, "
    ":last_at, :rows, :requests, :digest, :bytes, :created) ON CONFLICT (id) DO NOTHING"
)


class SqlPredictionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, batch: PredictionBatch) -> None:
        """Index one file; adding the same batch again (a writer's retry after an add that
        landed but whose answer was lost) changes nothing."""
        row = {
            "id": batch.id,
            "endpoint": batch.endpoint,
            "model": str(batch.model),
            "role": batch.role,
            "first_at": batch.first_at,
            "last_at": batch.last_at,
            "rows": batch.rows,
            "requests": batch.requests,
            "digest": batch.digest,
            "bytes": batch.bytes,
            "created": batch.created,
        }
        self.db.write(lambda tx: tx.execute(_INSERT, row))

    def find(
        self,
        endpoint: str,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[PredictionBatch]:
        """The batches of `endpoint` with a row between `since` and `until` (both included),
        newest first; `model` is `NAME:VERSION`, or `NAME` for all its versions."""
        where = ["endpoint = :e"]
        params: dict[str, Any] = {"e": endpoint}
        if since is not None:
            where.append("last_at >= :since")
            params["since"] = since
        if until is not None:
            where.append("first_at <= :until")
            params["until"] = until
        if model is not None:
            where.append("(model = :m OR model LIKE :prefix ESCAPE '\\')")
            params |= {"m": model, "prefix": escape_like(model) + ":%"}
        sql = (
            f"SELECT * FROM prediction_batches WHERE {' AND '.join(where)} "
            "ORDER BY last_at DESC, id"
        )
        if limit is not None:
            sql += f" LIMIT {check_limit(limit)}"

        def work(tx: Tx) -> list[PredictionBatch]:
            return [BATCH.read(r) for r in tx.named(sql, params)]

        return self.db.read(work)

    def expired(self, before: float) -> list[PredictionBatch]:
        """Every batch whose rows all came before `before`, oldest first: what retention drops."""

        def work(tx: Tx) -> list[PredictionBatch]:
            sql = "SELECT * FROM prediction_batches WHERE last_at < :b ORDER BY last_at, id"
            return [BATCH.read(r) for r in tx.named(sql, {"b": before})]

        return self.db.read(work)

    def remove(self, ids: Sequence[str]) -> int:
        """Forget the batches `ids` (their files stay until gc finds nothing refers to them);
        returns how many there were."""

        def work(tx: Tx) -> int:
            removed = 0
            for chunk in chunks(list(ids)):
                clause, args = in_clause(chunk)
                cursor = tx.execute(f"DELETE FROM prediction_batches WHERE id IN {clause}", args)
                removed += max(int(cursor.rowcount), 0)
            return removed

        return self.db.write(work)
