"""Rows to records and back: the one mapping between the SQL tables and the domain records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mloop.domain.dataset import ColumnProfile, DatasetVersion, Histogram, TableProfile
from mloop.domain.event import Event
from mloop.domain.lineage import CodeVersion
from mloop.domain.records import to_plain
from mloop.domain.run import Run, RunStatus

RUN_COLUMNS = (
    "r.id, r.name, r.status, r.started, r.ended, r.parent_id, r.user_name, "
    "r.code_commit, r.code_diff, r.code_repo, r.environment, r.error, "
    "r.pid, r.host, r.heartbeat, r.deleted"
)


def run_columns(status: str) -> str:
    """RUN_COLUMNS with the status read through `status`, an SQL expression (see filters.py)."""
    return RUN_COLUMNS.replace("r.status", status, 1)


VERSION_COLUMNS = (
    "v.id, v.dataset, v.version, v.created, v.user_name, v.message, v.file_count, "
    "v.total_size, v.sources, v.tables, v.run_id"
)


def run_from_row(row: Sequence[Any]) -> Run:
    code = CodeVersion(row[7], row[8], row[9])
    return Run(
        id=row[0],
        name=row[1],
        status=RunStatus(row[2]),
        started=row[3],
        ended=row[4],
        parent_id=row[5],
        user=row[6],
        code=code,
        environment=row[10],
        error=row[11],
        pid=row[12],
        host=row[13],
        heartbeat=row[14],
        deleted=row[15],
    )


def run_to_row(run: Run) -> dict[str, Any]:
    code = run.code or CodeVersion(None)
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status.value,
        "started": run.started,
        "ended": run.ended,
        "parent_id": run.parent_id,
        "user_name": run.user,
        "code_commit": code.commit,
        "code_diff": code.diff_digest,
        "code_repo": code.repo,
        "environment": run.environment,
        "error": run.error,
        "pid": run.pid,
        "host": run.host,
        "heartbeat": run.heartbeat,
    }


def tables_to_json(tables: Sequence[TableProfile]) -> str:
    return json.dumps(to_plain(list(tables)), separators=(",", ":"), allow_nan=True)


def _column(data: dict[str, Any]) -> ColumnProfile:
    hist = data.get("histogram")
    return ColumnProfile(
        name=data["name"],
        dtype=data["dtype"],
        kind=data["kind"],
        count=data["count"],
        nulls=data["nulls"],
        min=data.get("min"),
        max=data.get("max"),
        mean=data.get("mean"),
        std=data.get("std"),
        quantiles=tuple((float(q), float(v)) for q, v in data.get("quantiles", ())),
        histogram=Histogram(tuple(hist["edges"]), tuple(hist["counts"])) if hist else None,
        top=tuple((str(v), int(c)) for v, c in data.get("top", ())),
        distinct=data.get("distinct"),
    )


def tables_from_json(text: str) -> tuple[TableProfile, ...]:
    return tuple(
        TableProfile(t["path"], t["rows"], tuple(_column(c) for c in t["columns"]))
        for t in json.loads(text)
    )


def version_from_row(row: Sequence[Any]) -> DatasetVersion:
    return DatasetVersion(
        name=row[1],
        version=row[2],
        created=row[3],
        user=row[4],
        message=row[5],
        file_count=row[6],
        total_size=row[7],
        sources=tuple(json.loads(row[8])),
        tables=tables_from_json(row[9]),
        run_id=row[10],
    )


def event_from_row(row: Sequence[Any]) -> Event:
    return Event(
        id=row[0],
        at=row[1],
        actor=row[2],
        action=row[3],
        ref=row[4],
        reason=row[5],
        details=json.loads(row[6]),
    )


def event_to_row(event: Event) -> dict[str, Any]:
    return {
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "ref": event.ref,
        "reason": event.reason,
        "details": json.dumps(to_plain(event.details), separators=(",", ":")),
    }


INSERT_EVENT = (
    "INSERT INTO events (at, actor, action, ref, reason, details) "
    "VALUES (:at, :actor, :action, :ref, :reason, :details)"
)
