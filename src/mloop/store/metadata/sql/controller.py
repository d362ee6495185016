"""The controller's progress in SQL: iterations changed by compare-and-set on their state, what
it last saw of each trigger, and named leases."""

from __future__ import annotations

from typing import Any

from mloop.domain.controller import Iteration, IterationState, TriggerState
from mloop.domain.event import Event
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.sql.db import Database, Tx, check_limit
from mloop.store.metadata.sql.rows import INSERT_EVENT, RowShape, dumps, event_to_row

ITERATION = RowShape(Iteration)
TRIGGER_STATE = RowShape(TriggerState)
_COLUMNS = (
    "id, pipeline, trigger, kind, reason, numbers, state, created, updated, dataset, run_id, "
    "model, endpoint, deployment, outcome, error, open_pipeline"
)
_UPSERT_STATE = (
    "INSERT INTO trigger_states (trigger, checked, value, fired, mark, failures, error) "
    "VALUES (:trigger, :checked, :value, :fired, :mark, :failures, :error) "
    "ON CONFLICT (trigger) DO UPDATE SET checked = excluded.checked, value = excluded.value, "
    "fired = excluded.fired, mark = excluded.mark, failures = excluded.failures, "
    "error = excluded.error"
)


def _row(it: Iteration) -> dict[str, Any]:
    return {
        "id": it.id,
        "pipeline": it.pipeline,
        "trigger": it.trigger,
        "kind": it.kind,
        "reason": it.reason,
        "numbers": dumps(it.numbers),
        "state": it.state.value,
        "created": it.created,
        "updated": it.updated,
        "dataset": it.dataset,
        "run_id": it.run_id,
        "model": it.model,
        "endpoint": it.endpoint,
        "deployment": it.deployment,
        "outcome": None if it.outcome is None else it.outcome.value,
        "error": it.error,
        "open_pipeline": it.pipeline if it.state.open else None,
    }


def _state_row(state: TriggerState) -> dict[str, Any]:
    return {
        "trigger": state.trigger,
        "checked": state.checked,
        "value": dumps(state.value),
        "fired": state.fired,
        "mark": state.mark,
        "failures": state.failures,
        "error": state.error,
    }


def _read(row: dict[str, Any]) -> Iteration:
    row.pop("open_pipeline", None)
    return ITERATION.read(row)


class SqlControllerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # iterations ----------------------------------------------------------------------------
    def begin(self, iteration: Iteration, event: Event, trigger: TriggerState) -> None:
        """Start `iteration` with its Event and the trigger's state (its fire, a schedule's
        mark) in one transaction; `Conflict` if its pipeline has one open already."""

        def work(tx: Tx) -> None:
            open_id = tx.scalar(
                "SELECT id FROM controller_iterations WHERE open_pipeline = :p",
                {"p": iteration.pipeline},
            )
            if open_id is not None:
                raise Conflict(
                    f"pipeline {iteration.pipeline!r} has iteration {open_id} in progress",
                    "one iteration at a time per pipeline: let it finish",
                )
            tx.execute(
                f"INSERT INTO controller_iterations ({_COLUMNS}) VALUES "
                f"({', '.join(':' + c.strip() for c in _COLUMNS.split(','))})",
                _row(iteration),
            )
            tx.execute(_UPSERT_STATE, _state_row(trigger))
            tx.execute(INSERT_EVENT, event_to_row(event))

        self.db.write(work)

    def advance(
        self, iteration: Iteration, expected: IterationState, event: Event | None = None
    ) -> None:
        """Write `iteration` (with `event`) if it is still in state `expected` as stored;
        `Conflict` if another controller moved it meanwhile."""
        row = _row(iteration)
        sets = ", ".join(f"{c} = :{c}" for c in row if c not in ("id", "created"))

        def work(tx: Tx) -> None:
            cursor = tx.execute(
                f"UPDATE controller_iterations SET {sets} WHERE id = :id AND state = :expected",
                {**row, "expected": expected.value},
            )
            if cursor.rowcount != 1:
                raise Conflict(
                    f"iteration {iteration.id} is no longer {expected}",
                    "another controller moved it on; see `mloop controller status`",
                )
            if event is not None:
                tx.execute(INSERT_EVENT, event_to_row(event))

        self.db.write(work)

    def get(self, iteration_id: str) -> Iteration:
        row = self.db.read(
            lambda tx: tx.named_one(
                "SELECT * FROM controller_iterations WHERE id = :id", {"id": iteration_id}
            )
        )
        if row is None:
            raise NotFound(f"no iteration {iteration_id!r}", "see `mloop controller status`")
        return _read(row)

    def current(self, pipeline: str) -> Iteration | None:
        """The pipeline's open iteration, if any."""
        row = self.db.read(
            lambda tx: tx.named_one(
                "SELECT * FROM controller_iterations WHERE open_pipeline = :p", {"p": pipeline}
            )
        )
        return None if row is None else _read(row)

    def recent(self, limit: int = 20) -> list[Iteration]:
        """The latest iterations, newest first."""
        sql = (
            "SELECT * FROM controller_iterations ORDER BY created DESC, id DESC "
            f"LIMIT {check_limit(limit)}"
        )
        return [_read(r) for r in self.db.read(lambda tx: tx.named(sql))]

    def fires(self, trigger: str, since: float) -> list[float]:
        """When `trigger` started iterations from `since` on (for cool-down and max_per_day)."""
        rows = self.db.read(
            lambda tx: tx.all(
                "SELECT created FROM controller_iterations WHERE trigger = :t AND created >= :s "
                "ORDER BY created",
                {"t": trigger, "s": since},
            )
        )
        return [float(r[0]) for r in rows]

    def outcomes(self) -> dict[str, int]:
        """How many iterations ended each way, ever (what an alert counts)."""
        rows = self.db.read(
            lambda tx: tx.all(
                "SELECT outcome, COUNT(*) FROM controller_iterations WHERE outcome IS NOT NULL "
                "GROUP BY outcome"
            )
        )
        return {str(r[0]): int(r[1]) for r in rows}

    # triggers ------------------------------------------------------------------------------
    def trigger_states(self) -> dict[str, TriggerState]:
        rows = self.db.read(lambda tx: tx.named("SELECT * FROM trigger_states"))
        found = [TRIGGER_STATE.read(r) for r in rows]
        return {s.trigger: s for s in found}

    def save_trigger(self, state: TriggerState, event: Event | None = None) -> None:
        def work(tx: Tx) -> None:
            tx.execute(_UPSERT_STATE, _state_row(state))
            if event is not None:
                tx.execute(INSERT_EVENT, event_to_row(event))

        self.db.write(work)

    # leases --------------------------------------------------------------------------------
    def lease(
        self, name: str, holder: str, now: float, ttl: float, *, replacing: str | None = None
    ) -> bool:
        """Take or renew lease `name` for `ttl` seconds: True if `holder` has it now (it was
        free, expired, already `holder`'s, or `replacing`'s: a holder known to be dead)."""

        def work(tx: Tx) -> bool:
            got = tx.scalar(
                "INSERT INTO leases (name, holder, expires) VALUES (:n, :h, :x) "
                "ON CONFLICT (name) DO UPDATE SET holder = :h, expires = :x "
                "WHERE leases.holder = :h OR leases.expires < :now OR leases.holder = :dead "
                "RETURNING holder",
                {"n": name, "h": holder, "x": now + ttl, "now": now, "dead": replacing or ""},
            )
            return bool(got == holder)

        return self.db.write(work)

    def release(self, name: str, holder: str) -> None:
        """Give lease `name` up if `holder` has it, so another may take it at once."""
        self.db.write(
            lambda tx: tx.execute(
                "DELETE FROM leases WHERE name = :n AND holder = :h", {"n": name, "h": holder}
            )
        )

    def holder(self, name: str, now: float) -> str | None:
        """Who holds lease `name` now (None: nobody, or it expired)."""
        found = self.db.read(
            lambda tx: tx.scalar(
                "SELECT holder FROM leases WHERE name = :n AND expires >= :now",
                {"n": name, "now": now},
            )
        )
        return None if found is None else str(found)
