"""Runs and their data in SQL: the run store of the SQL metadata store."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mloop.domain.event import Event
from mloop.domain.lineage import Environment
from mloop.domain.run import Metric, Run, RunInput, RunOutput, RunStatus
from mloop.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import (
    INT64_MAX,
    INT64_MIN,
    Database,
    Tx,
    check_limit,
    chunks,
    escape_like,
    in_clause,
)
from mloop.store.metadata.sql.environments import insert_environment
from mloop.store.metadata.sql.removal import RunRemoval

if TYPE_CHECKING:
    from mloop.domain.query import Expr, SortKey
    from mloop.domain.run import Liveness

_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
RUN_ID = re.compile(r"[0-9a-f]{1,32}")


def check_run_ref(ref: str) -> str:
    """A run id or id prefix, lower-cased; anything but 1 to 32 hex digits is refused, so a
    `%` or `_` never reaches a LIKE pattern as a wildcard."""
    lowered = ref.lower()
    if not RUN_ID.fullmatch(lowered):
        raise InvalidInput(
            f"invalid run id {ref!r}: a run id is 1 to 32 hexadecimal digits (0-9, a-f)",
            "copy an id, or a unique prefix of one, from `mloop runs list`",
        )
    return lowered


def live_run(tx: Tx, run_id: str) -> bool:
    """Whether the run exists and is not deleted; on PostgreSQL the row stays locked against a
    concurrent delete until the transaction ends (SQLite runs one writer at a time)."""
    lock = " FOR SHARE" if tx.dialect == "postgresql" else ""
    found = tx.scalar(
        f"SELECT 1 FROM runs WHERE id = :id AND deleted IS NULL{lock}", {"id": run_id}
    )
    return found is not None


def _as_number(text: str) -> float | None:
    if _NUMBER.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else None
    return None


def _nan_as_null(value: float | None) -> float | None:
    """NaN is stored as NULL on both databases (SQLite does so itself; PostgreSQL keeps NaN)."""
    return value if value == value else None


def _latest(metrics: Iterable[Metric]) -> dict[str, Metric]:
    """The latest value of each key (highest step, then time), after checking every step."""
    latest: dict[str, Metric] = {}
    for m in metrics:
        if not INT64_MIN <= m.step <= INT64_MAX:
            raise InvalidInput(
                f"metric {m.key!r}: step {m.step} is out of range",
                f"steps are whole numbers from {INT64_MIN} to {INT64_MAX}",
            )
        old = latest.get(m.key)
        if old is None or (m.step, m.timestamp) >= (old.step, old.timestamp):
            latest[m.key] = m
    return latest


class SqlRunStore(RunRemoval):
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, run: Run, event: Event, environment: Environment | None = None) -> None:
        """The run, its params, tags and metrics, its event and `environment` (when given and
        not stored yet) in one transaction."""
        latest = _latest(run.metrics.values())

        def work(tx: Tx) -> None:
            if environment is not None:
                insert_environment(tx, environment)
            if tx.scalar("SELECT 1 FROM runs WHERE id = :id", {"id": run.id}) is not None:
                raise AlreadyExists(f"run {run.id} exists already", "start a run with a new id")
            if run.parent_id is not None and not live_run(tx, run.parent_id):
                raise NotFound(
                    f"parent run {run.parent_id} does not exist (or is deleted)",
                    "see `mloop runs list`",
                )
            tx.execute(
                "INSERT INTO runs (id, name, status, started, ended, parent_id, user_name, "
                "code_commit, code_diff, code_repo, environment, error, pid, host, heartbeat, "
                "kind, pipeline) "
                "VALUES (:id, :name, :status, :started, :ended, :parent_id, :user_name, "
                ":code_commit, :code_diff, :code_repo, :environment, :error, :pid, :host, "
                ":heartbeat, :kind, :pipeline)",
                rows.run_to_row(run),
            )
            tx.execute(rows.INSERT_EVENT, rows.event_to_row(event))
            self._write_data(
                tx,
                run.id,
                list(run.params.items()),
                list(run.tags.items()),
                list(run.metrics.values()),
                (),
                (),
                latest,
            )

        self.db.write(work)

    def write_data(
        self,
        run_id: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
        metrics: Sequence[Metric] = (),
        inputs: Sequence[RunInput] = (),
        outputs: Sequence[RunOutput] = (),
    ) -> None:
        latest = _latest(metrics)

        def work(tx: Tx) -> None:
            if tx.scalar("SELECT 1 FROM runs WHERE id = :id", {"id": run_id}) is None:
                raise NotFound(f"run {run_id} does not exist", "see `mloop runs list`")
            self._write_data(tx, run_id, params, tags, metrics, inputs, outputs, latest)

        self.db.write(work)

    def _write_data(
        self,
        tx: Tx,
        run_id: str,
        params: Sequence[tuple[str, str]],
        tags: Sequence[tuple[str, str]],
        metrics: Sequence[Metric],
        inputs: Sequence[RunInput],
        outputs: Sequence[RunOutput],
        latest: dict[str, Metric],
    ) -> None:
        self._write_params(tx, run_id, params)
        tx.executemany(
            "INSERT INTO run_tags (run_id, key, value) VALUES (:r, :k, :v) "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            [{"r": run_id, "k": k, "v": v} for k, v in tags],
        )
        tx.executemany(
            "INSERT INTO run_metrics (run_id, key, value, step, ts) VALUES (?, ?, ?, ?, ?)"
            if tx.dialect == "sqlite"
            else "INSERT INTO run_metrics (run_id, key, value, step, ts) "
            "VALUES (:r, :k, :v, :s, :t)",
            [(run_id, m.key, m.value, m.step, m.timestamp) for m in metrics]
            if tx.dialect == "sqlite"
            else [
                {
                    "r": run_id,
                    "k": m.key,
                    "v": _nan_as_null(m.value),
                    "s": m.step,
                    "t": m.timestamp,
                }
                for m in metrics
            ],
        )
        tx.executemany(
            "INSERT INTO run_latest_metrics (run_id, key, value, step, ts) "
            "VALUES (:r, :k, :v, :s, :t) ON CONFLICT (run_id, key) DO UPDATE SET "
            "value = excluded.value, step = excluded.step, ts = excluded.ts "
            "WHERE excluded.step > run_latest_metrics.step OR (excluded.step = "
            "run_latest_metrics.step AND excluded.ts >= run_latest_metrics.ts)",
            [
                {
                    "r": run_id,
                    "k": m.key,
                    "v": _nan_as_null(m.value),
                    "s": m.step,
                    "t": m.timestamp,
                }
                for m in latest.values()
            ],
        )
        tx.executemany(
            "INSERT INTO run_inputs (run_id, kind, ref, name) VALUES (:r, :k, :ref, :n) "
            "ON CONFLICT (run_id, kind, ref) DO NOTHING",
            [{"r": run_id, "k": i.kind, "ref": i.ref, "n": i.name} for i in inputs],
        )
        tx.executemany(
            "INSERT INTO run_outputs (run_id, name, digest, size) VALUES (:r, :n, :d, :s) "
            "ON CONFLICT (run_id, name) DO UPDATE SET digest = excluded.digest, "
            "size = excluded.size",
            [{"r": run_id, "n": o.name, "d": o.digest, "s": o.size} for o in outputs],
        )

    def _write_params(self, tx: Tx, run_id: str, params: Sequence[tuple[str, str]]) -> None:
        if not params:
            return
        keys = [k for k, _ in params]
        clause, args = in_clause(keys)
        existing = dict(
            tx.all(
                f"SELECT key, value FROM run_params WHERE run_id = :run AND key IN {clause}",
                {"run": run_id, **args},
            )
        )
        for key, value in params:
            if key in existing and existing[key] != value:
                raise Conflict(
                    f"param {key!r} of run {run_id[:12]} is already {existing[key]!r}; "
                    f"it cannot become {value!r}",
                    "params are fixed once logged; log a metric or a tag for values that change",
                )
        tx.executemany(
            "INSERT INTO run_params (run_id, key, value, value_num) VALUES (:r, :k, :v, :n) "
            "ON CONFLICT (run_id, key) DO NOTHING",
            [{"r": run_id, "k": k, "v": v, "n": _as_number(v)} for k, v in params],
        )

    def end(
        self,
        run_id: str,
        status: RunStatus,
        ended: float,
        error: str | None,
        event: Event,
        *,
        only_running: bool = False,
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
        metrics: Sequence[Metric] = (),
        inputs: Sequence[RunInput] = (),
        outputs: Sequence[RunOutput] = (),
    ) -> None:
        """With `only_running`, a run that has ended meanwhile is a Conflict, left as it is.
        `params` to `outputs` (what the run logged last) are written in the same transaction."""
        if status is RunStatus.LOST:
            raise InvalidInput("a run cannot be ended as lost", "end it as finished or failed")
        latest = _latest(metrics)

        def work(tx: Tx) -> None:
            sql = "UPDATE runs SET status = :s, ended = :e, error = :err WHERE id = :id"
            if only_running:
                sql += " AND status = 'running'"
            updated = tx.execute(sql, {"s": status.value, "e": ended, "err": error, "id": run_id})
            if updated.rowcount == 0:
                now = tx.scalar("SELECT status FROM runs WHERE id = :id", {"id": run_id})
                if now is None:
                    raise NotFound(f"run {run_id} does not exist", "see `mloop runs list`")
                raise Conflict(f"run {run_id[:12]} has ended already ({now})")
            tx.execute(rows.INSERT_EVENT, rows.event_to_row(event))
            self._write_data(tx, run_id, params, tags, metrics, inputs, outputs, latest)

        self.db.write(work)

    def record_heartbeat(self, run_ids: Sequence[str], at: float) -> None:
        """One write for all of a process's open runs; ended runs are left alone."""

        def work(tx: Tx) -> None:
            for chunk in chunks(list(run_ids)):
                clause, args = in_clause(chunk)
                tx.execute(
                    f"UPDATE runs SET heartbeat = :at WHERE id IN {clause} AND status = 'running'",
                    {"at": at, **args},
                )

        if run_ids:
            self.db.write(work)

    def running_on(self, host: str) -> list[tuple[str, int | None]]:
        """(id, pid) of the runs stored as running by processes on `host`."""
        found = self.db.read(
            lambda tx: tx.all(
                "SELECT id, pid FROM runs WHERE status = 'running' AND host = :h", {"h": host}
            )
        )
        return [(str(run_id), pid) for run_id, pid in found]

    def _resolve_run_id(self, tx: Tx, ref: str) -> str:
        ref = check_run_ref(ref)
        if len(ref) == 32:
            if tx.scalar("SELECT 1 FROM runs WHERE id = :id", {"id": ref}):
                return ref
        else:
            found = tx.all(
                "SELECT id FROM runs WHERE id LIKE :p ESCAPE '\\' ORDER BY id LIMIT 5",
                {"p": escape_like(ref) + "%"},
            )
            if len(found) == 1:
                return str(found[0][0])
            if len(found) > 1:
                shown = ", ".join(str(r[0])[:12] for r in found)
                raise InvalidInput(
                    f"run id {ref!r} is ambiguous: it starts {shown}", "give more digits"
                )
        raise NotFound(f"no run {ref!r}", "list runs with `mloop runs list`")

    def _hydrate(self, tx: Tx, found: list[Run]) -> list[Run]:
        """Params, tags, latest metrics, inputs and outputs of many runs: five queries per 500
        runs, not five per run."""
        if not found:
            return []
        params: dict[str, dict[str, str]] = {r.id: {} for r in found}
        tags: dict[str, dict[str, str]] = {r.id: {} for r in found}
        metrics: dict[str, dict[str, Metric]] = {r.id: {} for r in found}
        inputs: dict[str, list[RunInput]] = {r.id: [] for r in found}
        outputs: dict[str, list[RunOutput]] = {r.id: [] for r in found}
        for chunk in chunks([r.id for r in found]):
            clause, args = in_clause(chunk)
            for run_id, key, value in tx.all(
                f"SELECT run_id, key, value FROM run_params WHERE run_id IN {clause}", args
            ):
                params[run_id][key] = value
            for run_id, key, value in tx.all(
                f"SELECT run_id, key, value FROM run_tags WHERE run_id IN {clause}", args
            ):
                tags[run_id][key] = value
            for run_id, key, value, step, ts in tx.all(
                "SELECT run_id, key, value, step, ts FROM run_latest_metrics "
                f"WHERE run_id IN {clause}",
                args,
            ):
                metrics[run_id][key] = Metric(key, value, step, ts)
            for run_id, kind, ref, name in tx.all(
                "SELECT run_id, kind, ref, name FROM run_inputs "
                f"WHERE run_id IN {clause} ORDER BY kind, ref",
                args,
            ):
                inputs[run_id].append(RunInput(kind, ref, name))
            for run_id, name, digest, size in tx.all(
                f"SELECT run_id, name, digest, size FROM run_outputs WHERE run_id IN {clause} "
                "ORDER BY name",
                args,
            ):
                outputs[run_id].append(RunOutput(name, digest, size))
        return [
            dataclasses.replace(
                r,
                params=params[r.id],
                tags=tags[r.id],
                metrics=metrics[r.id],
                inputs=tuple(inputs[r.id]),
                outputs=tuple(outputs[r.id]),
            )
            for r in found
        ]

    def get(self, ref: str, liveness: Liveness | None = None) -> Run:
        from mloop.store.metadata.sql.filters import status_sql

        def work(tx: Tx) -> Run:
            run_id = self._resolve_run_id(tx, ref)
            params: dict[str, Any] = {"id": run_id}
            columns = rows.run_columns(status_sql(liveness, params))
            row = tx.named_one(f"SELECT {columns} FROM runs r WHERE r.id = :id", params)
            assert row is not None  # _resolve_run_id found it in this transaction
            return self._hydrate(tx, [rows.RUN.read(row)])[0]

        return self.db.read(work)

    @staticmethod
    def _where(where: Expr | None, params: dict[str, Any], status: str, deleted: bool) -> str:
        from mloop.store.metadata.sql.filters import compile_where

        sql = f" WHERE r.deleted IS {'NOT ' if deleted else ''}NULL"
        if where is not None:
            sql += " AND " + compile_where(where, params, status)
        return sql

    def find(
        self,
        where: Expr | None = None,
        order: Sequence[SortKey] = (),
        limit: int | None = None,
        *,
        liveness: Liveness | None = None,
        deleted: bool = False,
    ) -> list[Run]:
        """Runs matching `where`; deleted runs only with `deleted` (and then only those)."""
        from mloop.store.metadata.sql.filters import compile_order, status_sql

        params: dict[str, Any] = {}
        status = status_sql(liveness, params)
        sql = f"SELECT {rows.run_columns(status)} FROM runs r"
        sql += self._where(where, params, status, deleted)
        sql += " " + compile_order(order, params, status)
        if limit is not None:
            sql += f" LIMIT {check_limit(limit)}"

        def work(tx: Tx) -> list[Run]:
            return self._hydrate(tx, [rows.RUN.read(r) for r in tx.named(sql, params)])

        return self.db.read(work)

    def count(
        self,
        where: Expr | None = None,
        *,
        liveness: Liveness | None = None,
        deleted: bool = False,
    ) -> int:
        from mloop.store.metadata.sql.filters import status_sql

        params: dict[str, Any] = {}
        status = status_sql(liveness, params)
        sql = "SELECT COUNT(*) FROM runs r" + self._where(where, params, status, deleted)
        return int(self.db.read(lambda tx: tx.scalar(sql, params)))

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        found = self.db.read(
            lambda tx: tx.all(
                "SELECT key, value, step, ts FROM run_metrics WHERE run_id = :r AND key = :k "
                "ORDER BY step, ts",
                {"r": run_id, "k": key},
            )
        )
        return [Metric(k, v, s, t) for k, v, s, t in found]

    def children(self, run_id: str) -> list[Run]:
        def work(tx: Tx) -> list[Run]:
            found = tx.named(
                f"SELECT {rows.run_columns()} FROM runs r WHERE r.parent_id = :p "
                "ORDER BY r.started",
                {"p": run_id},
            )
            return self._hydrate(tx, [rows.RUN.read(r) for r in found])

        return self.db.read(work)

    def _runs_by_ids(self, tx: Tx, sql: str, params: dict[str, Any]) -> list[Run]:
        ids = [r[0] for r in tx.all(sql, params)]
        found: list[Run] = []
        for chunk in chunks(ids):
            clause, args = in_clause(chunk)
            found.extend(
                rows.RUN.read(r)
                for r in tx.named(
                    f"SELECT {rows.run_columns()} FROM runs r WHERE r.id IN {clause}", args
                )
            )
        found.sort(key=lambda r: r.started)
        return self._hydrate(tx, found)

    # lineage ------------------------------------------------------------------------------
    def with_input(self, kind: str, ref: str) -> list[Run]:
        return self.db.read(
            lambda tx: self._runs_by_ids(
                tx,
                "SELECT DISTINCT run_id FROM run_inputs WHERE kind = :k AND ref = :r",
                {"k": kind, "r": ref},
            )
        )

    def with_output(self, digest: str) -> list[Run]:
        return self.db.read(
            lambda tx: self._runs_by_ids(
                tx, "SELECT DISTINCT run_id FROM run_outputs WHERE digest = :d", {"d": digest}
            )
        )
