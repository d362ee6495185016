"""Datasets and their versions in SQL: the dataset store of the SQL metadata store."""

from __future__ import annotations

import dataclasses

from mloop.domain.dataset import DatasetSummary, DatasetVersion, FileEntry
from mloop.domain.event import Event
from mloop.errors import NotFound
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import Database, Tx, in_range
from mloop.store.metadata.sql.removal import DatasetRemoval
from mloop.store.metadata.sql.runs import live_run

# The newest version of dataset `:n` that is not removed.
LATEST = "SELECT MAX(x.version) FROM dataset_versions x WHERE x.dataset = :n AND x.removed IS NULL"


def _missing_dataset(name: str) -> NotFound:
    return NotFound(f"no dataset {name!r}", "list datasets with `mloop data list`")


def _missing_version(tx: Tx, name: str, version: int) -> NotFound:
    """Why `name:version` cannot be read: no such dataset, no such version, or removed."""
    removed = None
    if in_range(version):
        removed = tx.scalar(
            "SELECT removed FROM dataset_versions WHERE dataset = :n AND version = :v",
            {"n": name, "v": version},
        )
    if removed is not None:
        return NotFound(
            f"dataset {name}:{version} was removed",
            f"bring it back with `mloop data remove {name}:{version} --undo`",
        )
    latest = tx.scalar(LATEST, {"n": name})
    if latest is None:
        return _missing_dataset(name)
    return NotFound(
        f"dataset {name!r} has no version {version} (latest is {latest})",
        f"see `mloop data show {name}`",
    )


class SqlDatasetStore(DatasetRemoval):
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_version(self, version: DatasetVersion, event: Event) -> DatasetVersion:
        """Allocate the next version number and write version, manifest and event at once."""

        def work(tx: Tx) -> DatasetVersion:
            run_id = version.run_id
            if run_id and not live_run(tx, run_id):
                raise NotFound(
                    f"run {run_id} does not exist (or is deleted)", "see `mloop runs list`"
                )
            number = int(
                tx.scalar(
                    "INSERT INTO datasets (name, created, latest) VALUES (:n, :c, 1) "
                    "ON CONFLICT (name) DO UPDATE SET latest = datasets.latest + 1 "
                    "RETURNING latest",
                    {"n": version.name, "c": version.created},
                )
            )
            version_id = tx.scalar(
                "INSERT INTO dataset_versions (dataset, version, created, user_name, message, "
                "file_count, total_size, sources, tables, run_id) VALUES (:d, :v, :c, :u, :m, "
                ":fc, :ts, :src, :tab, :run) RETURNING id",
                {
                    "d": version.name,
                    "v": number,
                    "c": version.created,
                    "u": version.user,
                    "m": version.message,
                    "fc": version.file_count,
                    "ts": version.total_size,
                    "src": rows.dumps(version.sources),
                    "tab": rows.dumps(version.tables),
                    "run": version.run_id,
                },
            )
            tx.executemany(
                "INSERT INTO dataset_files (version_id, path, digest, size) VALUES (?, ?, ?, ?)"
                if tx.dialect == "sqlite"
                else "INSERT INTO dataset_files (version_id, path, digest, size) "
                "VALUES (:i, :p, :d, :s)",
                [(version_id, f.path, f.digest, f.size) for f in version.files]
                if tx.dialect == "sqlite"
                else [
                    {"i": version_id, "p": f.path, "d": f.digest, "s": f.size}
                    for f in version.files
                ],
            )
            ref = f"dataset/{version.name}:{number}"
            stamped = dataclasses.replace(event, ref=ref)
            tx.execute(rows.INSERT_EVENT, rows.event_to_row(stamped))
            return dataclasses.replace(version, version=number)

        return self.db.write(work)

    def get_version(
        self, name: str, version: int | None = None, *, files: bool = False
    ) -> DatasetVersion:
        def work(tx: Tx) -> DatasetVersion:
            if version is None:
                row = tx.named_one(
                    "SELECT v.* FROM dataset_versions v WHERE v.dataset = :n "
                    "AND v.removed IS NULL ORDER BY v.version DESC LIMIT 1",
                    {"n": name},
                )
                if row is None:
                    raise _missing_dataset(name)
            else:
                row = None
                if in_range(version):  # a bigger number names no row; SQL must not see it
                    row = tx.named_one(
                        "SELECT v.* FROM dataset_versions v "
                        "WHERE v.dataset = :n AND v.version = :v AND v.removed IS NULL",
                        {"n": name, "v": version},
                    )
                if row is None:
                    raise _missing_version(tx, name, version)
            found = rows.DATASET_VERSION.read(row)
            if not files:
                return found
            entries = tuple(
                FileEntry(p, d, s)
                for p, d, s in tx.all(
                    "SELECT path, digest, size FROM dataset_files WHERE version_id = :i "
                    "ORDER BY path",
                    {"i": row["id"]},
                )
            )
            return dataclasses.replace(found, files=entries)

        return self.db.read(work)

    def all(self) -> list[DatasetSummary]:
        found = self.db.read(
            lambda tx: tx.named(
                "SELECT d.name, v.version AS latest, d.created, v.created AS updated, "
                "v.file_count, v.total_size "
                "FROM datasets d JOIN dataset_versions v ON v.dataset = d.name "
                f"AND v.version = ({LATEST.replace(':n', 'd.name')}) ORDER BY d.name"
            )
        )
        return [rows.DATASET_SUMMARY.read(row) for row in found]

    def list_versions(self, name: str) -> list[DatasetVersion]:
        def work(tx: Tx) -> list[DatasetVersion]:
            found = tx.named(
                "SELECT v.* FROM dataset_versions v WHERE v.dataset = :n "
                "AND v.removed IS NULL ORDER BY v.version",
                {"n": name},
            )
            if not found:
                raise _missing_dataset(name)
            return [rows.DATASET_VERSION.read(r) for r in found]

        return self.db.read(work)

    def versions_with_file(self, digest: str) -> list[DatasetVersion]:
        found = self.db.read(
            lambda tx: tx.named(
                "SELECT v.* FROM dataset_versions v WHERE v.id IN "
                "(SELECT version_id FROM dataset_files WHERE digest = :d) "
                "ORDER BY v.dataset, v.version",
                {"d": digest},
            )
        )
        return [rows.DATASET_VERSION.read(r) for r in found]

    def file_digests(self, name: str, after: int = 0) -> frozenset[str]:
        """The digests of the files of `name`'s versions numbered above `after` (removed ones
        left out): what a new_data check compares landed files with, in one query that reads
        no version record (a version's profiles can be megabytes)."""
        found = self.db.read(
            lambda tx: tx.all(
                "SELECT DISTINCT f.digest FROM dataset_files f "
                "JOIN dataset_versions v ON v.id = f.version_id "
                "WHERE v.dataset = :n AND v.version > :a AND v.removed IS NULL",
                {"n": name, "a": after},
            )
        )
        return frozenset(str(r[0]) for r in found)

    def versions_of_run(self, run_id: str) -> list[DatasetVersion]:
        found = self.db.read(
            lambda tx: tx.named(
                "SELECT v.* FROM dataset_versions v WHERE v.run_id = :r "
                "ORDER BY v.dataset, v.version",
                {"r": run_id},
            )
        )
        return [rows.DATASET_VERSION.read(r) for r in found]
