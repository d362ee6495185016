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

WINDOW_HELP = "an ISO 8601 time (UTC unless it names a zone) or an age such as 2h or 7d"


def register(commands: Any) -> None:
    p = commands.add_parser(
        "monitor", help="what model servers saw: export the prediction log of an endpoint"
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
    export.add_argument("endpoint", metavar="ENDPOINT")
    export.add_argument("--since", metavar="TIME", help=f"from this time: {WINDOW_HELP}")
    export.add_argument("--until", metavar="TIME", help=f"up to this time: {WINDOW_HELP}")
    export.add_argument(
        "--last", metavar="N", type=integer(1), help="only the N requests answered last"
    )
    export.add_argument("--model", metavar="NAME:V", help="only the requests this version answered")
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


def export_log(ctx: Context) -> None:
    args = ctx.args
    window = Window.parse(time.time(), args.since, args.until, args.last, args.model)
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
