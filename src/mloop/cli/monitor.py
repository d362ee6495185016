"""`mloop monitor`: what the model servers saw. `export` writes a window of an endpoint's
prediction log to a Parquet or CSV file (for a notebook, a labelling job or retraining)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.args import integer
from mloop.cli.main import Context
from mloop.domain.prediction import Window
from mloop.domain.records import to_plain

WINDOW_HELP = "an ISO 8601 time (UTC unless it names a zone) or an age such as 2h or 7d"


def register(commands: Any) -> None:
    p = commands.add_parser(
        "monitor", help="what model servers saw: an endpoint's live numbers, its prediction log"
    )
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)
    export = sub.add_parser(
        "export",
        help="write an endpoint's logged requests and predictions to a Parquet or CSV file",
        description="Write the requests an endpoint answered in a window (--since/--until, "
        "--last N, or all that the retention kept), one row per predicted row: request_id, "
        "row, at, endpoint, model, role, feature.NAME for each input, prediction.",
    )
    _window_arguments(export)
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        required=True,
        help="the file to write: .parquet or .csv",
    )
    export.add_argument("--json", action="store_true", help="print a JSON summary")
    export.set_defaults(handler=export_log)
    status = sub.add_parser(
        "status",
        help="an endpoint's live numbers over a window: requests, errors, latency",
        description="What the endpoint's servers answered in a window (--since/--until, "
        "--last N; all that the retention kept by default): requests per version and role "
        "from the prediction log, the error rate and latency from the servers' reports.",
    )
    _window_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=show_status)


def _window_arguments(p: Any) -> None:
    """The window every monitoring read takes, named the same way by every command."""
    p.add_argument("endpoint", metavar="ENDPOINT")
    p.add_argument("--since", metavar="TIME", help=f"from this time: {WINDOW_HELP}")
    p.add_argument("--until", metavar="TIME", help=f"up to this time: {WINDOW_HELP}")
    p.add_argument("--last", metavar="N", type=integer(1), help="only the N requests answered last")
    p.add_argument("--model", metavar="NAME:V", help="only the requests this version answered")


def _window(args: Any) -> Window:
    return Window.parse(time.time(), args.since, args.until, args.last, args.model)


def show_status(ctx: Context) -> None:
    status = ctx.project.monitoring.status(ctx.args.endpoint, _window(ctx.args))
    if ctx.json:
        output.emit_json(to_plain(status))
        return
    output.fields(
        [
            ("endpoint", status.endpoint),
            (
                "window",
                f"{status.window} ({output.when(status.since)} to {output.when(status.until)})",
            ),
            ("requests", status.requests),
            ("error rate", _percent(status.error_rate)),
            ("latency", f"p50 {_ms(status.latency['p50'])}, p99 {_ms(status.latency['p99'])}"),
        ]
    )
    output.table(
        ["MODEL", "ROLE", "REQUESTS", "ERRORS", "ERROR RATE", "P50", "P99"],
        [
            [
                v.model,
                v.role,
                v.requests,
                "-" if v.errors is None else v.errors,
                _percent(v.error_rate),
                _ms(v.p50),
                _ms(v.p99),
            ]
            for v in status.versions
        ],
        title="per version (requests: logged; errors and latency: the servers' reports)",
    )
    for note in status.notes:
        output.line(f"note: {note}")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def export_log(ctx: Context) -> None:
    args = ctx.args
    window = _window(args)
    done = ctx.project.predictions.export(args.endpoint, window, args.output)
    for lost in done.missing:
        batch = lost.batch
        output.warn(
            f"prediction log file {batch.digest[:12]} ({batch.rows} rows of {batch.model}, "
            f"batch {batch.id}) is {lost.reason} in {ctx.project.artifacts.uri}; left out. "
            "`mloop fsck` lists every missing object; restore them from a backup of the store"
        )
    if ctx.json:
        output.emit_json(
            {
                "endpoint": done.endpoint,
                "file": done.file,
                "format": done.format,
                "rows": done.rows,
                "requests": done.requests,
                "files_read": done.batches,
                "missing": [lost.batch.id for lost in done.missing],
            }
        )
        return
    output.line(
        f"wrote {done.rows} rows of {done.requests} requests to {args.endpoint!r} "
        f"({window.describe()}) to {done.file}"
    )
