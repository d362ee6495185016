"""The housekeeping store in SQL: questions that read every noun's tables at once.

Which digests the metadata names (gc keeps them, fsck checks them, `mloop lineage` resolves a
prefix among them), and the purge of runs and dataset versions removed before gc's cutoff.
Adding a table that names an artifact object means adding it to REFERENCES and DIGEST_COLUMNS.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from mloop.domain.event import Event
from mloop.errors import InvalidInput, NotFound
from mloop.store.metadata.sql.db import Database, Tx, chunks, escape_like, in_clause
from mloop.store.metadata.sql.removal import insert_events

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
    "SELECT p.digest, p.bytes, 'predictions/' || p.endpoint || ' ' || p.model || ' batch ' || p.id "
    "FROM prediction_batches p",
)
DIGEST_COLUMNS = (
    ("dataset_files", "digest"),
    ("run_outputs", "digest"),
    ("run_inputs", "ref"),
    ("environments", "packages_digest"),
    ("model_versions", "digest"),
    ("model_files", "digest"),
    ("prediction_batches", "digest"),
)
HEX = re.compile(r"[0-9a-f]{1,64}")
# What a purged run leaves in other tables, deleted with it.
RUN_TABLES = (
    "run_params",
    "run_tags",
    "run_metrics",
    "run_latest_metrics",
    "run_inputs",
    "run_outputs",
)


class SqlHousekeepingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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

    def purge_removed(
        self, before: float, *, event: Event | None = None, dry_run: bool = False
    ) -> tuple[list[str], list[str]]:
        """Delete for good the runs deleted and dataset versions removed at or before `before`.

        Returns their ids and `name:version`s. `event` is recorded for each, as `run.ACTION`
        (`run/ID`) or `dataset.ACTION` (`dataset/NAME:V`); the events about them before stay,
        as the audit log is append-only.
        """

        def work(tx: Tx) -> tuple[list[str], list[str]]:
            at = {"b": before}
            run_ids = [
                str(r[0])
                for r in tx.all(
                    "SELECT id FROM runs WHERE deleted IS NOT NULL AND deleted <= :b ORDER BY id",
                    at,
                )
            ]
            versions = tx.all(
                "SELECT id, dataset, version FROM dataset_versions "
                "WHERE removed IS NOT NULL AND removed <= :b ORDER BY dataset, version",
                at,
            )
            if not dry_run:
                for numbers in chunks([int(r[0]) for r in versions]):
                    clause, keys = in_clause(numbers)
                    tx.execute(f"DELETE FROM dataset_files WHERE version_id IN {clause}", keys)
                    tx.execute(f"DELETE FROM dataset_versions WHERE id IN {clause}", keys)
                # A run goes with all runs below it; unlinking first lets chunks go in any order.
                for chunk in chunks(run_ids):
                    clause, args = in_clause(chunk)
                    tx.execute(f"UPDATE runs SET parent_id = NULL WHERE id IN {clause}", args)
                for chunk in chunks(run_ids):
                    clause, args = in_clause(chunk)
                    for table in RUN_TABLES:
                        tx.execute(f"DELETE FROM {table} WHERE run_id IN {clause}", args)
                    tx.execute(f"DELETE FROM runs WHERE id IN {clause}", args)
            refs = [f"{d}:{v}" for _, d, v in versions]
            if event is not None and not dry_run:
                for kind, names in (("run", run_ids), ("dataset", refs)):
                    stamped = dataclasses.replace(event, action=f"{kind}.{event.action}")
                    insert_events(tx, stamped, [f"{kind}/{n}" for n in names])
            return run_ids, refs

        return self.db.write(work) if not dry_run else self.db.read(work)
