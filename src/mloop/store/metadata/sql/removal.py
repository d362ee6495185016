"""Soft removal in SQL: runs deleted and dataset versions removed, and restored.

A removal only stamps the record with its time, so it can be undone until `mloop gc` purges
records removed longer ago than its grace period (`housekeeping.py`); their objects then become
unreferenced and gc removes them in the same pass. Purging must never break a foreign key, so
the writes keep three rules: a run is deleted with all its descendants and not while a model
version or a (kept) dataset version names it; a run is restored only under a live parent;
nothing new refers to a deleted run (`live_run` in runs.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from mloop.domain.event import Event
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import Database, Tx, escape_like, in_clause, in_range

# The run `:id` and every run below it.
TREE = (
    "WITH RECURSIVE tree(id) AS (SELECT id FROM runs WHERE id = :id UNION ALL "
    "SELECT r.id FROM runs r JOIN tree t ON r.parent_id = t.id) SELECT id FROM tree"
)


def insert_events(tx: Tx, event: Event, refs: Sequence[str]) -> None:
    tx.executemany(
        rows.INSERT_EVENT,
        [rows.event_to_row(dataclasses.replace(event, ref=ref)) for ref in refs],
    )


def _listed(items: Sequence[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _models_trained_on(tx: Tx, name: str, versions: Sequence[int]) -> list[str]:
    """`model:V (name:N)` for each model version whose training data includes a version."""
    wanted = {f"{name}:{v}" for v in versions}
    found = []
    for model, version, datasets in tx.all(
        "SELECT model, version, datasets FROM model_versions WHERE datasets LIKE :p ESCAPE '\\' "
        "ORDER BY model, version",
        {"p": f'%"{escape_like(name)}:%'},
    ):
        used = sorted(wanted.intersection(json.loads(datasets)))
        if used:
            found.append(f"{model}:{version} ({', '.join(used)})")
    return found


class RunRemoval:
    """The run store's `delete` and `restore`."""

    db: Database

    def delete(self, run_id: str, at: float, event: Event) -> list[str]:
        """Delete a run and every run below it; returns their ids (the run's first)."""

        def work(tx: Tx) -> list[str]:
            row = tx.one("SELECT deleted FROM runs WHERE id = :id", {"id": run_id})
            if row is None:
                raise NotFound(f"run {run_id} does not exist", "see `mloop runs list`")
            if row[0] is not None:
                raise Conflict(
                    f"run {run_id[:12]} is deleted already",
                    f"bring it back with `mloop runs restore {run_id[:12]}`",
                )
            ids = {"id": run_id, "at": at}
            # The update comes first: on PostgreSQL it locks the rows against a concurrent
            # registration from them, so the checks below see every committed reference.
            tx.execute(
                f"UPDATE runs SET deleted = :at WHERE deleted IS NULL AND id IN ({TREE})", ids
            )
            tree = [
                str(r[0])
                for r in tx.all(f"SELECT id FROM runs WHERE deleted = :at AND id IN ({TREE})", ids)
            ]
            running = [
                str(r[0])[:12]
                for r in tx.all(
                    f"SELECT id FROM runs WHERE status = 'running' AND id IN ({TREE})", ids
                )
            ]
            if running:
                raise Conflict(
                    f"run {_listed(running)} has not ended; a running run cannot be deleted",
                    "wait for it to end, or, if its process is gone, mark it failed first: "
                    f"mloop runs fail {running[0]}",
                )
            models = [
                f"{m}:{v}"
                for m, v in tx.all(
                    "SELECT model, version FROM model_versions "
                    f"WHERE run_id IN ({TREE}) ORDER BY model, version",
                    ids,
                )
            ]
            if models:
                raise Conflict(
                    f"run {run_id[:12]} made model version {_listed(models)}; "
                    "its lineage needs the run",
                    "a registered model's run stays; archive the model version instead: "
                    f"mloop models archive {models[0]}",
                )
            datasets = [
                f"{d}:{v}"
                for d, v in tx.all(
                    "SELECT dataset, version FROM dataset_versions WHERE removed IS NULL "
                    f"AND run_id IN ({TREE}) ORDER BY dataset, version",
                    ids,
                )
            ]
            if datasets:
                raise Conflict(
                    f"run {run_id[:12]} made dataset version {_listed(datasets)}",
                    f"remove the dataset version first: mloop data remove {datasets[0]}",
                )
            tree.sort(key=lambda i: i != run_id)
            insert_events(tx, event, [f"run/{i}" for i in tree])
            return tree

        return self.db.write(work)

    def restore(self, run_id: str, event: Event) -> list[str]:
        """Undo `delete`: the run and the runs below it that were deleted with it."""

        def work(tx: Tx) -> list[str]:
            row = tx.one("SELECT deleted, parent_id FROM runs WHERE id = :id", {"id": run_id})
            if row is None:
                raise NotFound(f"run {run_id} does not exist", "see `mloop runs list --deleted`")
            deleted, parent = row
            if deleted is None:
                raise Conflict(f"run {run_id[:12]} is not deleted")
            if parent is not None and tx.scalar(
                "SELECT deleted FROM runs WHERE id = :id", {"id": parent}
            ):
                raise Conflict(
                    f"the parent of run {run_id[:12]}, run {parent[:12]}, is deleted",
                    f"restore the parent, which restores this run too: "
                    f"mloop runs restore {parent[:12]}",
                )
            ids = {"id": run_id, "at": deleted}
            tree = [
                str(r[0])
                for r in tx.all(f"SELECT id FROM runs WHERE deleted = :at AND id IN ({TREE})", ids)
            ]
            tx.execute(
                f"UPDATE runs SET deleted = NULL WHERE deleted = :at AND id IN ({TREE})", ids
            )
            tree.sort(key=lambda i: i != run_id)
            insert_events(tx, event, [f"run/{i}" for i in tree])
            return tree

        return self.db.write(work)


