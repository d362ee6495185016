"""The model registry in SQL: versions numbered by the database, aliases, files, status."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mloop.domain.dataset import FileEntry
from mloop.domain.event import Event
from mloop.domain.gate import GateRecord
from mloop.domain.model import Model, ModelVersion
from mloop.errors import InvalidInput, NotFound
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import Database, Tx, in_range
from mloop.store.metadata.sql.runs import live_run


def _version(row: Mapping[str, Any], aliases: Sequence[str]) -> ModelVersion:
    return rows.MODEL_VERSION.read(row, aliases=tuple(sorted(aliases)))


def _missing_model(name: str) -> NotFound:
    return NotFound(f"no model {name!r}", "list models with `mloop models list`")


def _missing_version(tx: Tx, name: str, number: int) -> NotFound:
    """NotFound for `name:number`, read in the caller's transaction (a write cannot open
    another one on SQLite)."""
    latest = tx.scalar("SELECT latest FROM models WHERE name = :n", {"n": name})
    if latest is None:
        return _missing_model(name)
    return NotFound(
        f"model {name!r} has no version {number} (latest is {latest})",
        f"see `mloop models show {name}`",
    )


class SqlModelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_version(
        self, version: ModelVersion, files: Sequence[FileEntry], event: Event
    ) -> ModelVersion:
        """Allocate the next version number (gap-free under concurrent registrations: the
        counter row is updated in the same transaction) and write version, files and event."""

        def work(tx: Tx) -> ModelVersion:
            if version.run_id and not live_run(tx, version.run_id):
                raise NotFound(
                    f"run {version.run_id} does not exist (or is deleted)",
                    "see `mloop runs list`",
                )
            number = int(
                tx.scalar(
                    "INSERT INTO models (name, created, latest, description) "
                    "VALUES (:n, :c, 1, '') ON CONFLICT (name) DO UPDATE "
                    "SET latest = models.latest + 1 RETURNING latest",
                    {"n": version.name, "c": version.created},
                )
            )
            version_id = tx.scalar(
                "INSERT INTO model_versions (model, version, created, user_name, flavor, digest, "
                "size, run_id, signature, metrics, params, datasets, code_commit, code_diff, "
                "environment, status, description, trusted_types, gates) VALUES (:m, :v, :c, "
                ":u, :f, :d, :s, :r, :sig, :met, :par, :ds, :cc, :cd, :env, :st, :desc, :tt, :g) "
                "RETURNING id",
                {
                    "m": version.name,
                    "v": number,
                    "c": version.created,
                    "u": version.user,
                    "f": version.flavor,
                    "d": version.digest,
                    "s": version.size,
                    "r": version.run_id,
                    "sig": rows.dumps(version.signature) if version.signature else None,
                    "met": rows.dumps(dict(version.metrics)),
                    "par": rows.dumps(dict(version.params)),
                    "ds": rows.dumps(list(version.datasets)),
                    "cc": version.code.commit,
                    "cd": version.code.diff_digest,
                    "env": version.environment,
                    "st": str(version.status),
                    "desc": version.description,
                    "tt": rows.dumps(list(version.trusted_types)),
                    "g": rows.dumps(list(version.gates)),
                },
            )
            tx.executemany(
                "INSERT INTO model_files (version_id, path, digest, size) VALUES (:i, :p, :d, :s)",
                [{"i": version_id, "p": f.path, "d": f.digest, "s": f.size} for f in files],
            )
            ref = f"model/{version.name}:{number}"
            tx.execute(rows.INSERT_EVENT, rows.event_to_row(dataclasses.replace(event, ref=ref)))
            return dataclasses.replace(version, version=number, aliases=())

        return self.db.write(work)

    def _aliases(self, tx: Tx, name: str) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for alias, version in tx.all(
            "SELECT alias, version FROM model_aliases WHERE model = :m", {"m": name}
        ):
            found.setdefault(version, []).append(alias)
        return found

    def get_version(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        def work(tx: Tx) -> ModelVersion:
            latest = tx.scalar("SELECT latest FROM models WHERE name = :n", {"n": name})
            if latest is None:
                raise _missing_model(name)
            number = version
            if alias is not None:
                number = tx.scalar(
                    "SELECT version FROM model_aliases WHERE model = :m AND alias = :a",
                    {"m": name, "a": alias},
                )
                if number is None:
                    known = sorted(a for vs in self._aliases(tx, name).values() for a in vs)
                    raise NotFound(
                        f"model {name!r} has no alias {alias!r}"
                        + (f" (it has: {', '.join(known)})" if known else ""),
                        f"set one with `mloop models alias {name}:VERSION {alias}`",
                    )
            if number is None:
                number = latest
            row = None
            if in_range(number):  # a bigger number names no row; SQL must not see it
                row = tx.named_one(
                    "SELECT v.* FROM model_versions v WHERE v.model = :m AND v.version = :v",
                    {"m": name, "v": number},
                )
            if row is None:
                raise _missing_version(tx, name, number)
            return _version(row, self._aliases(tx, name).get(number, []))

        return self.db.read(work)

    def all(self) -> list[Model]:
        def work(tx: Tx) -> list[Model]:
            found = []
            for row in tx.named("SELECT * FROM models ORDER BY name"):
                aliases = dict(
                    tx.all(
                        "SELECT alias, version FROM model_aliases WHERE model = :m",
                        {"m": row["name"]},
                    )
                )
                found.append(rows.MODEL.read(row, aliases=aliases))
            return found

        return self.db.read(work)

    def list_versions(self, name: str) -> list[ModelVersion]:
        def work(tx: Tx) -> list[ModelVersion]:
            found = tx.named(
                "SELECT v.* FROM model_versions v WHERE v.model = :m ORDER BY v.version",
                {"m": name},
            )
            if not found:
                raise _missing_model(name)
            aliases = self._aliases(tx, name)
            return [_version(row, aliases.get(row["version"], [])) for row in found]

        return self.db.read(work)

    def versions_of_run(self, run_id: str) -> list[ModelVersion]:
        found = self.db.read(
            lambda tx: tx.named(
                "SELECT v.* FROM model_versions v WHERE v.run_id = :r ORDER BY v.model, v.version",
                {"r": run_id},
            )
        )
        return [_version(row, []) for row in found]

    def set_alias(self, name: str, alias: str, version: int, event: Event) -> None:
        def work(tx: Tx) -> None:
            status = None
            if in_range(version):
                status = tx.scalar(
                    "SELECT status FROM model_versions WHERE model = :m AND version = :v",
                    {"m": name, "v": version},
                )
            if status is None:
                raise _missing_version(tx, name, version)
            if status == "archived":
                raise InvalidInput(
                    f"{name}:{version} is archived; an alias cannot point at it",
                    f"choose another version, or unarchive it: mloop models archive "
                    f"{name}:{version} --undo",
                )
            tx.execute(
                "INSERT INTO model_aliases (model, alias, version) VALUES (:m, :a, :v) "
                "ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version",
                {"m": name, "a": alias, "v": version},
            )
            tx.execute(rows.INSERT_EVENT, rows.event_to_row(event))

        self.db.write(work)

    def delete_alias(self, name: str, alias: str, event: Event) -> None:
        def work(tx: Tx) -> None:
            gone = tx.execute(
                "DELETE FROM model_aliases WHERE model = :m AND alias = :a",
                {"m": name, "a": alias},
            ).rowcount
            if not gone:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            tx.execute(rows.INSERT_EVENT, rows.event_to_row(event))

        self.db.write(work)

    def set_status(self, name: str, version: int, status: str, event: Event) -> None:
        def work(tx: Tx) -> None:
            changed = (
                in_range(version)
                and tx.execute(
                    "UPDATE model_versions SET status = :s WHERE model = :m AND version = :v",
                    {"s": str(status), "m": name, "v": version},
                ).rowcount
            )
            if not changed:
                raise _missing_version(tx, name, version)
            if status == "archived":
                tx.execute(
                    "DELETE FROM model_aliases WHERE model = :m AND version = :v",
                    {"m": name, "v": version},
                )
            tx.execute(rows.INSERT_EVENT, rows.event_to_row(event))

        self.db.write(work)

    def set_gates(self, name: str, version: int, gates: Sequence[GateRecord]) -> None:
        def work(tx: Tx) -> None:
            changed = (
                in_range(version)
                and tx.execute(
                    "UPDATE model_versions SET gates = :g WHERE model = :m AND version = :v",
                    {"g": rows.dumps(list(gates)), "m": name, "v": version},
                ).rowcount
            )
            if not changed:
                raise _missing_version(tx, name, version)

        self.db.write(work)
