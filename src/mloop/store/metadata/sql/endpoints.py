"""Endpoints in SQL: one row per deployment, changed by compare-and-set; traffic reports; leases."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mloop.domain.analysis import VersionStats
from mloop.domain.endpoint import POLICIES, Deployment, Endpoint, Strategy
from mloop.domain.event import Event
from mloop.domain.records import from_plain
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.sql import rows
from mloop.store.metadata.sql.db import Database, Tx, check_limit

ENDPOINT = rows.RowShape(Endpoint, {"user_name": "user"})
DEPLOYMENT = rows.RowShape(Deployment)

_INSERT = (
    "INSERT INTO deployments (endpoint, sequence, strategy, versions, state, actor, created, "
    "updated, policy, reason, step, failures, started) VALUES (:endpoint, :sequence, :strategy, "
    ":versions, :state, :actor, :created, :updated, :policy, :reason, :step, :failures, :started)"
)
_UPDATE = (
    "UPDATE deployments SET versions = :versions, state = :state, actor = :actor, "
    "updated = :updated, reason = :reason, step = :step, failures = :failures, "
    "started = :started WHERE endpoint = :endpoint AND sequence = :sequence"
)


def _row(deployment: Deployment) -> dict[str, Any]:
    policy = deployment.policy
    return {
        "endpoint": deployment.endpoint,
        "sequence": deployment.sequence,
        "strategy": deployment.strategy.value,
        "versions": rows.dumps(deployment.versions),
        "state": deployment.state.value,
        "actor": deployment.actor,
        "created": deployment.created,
        "updated": deployment.updated,
        "policy": None if policy is None else rows.dumps(policy),
        "reason": deployment.reason,
        "step": deployment.step,
        "failures": deployment.failures,
        "started": deployment.started,
    }


def _deployment(row: Mapping[str, Any]) -> Deployment:
    """A deployment row; its policy is read as its strategy's (see `POLICIES`)."""
    data = dict(row)
    policy = data.pop("policy")
    deployment = DEPLOYMENT.read(data, policy=None)
    kind = POLICIES[Strategy(deployment.strategy)]
    if policy is None or kind is None:
        return deployment
    return dataclasses.replace(deployment, policy=from_plain(kind, json.loads(policy)))


def _missing(name: str) -> NotFound:
    return NotFound(
        f"no endpoint {name!r}",
        f"create it with `mloop deploy {name} MODEL:VERSION`, or see `mloop endpoints list`",
    )


def _latest(tx: Tx, name: str) -> dict[str, Any] | None:
    return tx.named_one(
        "SELECT d.* FROM deployments d JOIN endpoints e ON e.name = d.endpoint "
        "AND e.current = d.sequence WHERE e.name = :n",
        {"n": name},
    )


class SqlEndpointStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(
        self, changes: Sequence[tuple[Deployment, Event]], *, expected: Deployment | None
    ) -> None:
        if not changes:
            return
        name = changes[0][0].endpoint

        def work(tx: Tx) -> None:
            found = _latest(tx, name)
            if (found is None) != (expected is None) or (
                found is not None
                and expected is not None
                and (found["sequence"], found["updated"]) != (expected.sequence, expected.updated)
            ):
                now = "nothing" if found is None else f"deployment {found['sequence']}"
                raise Conflict(
                    f"endpoint {name!r} changed while this was decided (it now holds {now})",
                    f"see `mloop endpoints status {name}` and try again",
                )
            for deployment, event in changes:
                row = _row(deployment)
                if found is None or deployment.sequence > int(found["sequence"]):
                    if found is None:
                        tx.execute(
                            "INSERT INTO endpoints (name, created, user_name, description, "
                            "current) VALUES (:n, :c, :u, '', :s)",
                            {
                                "n": name,
                                "c": deployment.created,
                                "u": deployment.actor,
                                "s": deployment.sequence,
                            },
                        )
                    tx.execute(_INSERT, row)
                    tx.execute(
                        "UPDATE endpoints SET current = :s WHERE name = :n",
                        {"s": deployment.sequence, "n": name},
                    )
                    found = row
                else:
                    tx.execute(_UPDATE, row)
                tx.execute(rows.INSERT_EVENT, rows.event_to_row(event))

        self.db.write(work)

    def get(self, name: str) -> Endpoint:
        found = self.db.read(
            lambda tx: tx.named_one("SELECT * FROM endpoints WHERE name = :n", {"n": name})
        )
        if found is None:
            raise _missing(name)
        return ENDPOINT.read(found)

    def current(self, name: str) -> Deployment:
        found = self.db.read(lambda tx: _latest(tx, name))
        if found is None:
            raise _missing(name)
        return _deployment(found)

    def deployment(self, name: str, sequence: int) -> Deployment:
        found = self.db.read(
            lambda tx: tx.named_one(
                "SELECT * FROM deployments WHERE endpoint = :n AND sequence = :s",
                {"n": name, "s": sequence},
            )
        )
        if found is None:
            self.get(name)  # NotFound for the endpoint first
            raise NotFound(
                f"endpoint {name!r} has no deployment {sequence}",
                f"see `mloop endpoints history {name}`",
            )
        return _deployment(found)

    def history(self, name: str, limit: int = 100) -> list[Deployment]:
        sql = (
            "SELECT * FROM deployments WHERE endpoint = :n ORDER BY sequence DESC "
            f"LIMIT {check_limit(limit)}"
        )
        found = self.db.read(lambda tx: tx.named(sql, {"n": name}))
        if not found:
            self.get(name)
        return [_deployment(r) for r in found]

    def find(self) -> list[Deployment]:
        found = self.db.read(
            lambda tx: tx.named(
                "SELECT d.* FROM deployments d JOIN endpoints e ON e.name = d.endpoint "
                "AND e.current = d.sequence ORDER BY e.name"
            )
        )
        return [_deployment(r) for r in found]

    def report(
        self,
        name: str,
        sequence: int,
        reporter: str,
        at: float,
        stats: Mapping[str, VersionStats],
    ) -> None:
        batch = [
            {
                "e": name,
                "s": sequence,
                "m": model,
                "r": reporter,
                "at": at,
                "req": seen.requests,
                "err": seen.errors,
                "lat": json.dumps(list(seen.latency), separators=(",", ":")),
                "lab": seen.labelled,
                "cor": seen.correct,
                "out": seen.outcomes,
                "osum": seen.outcome_sum,
                "osq": seen.outcome_squares,
                "agr": seen.agreed,
                "drop": seen.dropped,
            }
            for model, seen in stats.items()
            if seen.requests or seen.labelled or seen.outcomes or seen.dropped
        ]
        if batch:
            self.db.write(
                lambda tx: tx.executemany(
                    "INSERT INTO endpoint_stats (endpoint, sequence, model, reporter, at, "
                    "requests, errors, latency, labelled, correct, outcomes, outcome_sum, "
                    "outcome_squares, agreed, dropped) VALUES (:e, :s, :m, :r, :at, :req, "
                    ":err, :lat, :lab, :cor, :out, :osum, :osq, :agr, :drop)",
                    batch,
                )
            )

    def stats(
        self,
        name: str,
        sequence: int | None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, VersionStats]:
        sql = "SELECT * FROM endpoint_stats WHERE endpoint = :e"
        params: dict[str, Any] = {"e": name}
        if sequence is not None:
            sql += " AND sequence = :s"
            params["s"] = sequence
        if since is not None:
            sql += " AND at > :since"
            params["since"] = since
        if until is not None:
            sql += " AND at <= :until"
            params["until"] = until
        totals: dict[str, VersionStats] = {}
        for row in self.db.read(lambda tx: tx.named(sql, params)):
            seen = VersionStats(
                int(row["requests"]),
                int(row["errors"]),
                tuple(json.loads(row["latency"])),
                int(row["labelled"]),
                int(row["correct"]),
                int(row["outcomes"]),
                float(row["outcome_sum"]),
                float(row["outcome_squares"]),
                int(row["agreed"]),
                int(row["dropped"]),
            )
            model = row["model"]
            totals[model] = totals[model] + seen if model in totals else seen
        return totals

    def look(self, name: str, sequence: int) -> tuple[float, dict[str, Any]] | None:
        found = self.db.read(
            lambda tx: tx.named(
                "SELECT at, look FROM endpoint_looks WHERE endpoint = :e AND sequence = :s",
                {"e": name, "s": sequence},
            )
        )
        return (float(found[0]["at"]), json.loads(found[0]["look"])) if found else None

    def save_look(self, name: str, sequence: int, at: float, look: Mapping[str, Any]) -> None:
        text = json.dumps(look, separators=(",", ":"))
        self.db.write(
            lambda tx: tx.execute(
                "INSERT INTO endpoint_looks (endpoint, sequence, at, look) VALUES (:e, :s, :at, "
                ":l) ON CONFLICT (endpoint, sequence) DO UPDATE SET at = :at, look = :l",
                {"e": name, "s": sequence, "at": at, "l": text},
            )
        )

    def lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        def work(tx: Tx) -> bool:
            got = tx.scalar(
                "INSERT INTO endpoint_leases (endpoint, holder, expires) VALUES (:e, :h, :x) "
                "ON CONFLICT (endpoint) DO UPDATE SET holder = :h, expires = :x "
                "WHERE endpoint_leases.holder = :h OR endpoint_leases.expires < :now "
                "RETURNING holder",
                {"e": name, "h": holder, "x": now + ttl, "now": now},
            )
            return bool(got == holder)

        return self.db.write(work)