class DatasetRemoval:
    """The dataset store's `remove_versions` and `restore_versions`."""

    db: Database

    def remove_versions(
        self, name: str, version: int | None, at: float, event: Event, *, force: bool = False
    ) -> list[int]:
        """Remove one version, or every version of the dataset when `version` is None.

        Without `force`, a version some registered model version was trained on is refused,
        naming the model versions.
        """

        def work(tx: Tx) -> list[int]:
            versions = self._versions(tx, name, version, removed=False)
            if not force:
                trained = _models_trained_on(tx, name, versions)
                if trained:
                    address = name if version is None else f"{name}:{version}"
                    raise Conflict(
                        f"dataset {address} trained model version {_listed(trained)}",
                        "the model keeps its files but loses this data from its lineage once "
                        f"gc purges it; to remove it anyway: mloop data remove {address} --force",
                    )
            clause, args = in_clause(versions)
            tx.execute(
                "UPDATE dataset_versions SET removed = :at WHERE dataset = :n AND removed IS NULL "
                f"AND version IN {clause}",
                {"at": at, "n": name, **args},
            )
            insert_events(tx, event, [f"dataset/{name}:{v}" for v in versions])
            return versions

        return self.db.write(work)

    def restore_versions(self, name: str, version: int | None, event: Event) -> list[int]:
        """Undo `remove_versions` for one version, or for every removed version."""

        def work(tx: Tx) -> list[int]:
            versions = self._versions(tx, name, version, removed=True)
            clause, numbers = in_clause(versions)
            args: dict[str, object] = {"n": name, **numbers}
            made_by = tx.one(
                "SELECT v.version, v.run_id FROM dataset_versions v JOIN runs r "
                "ON r.id = v.run_id AND r.deleted IS NOT NULL "
                f"WHERE v.dataset = :n AND v.version IN {clause} ORDER BY v.version",
                args,
            )
            if made_by is not None:
                number, run_id = made_by
                raise Conflict(
                    f"dataset {name}:{number} was made by run {run_id[:12]}, which is deleted",
                    f"restore the run first: mloop runs restore {run_id[:12]}",
                )
            tx.execute(
                f"UPDATE dataset_versions SET removed = NULL WHERE dataset = :n "
                f"AND version IN {clause}",
                args,
            )
            insert_events(tx, event, [f"dataset/{name}:{v}" for v in versions])
            return versions

        return self.db.write(work)

    @staticmethod
    def _versions(tx: Tx, name: str, version: int | None, *, removed: bool) -> list[int]:
        """The version numbers to act on: removed ones (or kept ones), all or the one given."""
        state = "IS NOT NULL" if removed else "IS NULL"
        if version is None:
            found = [
                int(r[0])
                for r in tx.all(
                    f"SELECT version FROM dataset_versions WHERE dataset = :n AND removed {state} "
                    "ORDER BY version",
                    {"n": name},
                )
            ]
            if found:
                return found
            if tx.scalar("SELECT 1 FROM datasets WHERE name = :n", {"n": name}) is None:
                raise NotFound(f"no dataset {name!r}", "list datasets with `mloop data list`")
            if removed:
                raise Conflict(f"dataset {name!r} has no removed versions")
            raise Conflict(
                f"every version of dataset {name!r} is removed already",
                f"bring them back with `mloop data remove {name} --undo`",
            )
        row = (
            tx.one(
                "SELECT removed FROM dataset_versions WHERE dataset = :n AND version = :v",
                {"n": name, "v": version},
            )
            if in_range(version)
            else None
        )
        if row is None:
            raise NotFound(
                f"dataset {name!r} has no version {version}",
                f"see `mloop data show {name} --versions`",
            )
        if removed and row[0] is None:
            raise Conflict(f"dataset {name}:{version} is not removed")
        if not removed and row[0] is not None:
            raise Conflict(
                f"dataset {name}:{version} is removed already",
                f"bring it back with `mloop data remove {name}:{version} --undo`",
            )
        return [version]
