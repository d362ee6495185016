"""`mloop runs list|show|compare|fail|delete|restore`: find runs, look at them, tidy them up.

The names follow MLflow's (`mlflow runs delete|restore`, `mlflow gc`), where most users of run
trackers come from: `delete` hides a run until `mloop gc` purges it, `restore` undoes that;
`fail` is MLflow's `set_terminated(status="FAILED")` for a run whose process was killed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from mloop.cli import output
from mloop.cli.args import MAX_LIMIT, integer
from mloop.cli.main import Context, Parser
from mloop.domain.run import RunStatus

DEFAULT_LIMIT = 100
MAX_METRIC_COLUMNS = 4
MAX_PARAM_COLUMNS = 3
ATTRIBUTE_COLUMNS = (
    "id",
    "name",
    "status",
    "user",
    "started",
    "ended",
    "duration",
    "parent",
    "kind",
    "pipeline",
)
# A value such as `-metrics.f1` after --sort: argparse would take it for an option.
_SORT_VALUE = re.compile(
    r"-(?:(?:params|metrics|tags)\.|(?:status|name|user|started|ended|id|parent|kind|pipeline)\b)"
)


class _Parser(Parser):
    """Reads `--sort -metrics.f1` (a space, then a descending key) as users type it."""

    def _parse_optional(self, arg_string: str) -> Any:
        if _SORT_VALUE.match(arg_string) and arg_string not in self._option_string_actions:
            return None  # a value, not an option
        return super()._parse_optional(arg_string)


FILTER_HELP = (
    "e.g. \"metrics.acc > 0.9 and (params.model = 'rf' or not status = failed)\"; "
    "fields: params.KEY, metrics.KEY, tags.KEY, status (running, finished, failed, lost), "
    "name, user, started, ended, id, parent (`parent = null`: top-level runs only), "
    "kind (run, pipeline, step, sweep), pipeline"
)


def register(commands: Any) -> None:
    p = commands.add_parser("runs", help="list, show and compare runs; fail, delete, restore")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog, parser_class=_Parser)

    ls = sub.add_parser("list", help="list runs, newest first")
    ls.add_argument("--filter", metavar="EXPR", help=FILTER_HELP)
    ls.add_argument(
        "--sort",
        metavar="KEY",
        help="e.g. --sort -metrics.acc or --sort 'metrics.acc desc' (descending), name",
    )
    ls.add_argument(
        "--limit",
        type=integer(1, MAX_LIMIT),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N runs (default {DEFAULT_LIMIT})",
    )
    ls.add_argument(
        "--top", action="store_true", help="top-level runs only, not pipeline steps (parent = null)"
    )
    ls.add_argument(
        "--columns",
        metavar="COLS",
        help="the table's columns, e.g. name,status,params.alpha,metrics.rmse "
        f"(attributes: {', '.join(ATTRIBUTE_COLUMNS)})",
    )
    ls.add_argument(
        "--deleted", action="store_true", help="list deleted runs (not yet purged by gc) instead"
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_runs)

    show = sub.add_parser("show", help="params, metrics, tags, inputs, outputs, code, environment")
    show.add_argument("run", metavar="RUN", help="run id or unique prefix (run/ID also works)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_run)

    cmp = sub.add_parser("compare", help="params and latest metrics side by side")
    cmp.add_argument("runs", nargs="+", metavar="RUN")
    cmp.add_argument("--json", action="store_true", help="print JSON")
    cmp.set_defaults(handler=compare)

    fail = sub.add_parser(
        "fail",
        help="mark lost runs (their process was killed) failed",
        description="A run whose process was killed stays `running` in the store; readers "
        "show it as `lost` once its heartbeat stops (or at once when its process is gone "
        "from this host). `fail` ends it as failed and records who did it and why.",
    )
    fail.add_argument("runs", nargs="*", metavar="RUN", help="run ids or unique prefixes")
    fail.add_argument("--lost", action="store_true", help="every lost run")
    fail.add_argument("--reason", metavar="TEXT", help="why, for the run's error and the event")
    fail.add_argument(
        "--force", action="store_true", help="also a run whose process still sends heartbeats"
    )
    fail.add_argument("--json", action="store_true", help="print JSON")
    fail.set_defaults(handler=fail_runs)

    for verb, helptext in (
        ("delete", "delete runs and the runs below them (undo with restore until gc purges them)"),
        ("restore", "bring back deleted runs (before gc purges them)"),
    ):
        cmd = sub.add_parser(verb, help=helptext)
        cmd.add_argument("runs", nargs="+", metavar="RUN")
        cmd.add_argument("--reason", metavar="TEXT", help="recorded in the event")
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(handler=delete_or_restore, verb=verb)


def _common_keys(runs: list[Any], attr: str, limit: int) -> list[str]:
    counts: Counter[str] = Counter(k for r in runs for k in getattr(r, attr))
    return [k for k, _ in counts.most_common(limit)]


Column = tuple[str, Callable[[Any], str]]


def _attribute(name: str) -> Column:
    get: dict[str, Callable[[Any], str]] = {
        "id": lambda r: r.id[:12],
        "name": lambda r: r.name,
        "status": lambda r: r.status.value,
        "user": lambda r: r.user,
        "started": lambda r: output.when(r.started),
        "ended": lambda r: output.when(r.ended),
        "duration": lambda r: output.duration(r.duration),
        "parent": lambda r: r.parent_id[:12] if r.parent_id else "-",
        "kind": lambda r: r.kind.value,
        "pipeline": lambda r: r.pipeline or "-",
    }
    return name.upper(), get[name]


def _keyed(group: str, key: str) -> Column:
    if group == "metrics":
        return (
            f"metrics.{key}",
            lambda r: output.number(r.metrics[key].value) if key in r.metrics else "-",
        )
    return f"{group}.{key}", lambda r: getattr(r, group).get(key, "-")


def _columns(text: str) -> list[Column]:
    from mloop.errors import InvalidInput

    columns: list[Column] = []
    for item in (part.strip() for part in text.split(",")):
        group, dot, key = item.partition(".")
        if dot and group in ("params", "metrics", "tags") and key:
            columns.append(_keyed(group, key.strip("`")))
        elif not dot and item.lower() in ATTRIBUTE_COLUMNS:
            columns.append(_attribute(item.lower()))
        else:
            raise InvalidInput(
                f"--columns: unknown column {item!r}",
                f"use params.KEY, metrics.KEY, tags.KEY or one of {', '.join(ATTRIBUTE_COLUMNS)}",
            )
    return columns


def _default_columns(found: list[Any], deleted: bool) -> list[Column]:
    columns = [_attribute(a) for a in ("id", "name", "status", "started", "duration")]
    if deleted:
        columns.append(("DELETED", lambda r: output.when(r.deleted)))
    columns += [_keyed("metrics", k) for k in _common_keys(found, "metrics", MAX_METRIC_COLUMNS)]
    columns += [_keyed("params", k) for k in _common_keys(found, "params", MAX_PARAM_COLUMNS)]
    return columns


def list_runs(ctx: Context) -> None:
    args = ctx.args
    columns = _columns(args.columns) if args.columns else None
    where = args.filter
    if args.top:
        where = f"({where}) and parent = null" if where else "parent = null"
    tracking = ctx.project.runs
    found = tracking.find(where, args.sort, args.limit + 1, deleted=args.deleted)
    more = len(found) > args.limit
    found = found[: args.limit]
    if ctx.json:
        output.emit_json(found)
        return
    if not found:
        kind = "deleted runs" if args.deleted else "runs"
        output.line(f"no {kind}" + (" match the filter" if where else " yet"))
        return
    columns = columns or _default_columns(found, args.deleted)
    output.table([name for name, _ in columns], [[get(r) for _, get in columns] for r in found])
    if more:
        output.line(f"(more runs match; raise --limit above {args.limit} to see them)")


def show_run(ctx: Context) -> None:
    run = ctx.project.runs.get(ctx.args.run)
    if ctx.json:
        output.emit_json(run)
        return
    output.fields(
        [
            ("run", run.id),
            ("name", run.name),
            ("status", _status_text(run)),
            *([("deleted", output.when(run.deleted))] if run.deleted is not None else []),
            ("user", run.user),
            ("process", f"{run.pid} on {run.host}" if run.pid is not None else "-"),
            ("started", output.when(run.started)),
            ("ended", output.when(run.ended)),
            ("duration", output.duration(run.duration)),
            ("parent", run.parent_id or "-"),
            ("kind", f"{run.kind} of {run.pipeline}" if run.pipeline else run.kind),
            ("code", run.code.describe() if run.code else "not recorded"),
            ("environment", run.environment[:12] if run.environment else "not recorded"),
        ]
    )
    if run.params:
        output.table(["PARAM", "VALUE"], sorted(run.params.items()), title="params")
    if run.metrics:
        output.table(
            ["METRIC", "VALUE", "STEP"],
            [[k, output.number(m.value), m.step] for k, m in sorted(run.metrics.items())],
            title="metrics (latest)",
        )
    if run.tags:
        output.table(["TAG", "VALUE"], sorted(run.tags.items()), title="tags")
    if run.inputs:
        output.table(["KIND", "INPUT"], [[i.kind, i.ref] for i in run.inputs], title="inputs")
    if run.outputs:
        output.table(
            ["OUTPUT", "DIGEST", "SIZE"],
            [[o.name, o.digest[:12], output.size(o.size)] for o in run.outputs],
            title="outputs",
        )
    if run.error:
        output.line("error:")
        output.line(run.error.rstrip())
    if run.status is RunStatus.LOST:
        output.line(
            f"hint: if its process was killed, mark it failed: mloop runs fail {run.id[:12]}"
        )
    if run.deleted is not None:
        output.line(
            f"hint: `mloop gc` purges deleted runs; keep it: mloop runs restore {run.id[:12]}"
        )


def _status_text(run: Any) -> str:
    if run.status is RunStatus.LOST:
        return f"lost (no sign of life since {output.when(run.last_seen)})"
    return str(run.status.value)


def compare(ctx: Context) -> None:
    from mloop.services.tracking.compare import compare_runs

    tracking = ctx.project.runs
    runs = [tracking.get(ref) for ref in ctx.args.runs]
    result = compare_runs(runs)
    if ctx.json:
        output.emit_json(
            {
                "runs": [{"id": r.id, "name": r.name} for r in result.runs],
                "rows": result.rows,
            }
        )
        return
    columns = ["", "KEY", *(f"{r.name} ({r.id[:8]})" for r in result.runs)]
    rows = []
    for row in result.rows:
        cells = [
            "-" if v is None else (output.number(v) if isinstance(v, float) else v)
            for v in row.values
        ]
        rows.append(["*" if row.differs else "", f"{row.group}.{row.key}", *cells])
    output.table(columns, rows)
    differing = sum(r.differs for r in result.rows)
    output.line(f"{differing} of {len(result.rows)} values differ (marked *)")


def fail_runs(ctx: Context) -> None:
    from mloop.errors import InvalidInput

    args = ctx.args
    tracking = ctx.project.runs
    if args.lost == bool(args.runs):
        raise InvalidInput(
            "name the runs to mark failed, or give --lost for every lost run (not both)",
            "mloop runs fail RUN [--reason TEXT], or: mloop runs fail --lost",
        )
    failed = tracking.fail_lost(args.reason) if args.lost else []
    for ref in args.runs:
        failed.extend(tracking.fail(ref, args.reason, force=args.force))
    if ctx.json:
        output.emit_json([{"id": r.id, "name": r.name, "was": r.status.value} for r in failed])
        return
    if args.lost and not failed:
        output.line("no lost runs")
    for run in failed:
        output.line(f"marked failed: {run.id[:12]} {run.name} (was {run.status.value})")


def delete_or_restore(ctx: Context) -> None:
    tracking = ctx.project.runs
    deleting = ctx.args.verb == "delete"
    act = tracking.delete if deleting else tracking.restore
    done = [act(ref, ctx.args.reason) for ref in ctx.args.runs]
    if ctx.json:
        output.emit_json([{"id": ids[0], "with": ids[1:]} for ids in done])
        return
    for ids in done:
        below = f" and {len(ids) - 1} runs below it" if len(ids) > 1 else ""
        line = f"{'deleted' if deleting else 'restored'} run {ids[0][:12]}{below}"
        if deleting:
            line += (
                f"; `mloop runs restore {ids[0][:12]}` brings it back until `mloop gc` purges it"
            )
        output.line(line)
