"""Translate the run filter language (domain/query.py) into SQL over the `runs` table `r`.

A condition on a param, metric or tag holds only for runs that have that key (an EXISTS), so
`not metrics.acc > 0.9` also finds runs that never logged `acc`. `status` is read through
`status_sql`, which shows a running run whose process is gone as `lost`; `parent = null`
selects top-level runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mloop.domain.query import And, Compare, Expr, Field, Not, Or, SortKey
from mloop.store.metadata.sql.db import escape_like

if TYPE_CHECKING:
    from mloop.domain.run import Liveness

ATTRIBUTE_COLUMNS = {
    "status": "r.status",
    "name": "r.name",
    "user": "r.user_name",
    "started": "r.started",
    "ended": "r.ended",
    "id": "r.id",
    "parent": "r.parent_id",
    "kind": "r.kind",
    "pipeline": "r.pipeline",
}
SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
NO_PARENT = ("", "null", "none")  # `parent = null`: run ids are hex, so no id is spelt so
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


class _Params:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def add(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"


def status_sql(liveness: Liveness | None, params: dict[str, Any]) -> str:
    """The run's status as readers see it: `lost` for a running run whose process is gone.

    The rule is `Liveness.status_of`'s, in SQL, so filters and sorts on `status` agree with it.
    """
    if liveness is None:
        return "r.status"
    p = _Params(params)
    dead = "".join(f", {p.add(run_id)}" for run_id in sorted(liveness.dead))
    gone = f" OR r.id IN ({dead[2:]})" if dead else ""
    stale = f"COALESCE(r.heartbeat, r.started) < {p.add(liveness.stale_before)}"
    return f"(CASE WHEN r.status = 'running' AND ({stale}{gone}) THEN 'lost' ELSE r.status END)"


def _like_pattern(text: str) -> str:
    escaped = escape_like(text)
    return escaped.replace("*", "%") if "*" in text else f"%{escaped}%"


def _condition(column: str, op: str, value: str | float, p: _Params, numeric: str | None) -> str:
    if op == "~":
        return f"LOWER({column}) LIKE LOWER({p.add(_like_pattern(str(value)))}) ESCAPE '\\'"
    sql_op = SQL_OPS[op]
    if isinstance(value, float) and numeric is not None:
        return f"{numeric} {sql_op} {p.add(value)}"
    if numeric is not None and op in ("=", "!=") and _NUMBER.fullmatch(str(value)):
        joiner = "OR" if op == "=" else "AND"
        text_cond = f"{column} {sql_op} {p.add(str(value))}"
        return f"({text_cond} {joiner} {numeric} {sql_op} {p.add(float(str(value)))})"
    return f"{column} {sql_op} {p.add(value if isinstance(value, float) else str(value))}"


def _compare(node: Compare, p: _Params, status: str) -> str:
    group, key = node.field.group, node.field.key
    if group == "attr":
        column = status if key == "status" else ATTRIBUTE_COLUMNS[key]
        value: str | float = node.value
        if key == "parent" and node.op in ("=", "!=") and str(value).lower() in NO_PARENT:
            return f"r.parent_id IS {'' if node.op == '=' else 'NOT '}NULL"
        if key == "status" and isinstance(value, str):
            value = value.lower()
        return _condition(
            column, node.op, value, p, column if key in ("started", "ended") else None
        )
    if group == "metrics":
        cond = _condition("m.value", node.op, node.value, p, "m.value")
        return (
            "EXISTS (SELECT 1 FROM run_latest_metrics m WHERE m.run_id = r.id "
            f"AND m.key = {p.add(key)} AND {cond})"
        )
    table = "run_params" if group == "params" else "run_tags"
    numeric = "x.value_num" if group == "params" else None
    cond = _condition("x.value", node.op, node.value, p, numeric)
    key_param = p.add(key)
    where = f"x.run_id = r.id AND x.key = {key_param} AND {cond}"
    return f"EXISTS (SELECT 1 FROM {table} x WHERE {where})"


def compile_where(expr: Expr, params: dict[str, Any], status: str = "r.status") -> str:
    """SQL for `expr`, adding its values to `params` (named :p0, :p1, …); `status` is the
    expression `status_sql` made for the run's status."""
    return _compile(expr, _Params(params), status)


def _compile(expr: Expr, p: _Params, status: str) -> str:
    if isinstance(expr, Compare):
        return _compare(expr, p, status)
    if isinstance(expr, And):
        return "(" + " AND ".join(_compile(e, p, status) for e in expr.items) + ")"
    if isinstance(expr, Or):
        return "(" + " OR ".join(_compile(e, p, status) for e in expr.items) + ")"
    if isinstance(expr, Not):
        return f"(NOT {_compile(expr.item, p, status)})"
    raise TypeError(f"not a filter expression: {expr!r}")


def _sort_expr(field: Field, p: _Params, status: str) -> list[str]:
    if field.group == "attr":
        return [status if field.key == "status" else ATTRIBUTE_COLUMNS[field.key]]
    key = p.add(field.key)
    if field.group == "metrics":
        return [
            f"(SELECT m.value FROM run_latest_metrics m WHERE m.run_id = r.id AND m.key = {key})"
        ]
    table = "run_params" if field.group == "params" else "run_tags"
    exprs = [f"(SELECT x.value FROM {table} x WHERE x.run_id = r.id AND x.key = {key})"]
    if field.group == "params":
        numeric = f"(SELECT x.value_num FROM run_params x WHERE x.run_id = r.id AND x.key = {key})"
        exprs.insert(0, numeric)
    return exprs


def compile_order(
    order: Sequence[SortKey], params: dict[str, Any], status: str = "r.status"
) -> str:
    """ORDER BY clause; missing values sort last; newest first breaks ties."""
    p = _Params(params)
    parts: list[str] = []
    for sort in order:
        direction = "DESC" if sort.descending else "ASC"
        parts.extend(f"{e} {direction} NULLS LAST" for e in _sort_expr(sort.field, p, status))
    parts.extend(["r.started DESC", "r.id"])
    return "ORDER BY " + ", ".join(parts)
