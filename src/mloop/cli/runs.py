"""`mloop runs list|show|compare`: find runs, look at one, put several side by side."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mloop.cli import output
from mloop.cli.main import Context

DEFAULT_LIMIT = 100
MAX_METRIC_COLUMNS = 4
MAX_PARAM_COLUMNS = 3


def register(commands: Any) -> None:
    p = commands.add_parser("runs", help="list, show and compare runs")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)

    ls = sub.add_parser("list", help="list runs, newest first")
    ls.add_argument(
        "--filter",
        metavar="EXPR",
        help="e.g. \"metrics.acc > 0.9 and (params.model = 'rf' or not status = failed)\"",
    )
    ls.add_argument(
        "--sort",
        metavar="KEY",
        help="e.g. --sort=-metrics.acc or --sort 'metrics.acc desc' (descending), name",
    )
    ls.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N runs (default {DEFAULT_LIMIT})",
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


def _common_keys(runs: list[Any], attr: str, limit: int) -> list[str]:
    counts: Counter[str] = Counter(k for r in runs for k in getattr(r, attr))
    return [k for k, _ in counts.most_common(limit)]


def list_runs(ctx: Context) -> None:
    args = ctx.args
    if args.limit < 1:
        from mloop.errors import InvalidInput

        raise InvalidInput(f"--limit must be at least 1, not {args.limit}")
    tracking = ctx.project.tracking
    found = tracking.find_runs(args.filter, args.sort, args.limit + 1)
    more = len(found) > args.limit
    found = found[: args.limit]
    if ctx.json:
        output.emit_json(found)
        return
    if not found:
        output.line("no runs" + (" match the filter" if args.filter else " yet"))
        return
    metric_keys = _common_keys(found, "metrics", MAX_METRIC_COLUMNS)
    param_keys = _common_keys(found, "params", MAX_PARAM_COLUMNS)
    columns = ["ID", "NAME", "STATUS", "STARTED", "DURATION"]
    columns += [f"metrics.{k}" for k in metric_keys] + [f"params.{k}" for k in param_keys]
    rows = []
    for r in found:
        row = [
            r.id[:12],
            r.name,
            r.status.value,
            output.when(r.started),
            output.duration(r.duration),
        ]
        row += [output.number(r.metrics[k].value) if k in r.metrics else "-" for k in metric_keys]
        row += [r.params.get(k, "-") for k in param_keys]
        rows.append(row)
    output.table(columns, rows)
    if more:
        output.line(f"(more runs match; raise --limit above {args.limit} to see them)")


def show_run(ctx: Context) -> None:
    run = ctx.project.tracking.get_run(ctx.args.run)
    if ctx.json:
        output.emit_json(run)
        return
    output.fields(
        [
            ("run", run.id),
            ("name", run.name),
            ("status", run.status.value),
            ("user", run.user),
            ("started", output.when(run.started)),
            ("ended", output.when(run.ended)),
            ("duration", output.duration(run.duration)),
            ("parent", run.parent_id or "-"),
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


def compare(ctx: Context) -> None:
    from mloop.services.tracking.compare import compare_runs

    tracking = ctx.project.tracking
    runs = [tracking.get_run(ref) for ref in ctx.args.runs]
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
