"""SqlMetadataStore: the MetadataStore Protocol on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

from mloop.domain.event import Event
from mloop.domain.run import Run
from mloop.errors import InvalidInput, NotFound
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.datasets import SqlDatasets
from mloop.store.metadata.sql.db import Database, Tx, check_limit, escape_like
from mloop.store.metadata.sql.migrate import ensure_schema
from mloop.store.metadata.sql.models import SqlModels
from mloop.store.metadata.sql.removal import SqlRemoval
from mloop.store.metadata.sql.runs import SqlRuns

# Every column that names an object in the artifact store, and what to call its owner. `:kept`
# is the time after which a removal is too recent to purge (references of records removed
# earlier are left out when gc asks what will remain once it has purged them).
REFERENCES = (
    "SELECT f.digest, f.size, 'dataset/' || v.dataset || ':' || CAST(v.version AS VARCHAR(12)) "
    "|| ' ' || f.path FROM dataset_files f JOIN dataset_versions v ON v.id = f.version_id "
    "WHERE v.removed IS NULL OR v.removed > :kept",
    "SELECT o.digest, o.size, 'run/' || o.run_id || ' ' || o.name FROM run_outputs o "
    "JOIN runs r ON r.id = o.run_id WHERE r.deleted IS NULL OR r.deleted > :kept",
    "SELECT i.ref, NULL, 'run/' || i.run_id || ' input' FROM run_inputs i "
    "JOIN runs r ON r.id = i.run_id WHERE i.kind = 'artifact' "
    "AND (r.deleted IS NULL OR r.deleted > :kept)",
    "SELECT e.packages_digest, NULL, 'environment ' || e.digest FROM environments e",
    "SELECT m.digest, NULL, 'model/' || m.model || ':' || CAST(m.version AS VARCHAR(12)) "
    "FROM model_versions m",  # the manifest's own size is not recorded; its files' sizes are
    "SELECT f.digest, f.size, 'model/' || m.model || ':' || CAST(m.version AS VARCHAR(12)) "
    "|| ' ' || f.path FROM model_files f JOIN model_versions m ON m.id = f.version_id",
)
DIGEST_COLUMNS = (
    ("dataset_files", "digest"),
    ("run_outputs", "digest"),
    ("run_inputs", "ref"),
    ("environments", "packages_digest"),
    ("model_versions", "digest"),
    ("model_files", "digest"),
)
HEX = re.compile(r"[0-9a-f]{1,64}")


class SqlMetadataStore(SqlRuns, SqlDatasets, SqlModels, SqlRemoval):
    def __init__(self, uri: str, pool_size: int = 5) -> None:
        self.db = Database(uri, pool_size=pool_size)
        self.uri = uri
        ensure_schema(self.db)

    def close(self) -> None:
        self.db.close()

    # lineage ------------------------------------------------------------------------------
    def runs_with_input(self, kind: str, ref: str) -> list[Run]:
        return self.db.read(
            lambda tx: self._runs_by_ids(
                tx,
                "SELECT DISTINCT run_id FROM run_inputs WHERE kind = :k AND ref = :r",
                {"k": kind, "r": ref},
            )
        )

    def runs_with_output(self, digest: str) -> list[Run]:
        return self.db.read(
            lambda tx: self._runs_by_ids(
                tx, "SELECT DISTINCT run_id FROM run_outputs WHERE digest = :d", {"d": digest}
            )
        )

    def resolve_digest(self, prefix: str) -> str:
        given, prefix = prefix, prefix.lower()
        if not HEX.fullmatch(prefix):
            raise InvalidInput(
                f"invalid digest {given!r}: a digest is 1 to 64 hexadecimal digits (0-9, a-f)",
                "copy a digest, or a unique prefix of one, from `mloop runs show RUN`",
            )
        pattern = escape_like(prefix) + "%"

        def work(tx: Tx) -> str:
            found: set[str] = set()
            for table, column in DIGEST_COLUMNS:
                query = f"SELECT DISTINCT {column} FROM {table} WHERE {column} LIKE :p ESCAPE '\\'"
                if table == "run_inputs":
                    query += " AND kind = 'artifact'"
                found.update(r[0] for r in tx.all(query, {"p": pattern}))
            if len(found) == 1:
                return found.pop()
            if not found:
                raise NotFound(
                    f"no artifact with digest {prefix!r} is referenced by any run or dataset",
                    "see `mloop runs show RUN` or `mloop data show NAME --files` for digests",
                )
            raise InvalidInput(f"digest {prefix!r} is ambiguous", "give more hex digits")

        return self.db.read(work)

    # events -------------------------------------------------------------------------------
    def append_event(self, event: Event) -> None:
        self.db.write(lambda tx: tx.execute(rows.INSERT_EVENT, rows.event_to_row(event)))

    def list_events(self, ref: str | None = None, limit: int = 100) -> list[Event]:
        sql = "SELECT * FROM events"
        params: dict[str, object] = {}
        if ref is not None:
            sql += " WHERE ref = :ref OR ref LIKE :prefix ESCAPE '\\'"
            params = {"ref": ref, "prefix": escape_like(ref) + ":%"}
        sql += f" ORDER BY id DESC LIMIT {check_limit(limit)}"
        return [rows.EVENT.read(r) for r in self.db.read(lambda tx: tx.named(sql, params))]

    # housekeeping -------------------------------------------------------------------------
    def referenced_objects(
        self, purged_before: float | None = None
    ) -> Iterator[tuple[str, int | None, str]]:
        """(digest, size or None, owner) of every reference; with `purged_before`, as they will
        be once runs deleted and dataset versions removed at or before then are purged."""
        kept = {"kept": float("-inf") if purged_before is None else purged_before}

        def work(tx: Tx) -> list[tuple[str, int | None, str]]:
            found: list[tuple[str, int | None, str]] = []
            for sql in REFERENCES:
                found.extend((r[0], r[1], r[2]) for r in tx.all(sql, kept))
            return found

        return iter(self.db.read(work))
