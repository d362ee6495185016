"""`mloop feedback ENDPOINT FILE`: labels that arrived later (a labelling job's output, a CRM
export), stored for the requests they name so monitoring can measure accuracy and bias."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.main import Context


def register(commands: Any) -> None:
    p = commands.add_parser(
        "feedback",
        help="store labels for answered requests, from a CSV or Parquet file",
        description="Store the true answers for requests an endpoint answered, by the request "
        "id each answer carried in its mloop-request-id header. A second label for a request "
        "replaces the first; labels for requests the prediction log does not hold are kept "
        "and counted as unknown.",
    )
    p.add_argument("endpoint", metavar="ENDPOINT", help="the endpoint (or served model) name")
    p.add_argument("file", metavar="FILE", type=Path, help="a .csv, .parquet or .pq file")
    p.add_argument("--id-column", metavar="C", required=True, help="the request ids' column")
    p.add_argument("--label-column", metavar="C", required=True, help="the labels' column")
    p.add_argument(
        "--row-column",
        metavar="C",
        help="the row of the request each label is for (default: 0, the first)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=store_labels)


def store_labels(ctx: Context) -> None:
    from mloop.services.monitoring.labels import store_file

    args = ctx.args
    project = ctx.project
    done = store_file(
        project.metadata,
        project.artifacts,
        args.endpoint,
        args.file,
        args.id_column,
        args.label_column,
        args.row_column,
    )
    if ctx.json:
        output.emit_json(
            {
                "endpoint": done.endpoint,
                "file": done.file,
                "stored": done.stored,
                "replaced": done.replaced,
                "unknown": done.unknown,
            }
        )
        return
    line = f"stored {done.stored} labels for endpoint {done.endpoint!r} from {done.file}"
    if done.replaced:
        line += f" ({done.replaced} replaced an earlier label)"
    output.line(line)
    if done.unknown:
        output.warn(
            f"{done.unknown} of them name a request the prediction log does not hold (not "
            "logged yet, sampled out, expired, or a wrong id); kept, and counted as unknown "
            f"until it does. `mloop monitor export {done.endpoint} -o log.csv` lists the ids"
        )
