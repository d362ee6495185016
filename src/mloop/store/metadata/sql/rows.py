"""Rows to records and back: each record's table, read by column name through the converter.

A table's columns are its record's fields by name; a `RowShape` lists only the columns named
otherwise (`user_name` is the field `user`, `code_commit` the field `commit` of the nested `code`).
Columns holding a list or a dict of the record are JSON text. Anything else a row carries (a row
id, a removal time) is not a field and is left alone, so readers select `v.*` rather than keep a
list of columns in step with the table. Writes stay spelled out per statement: the INSERT names
its columns once, beside the values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from mloop.domain.dataset import DatasetSummary, DatasetVersion
from mloop.domain.event import Event
from mloop.domain.lineage import CodeVersion, Environment
from mloop.domain.model import Model, ModelVersion
from mloop.domain.records import from_plain, structured_fields, to_plain
from mloop.domain.run import Run

R = TypeVar("R")


def dumps(value: Any) -> str:
    """A record's list or dict as the JSON text its column holds."""
    return json.dumps(to_plain(value), separators=(",", ":"), sort_keys=True, allow_nan=True)


class RowShape(Generic[R]):
    """How records of `record` lie in their table: `renames` maps a column to its field
    (`a.b` is field `b` of the nested record in field `a`)."""

    def __init__(self, record: type[R], renames: Mapping[str, str] | None = None) -> None:
        self.record = record
        renames = renames or {}
        self._flat = tuple((c, f) for c, f in renames.items() if "." not in f)
        self._nested = tuple((c, *f.split(".", 1)) for c, f in renames.items() if "." in f)

    def read(self, row: Mapping[str, Any], **extra: Any) -> R:
        """The record in `row` (a mapping of column to value); `extra` fields come from other
        tables (a model version's aliases). A renamed column replaces a column of the field's
        own name."""
        data = dict(row)
        for column, name in self._flat:
            if column in data:
                data[name] = data.pop(column)
        for column, outer, inner in self._nested:
            if column in data:
                data.setdefault(outer, {})[inner] = data.pop(column)
        for name in structured_fields(self.record):  # cached; resolved at the first read
            if isinstance(text := data.get(name), str):
                data[name] = json.loads(text)
        data.update(extra)
        return from_plain(self.record, data)


# The run's status is read through an expression that may say `lost` (see filters.py), selected
# beside `r.*` as `seen_status`, which replaces the stored status.
RUN = RowShape(
    Run,
    {
        "user_name": "user",
        "code_commit": "code.commit",
        "code_diff": "code.diff_digest",
        "code_repo": "code.repo",
        "seen_status": "status",
    },
)
DATASET_VERSION = RowShape(DatasetVersion, {"dataset": "name", "user_name": "user"})
DATASET_SUMMARY = RowShape(DatasetSummary)
MODEL_VERSION = RowShape(
    ModelVersion,
    {
        "model": "name",
        "user_name": "user",
        "code_commit": "code.commit",
        "code_diff": "code.diff_digest",
    },
)
MODEL = RowShape(Model)
EVENT = RowShape(Event)
ENVIRONMENT = RowShape(Environment)


def run_columns(status: str = "r.status") -> str:
    """The columns of a run, with its status read through `status`, an SQL expression."""
    return f"r.*, {status} AS seen_status"


def run_to_row(run: Run) -> dict[str, Any]:
    """The runs row of `run`; its params, metrics and the rest live in tables of their own."""
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
        "kind": run.kind.value,
        "pipeline": run.pipeline,
    }


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
