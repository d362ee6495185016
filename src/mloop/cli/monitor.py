"""`mloop monitor`: what the model servers saw. `export` writes a window of an endpoint's
prediction log to a Parquet or CSV file (for a notebook, a labelling job or retraining);
`status` prints a window's numbers, `report` draws them on one HTML page a person reads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.args import integer
from mloop.cli.main import Context
from mloop.domain.prediction import Window
from mloop.domain.records import human_size, to_plain
from mloop.errors import InvalidInput

WINDOW_HELP = "an ISO 8601 time (UTC unless it names a zone) or an age such as 2h or 7d"


def register(commands: Any) -> None:
    p = commands.add_parser(
        "monitor", help="what model servers saw: an endpoint's live numbers, its prediction log"
    )
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)
    export = sub.add_parser(
        "export",
        help="an endpoint's prediction log to a file; or Prometheus alert rules, a Grafana "
        "dashboard",
        description="`export ENDPOINT -o FILE`: the requests an endpoint answered in a window "
        "(--since/--until, --last N, or all that the retention kept), one row per predicted "
        "row: request_id, row, at, endpoint, model, role, feature.NAME for each input, "
        "prediction. `export prometheus DIR`: alert rules (latency, error rate, drift, "
        "accuracy, bias, server down, log drops) with a `promtool test rules` case for each, "
        "and an example scrape config. `export grafana DIR`: a dashboard of these series.",
    )
    _window_arguments(export)
    export.add_argument("dest", nargs="?", type=Path, metavar="DIR", help="for prometheus, grafana")
    export.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="the file to write: .parquet or .csv"
    )
    export.add_argument("--json", action="store_true", help="print a JSON summary")
    rules = export.add_argument_group("with prometheus")
    rules.add_argument("--job", default="mloop", help="the servers' scrape job (mloop)")
    rules.add_argument(
        "--max-error-rate", type=float, default=1.0, metavar="PERCENT", help="of 5xx answers (1)"
    )
    rules.add_argument("--max-p99", default="500ms", metavar="TIME", help="p99 latency (500ms)")
    rules.add_argument(
        "--accuracy-margin",
        type=float,
        default=0.05,
        help="below the version's registered accuracy (0.05)",
    )
    rules.add_argument("--for", dest="hold", default="5m", help="how long before firing (5m)")
    rules.add_argument(
        "--monitor-silence",
        default="15m",
        metavar="TIME",
        help="no monitor pass in this long: its gauges are stale (15m; over 3x the interval)",
    )
    export.add_argument("--force", action="store_true", help="replace files written before")
    export.set_defaults(handler=export_any)
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
    report = sub.add_parser(
        "report",
        help="an endpoint's window as an HTML page: drift, accuracy, bias, latency, as plots",
        description="One standalone HTML page (it opens without internet) of what `status` "
        "shows for a window (--since/--until, --last N, --model): per-feature histograms of "
        "the reference and the window, drift scores, accuracy from feedback, latency and "
        "errors over time, the bias table.",
    )
    _window_arguments(report)
    report.add_argument(
        "--html", metavar="FILE", type=Path, required=True, help="the page to write"
    )
    report.add_argument("--force", action="store_true", help="replace FILE if it exists")
    report.add_argument("--json", action="store_true", help="print a JSON summary")
    report.set_defaults(handler=write_report)


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
            ("error rate", output.percent(status.error_rate)),
            (
                "latency",
                f"p50 {output.milliseconds(status.latency['p50'])}, "
                f"p99 {output.milliseconds(status.latency['p99'])}",
            ),
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
                output.percent(v.error_rate),
                output.milliseconds(v.p50),
                output.milliseconds(v.p99),
            ]
            for v in status.versions
        ],
        title="per version (requests: logged; errors and latency: the servers' reports)",
    )
    if status.features is not None:
        rows = [(name, found) for name, found in status.features.items()]
        if status.prediction is not None:
            rows.append(("(prediction)", status.prediction))
        output.table(
            ["FEATURE", "METHOD", "SCORE", "THRESHOLD", "DRIFTED"],
            [
                [
                    name,
                    found.get("method") or "-",
                    output.number(found.get("score"), 4),
                    output.number(found.get("threshold"), 4),
                    {True: "DRIFTED", False: "no"}.get(
                        found.get("drifted"), found.get("note") or "-"
                    ),
                ]
                for name, found in rows
            ],
            title=f"drift against {status.reference}",
        )
    accuracy = status.accuracy
    if accuracy is not None:
        names = list(accuracy["metrics"])
        output.table(
            ["MODEL", "ROLE", "LABELLED", *(n.upper() for n in names)],
            [
                [
                    v["model"],
                    v["role"],
                    v["labelled"],
                    *(output.number(v["metrics"].get(n), 4) for n in names),
                ]
                for v in accuracy["versions"]
            ],
            title=f"{accuracy['task']} from feedback: {accuracy['labelled']} labelled of "
            f"{accuracy['requests']} requests ({accuracy['unknown']} labels for unknown ids)",
        )
    bias = status.bias
    if bias is not None:
        output.table(
            ["COLUMN", "MODEL", "ROLE", "DEMOGRAPHIC PARITY", "EQUAL OPPORTUNITY"],
            [
                [
                    c["column"],
                    c["model"],
                    c["role"],
                    _bounded(c["demographic_parity"]),
                    _bounded(c["equal_opportunity"]),
                ]
                for c in bias["columns"]
            ],
            title="bias: difference between groups (bound from the model's gates)",
        )
    for note in status.notes:
        output.line(f"note: {note}")


def write_report(ctx: Context) -> None:
    from mloop.services.monitoring.report import build, to_html

    args = ctx.args
    dest: Path = args.html
    if dest.exists() and not args.force:
        raise InvalidInput(
            f"{dest} already exists",
            f"pass --force to replace it, or give another file: "
            f"mloop monitor report {args.endpoint} --html OTHER.html",
        )
    if not dest.parent.is_dir():
        raise InvalidInput(
            f"no folder {str(dest.parent)!r} to write {dest.name} into", "make it first"
        )
    made = build(ctx.project.monitoring, args.endpoint, _window(args), time.time())
    page = to_html(made).encode("utf-8")
    partial = dest.with_name(f".{dest.name}.partial")
    partial.write_bytes(page)
    partial.replace(dest)
    status = made.status
    drifted = [name for name, found in (status.features or {}).items() if found.get("drifted")]
    if ctx.json:
        output.emit_json(
            {
                "endpoint": status.endpoint,
                "file": str(dest),
                "bytes": len(page),
                "requests": status.requests,
                "drifted": drifted,
                "labelled": None if status.accuracy is None else status.accuracy["labelled"],
            }
        )
        return
    moved = (
        f"{len(drifted)} of {len(status.features)} features drifted"
        if status.features
        else "no drift measured"
    )
    output.line(
        f"wrote the report of {status.requests} requests to {status.endpoint!r} ({moved}) "
        f"to {dest} ({human_size(len(page))}; it opens without internet)"
    )


def _bounded(measure: dict[str, Any]) -> str:
    shown = output.number(measure.get("difference"), 4)
    if measure.get("bound"):
        shown += f" ({measure['bound']}: {'ok' if measure.get('within') else 'OUT'})"
    return shown


EXPORTERS = ("prometheus", "grafana")


def export_any(ctx: Context) -> None:
    """`export ENDPOINT -o FILE` (the log), or `export prometheus|grafana DIR`."""
    args = ctx.args
    if args.endpoint in EXPORTERS and args.output is None:
        export_monitoring(ctx)
        return
    if args.output is None or args.dest is not None:
        raise InvalidInput(
            f"export {args.endpoint} takes -o FILE (the endpoint's log)"
            + (f", not a folder {args.dest}" if args.dest is not None else ""),
            "mloop monitor export ENDPOINT -o FILE, or mloop monitor export prometheus|grafana DIR",
        )
    export_log(ctx)


def export_monitoring(ctx: Context) -> None:
    from mloop.deploy.monitoring import Thresholds, export_grafana, export_prometheus
    from mloop.domain.durations import parse_duration

    args = ctx.args
    if args.dest is None:
        raise InvalidInput(
            f"export {args.endpoint} needs the folder to write",
            f"mloop monitor export {args.endpoint} DIR",
        )
    if args.endpoint == "prometheus":
        limits = Thresholds(
            job=args.job,
            max_error_rate=args.max_error_rate / 100,
            max_p99=parse_duration(args.max_p99, "--max-p99"),
            accuracy_margin=args.accuracy_margin,
            hold=args.hold,
            monitor_silence=args.monitor_silence,
        )
        files = export_prometheus(args.dest, limits, force=args.force)
        check = f"promtool check rules {files[0]} && (cd {args.dest} && promtool test rules "
        check += f"{files[1].name})"
    else:
        files = export_grafana(args.dest, force=args.force)
        check = "import it in Grafana (Dashboards > New > Import), with a Prometheus source"
    if ctx.json:
        output.emit_json({"folder": str(args.dest), "files": [str(f) for f in files]})
        return
    output.line(f"wrote {', '.join(f.name for f in files)} to {args.dest}")
    output.line(f"  next: {check}")


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
