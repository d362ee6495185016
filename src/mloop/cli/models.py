"""`mloop models …`: register, list, show, alias, promote and archive model versions; write a
version's model card; score a file with a version; import MLflow models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.args import version
from mloop.cli.main import Context


def _trust_flags(p: Any, trust_help: str) -> None:
    """What a registration may load: extra skops types, or (with --trust) code-running pickles."""
    p.add_argument(
        "--trusted-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="a type skops may load beyond its defaults (repeatable)",
    )
    p.add_argument("--trust", action="store_true", help=trust_help)
    p.add_argument("-m", "--description", default="")
    p.add_argument("--json", action="store_true", help="print JSON")


def register(commands: Any) -> None:
    p = commands.add_parser("models", help="the model registry: versions, aliases, promotion")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)

    reg = sub.add_parser("register", help="register a saved model file as the next version")
    reg.add_argument("name", metavar="NAME")
    reg.add_argument("--path", required=True, type=Path, help=".skops, .onnx (.pkl needs --trust)")
    reg.add_argument("--run", metavar="RUN", help="the run that made it (lineage)")
    _trust_flags(reg, "allow pickle/joblib (runs code)")
    reg.set_defaults(handler=register_version)

    ls = sub.add_parser("list", help="models, their latest versions and aliases")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_models)

    show = sub.add_parser("show", help="a version: lineage, signature, metrics, gates")
    show.add_argument("ref", metavar="NAME[:V|@ALIAS]")
    show.add_argument("--versions", action="store_true", help="list every version")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_model)

    alias = sub.add_parser("alias", help="point an alias at a version (no gates)")
    alias.add_argument("name", metavar="NAME")
    alias.add_argument("version", type=version, metavar="V")
    alias.add_argument("alias", metavar="ALIAS")
    alias.set_defaults(handler=set_alias)

    unalias = sub.add_parser("unalias", help="remove an alias")
    unalias.add_argument("name", metavar="NAME")
    unalias.add_argument("alias", metavar="ALIAS")
    unalias.set_defaults(handler=remove_alias)

    promote = sub.add_parser("promote", help="move an alias to a version if its gates pass")
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("version", type=version, metavar="V")
    promote.add_argument("--to", default="champion", metavar="ALIAS", help="default: champion")
    promote.add_argument("--force", action="store_true", help="promote despite failed gates")
    promote.add_argument("--reason", help="why (required with --force; recorded)")
    promote.add_argument("--json", action="store_true", help="print JSON")
    promote.set_defaults(handler=promote_version)

    card = sub.add_parser("card", help="a version's model card for review (Markdown or HTML)")
    card.add_argument("ref", metavar="NAME:V")
    card.add_argument("--html", action="store_true", help="a standalone HTML page")
    card.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE")
    card.add_argument("--json", action="store_true", help="print the card's content as JSON")
    card.set_defaults(handler=show_card)

    pred = sub.add_parser(
        "predict",
        help="score a file of rows with a version (the server's checks, in batch)",
        description="Predict every row of a .csv, .parquet or .json file (a list of records or "
        "an MLflow request body) with one model version. Rows are checked against the version's "
        "signature as the server checks them. Without -o, prints MLflow's JSON answer.",
    )
    pred.add_argument("ref", metavar="NAME[:V|@ALIAS]")
    pred.add_argument("-i", "--input", required=True, type=Path, metavar="FILE")
    pred.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help=".csv or .parquet: the rows with a prediction column; .json: MLflow's answer",
    )
    pred.add_argument("--trust", action="store_true", help="allow pickle models (runs code)")
    pred.set_defaults(handler=predict_file)

    imp = sub.add_parser("import-mlflow", help="register the model of an MLflow model directory")
    imp.add_argument("path", type=Path, metavar="PATH", help="the folder holding MLmodel")
    imp.add_argument("--name", help="model name (default: from the folder's name)")
    _trust_flags(imp, "allow pickle/cloudpickle (runs code)")
    imp.set_defaults(handler=import_mlflow)

    archive = sub.add_parser("archive", help="retire a version (its aliases are removed)")
    archive.add_argument("name", metavar="NAME")
    archive.add_argument("version", type=version, metavar="V")
    archive.add_argument("--undo", action="store_true", help="bring it back")
    archive.set_defaults(handler=archive_version)


def register_version(ctx: Context) -> None:
    args = ctx.args
    version = ctx.project.registry.register_path(
        args.path,
        args.name,
        run=args.run,
        trusted_types=args.trusted_type,
        trust=args.trust,
        description=args.description,
    )
    if ctx.json:
        output.emit_json(version)
        return
    output.line(f"registered {version.ref} ({version.flavor}, {output.size(version.size)})")


def list_models(ctx: Context) -> None:
    found = ctx.project.registry.models()
    if ctx.json:
        output.emit_json(found)
        return
    if not found:
        output.line("no models yet; register one with mloop.register_model(...)")
        return
    output.table(
        ["MODEL", "LATEST", "ALIASES", "CREATED"],
        [
            [
                m.name,
                m.latest,
                ", ".join(f"{a}={v}" for a, v in sorted(m.aliases.items())) or "-",
                output.when(m.created),
            ]
            for m in found
        ],
    )


def show_model(ctx: Context) -> None:
    from mloop.services.registry.models import parse_model_ref

    args = ctx.args
    registry = ctx.project.registry
    if args.versions:
        versions = registry.versions(parse_model_ref(args.ref)[0])
        if ctx.json:
            output.emit_json(versions)
            return
        output.table(
            ["VERSION", "CREATED", "FLAVOR", "STATUS", "ALIASES", "RUN"],
            [
                [
                    v.version,
                    output.when(v.created),
                    v.flavor,
                    v.status,
                    ", ".join(v.aliases) or "-",
                    (v.run_id or "-")[:12],
                ]
                for v in versions
            ],
        )
        return
    v = registry.get(args.ref)
    if ctx.json:
        output.emit_json(v)
        return
    output.fields(
        [
            ("model", v.ref),
            ("aliases", ", ".join(v.aliases) or "-"),
            ("status", v.status),
            ("flavor", v.flavor),
            ("size", output.size(v.size)),
            ("created", f"{output.when(v.created)} by {v.user}"),
            ("run", v.run_id or "-"),
            ("datasets", ", ".join(v.datasets) or "-"),
            (
                "code",
                (v.code_commit or "not in git")[:12]
                + (f" +uncommitted {v.code_diff[:12]}" if v.code_diff else ""),
            ),
            ("environment", (v.environment or "-")[:12]),
            ("digest", v.digest[:12]),
        ]
    )
    if v.signature:
        output.table(
            ["INPUT", "TYPE", "NULLABLE"],
            [[c.name, c.dtype, "yes" if c.nullable else "no"] for c in v.signature.inputs],
            title="signature",
        )
    if v.metrics:
        output.table(
            ["METRIC", "VALUE"],
            [[k, output.number(x)] for k, x in sorted(v.metrics.items())],
            title="metrics",
        )
    if v.gates:
        output.table(
            ["GATE", "RESULT", "DETAIL"],
            [[g.gate, "passed" if g.passed else "FAILED", g.reason] for g in v.gates],
            title="gates (last promotion)",
        )


def set_alias(ctx: Context) -> None:
    args = ctx.args
    ctx.project.registry.set_alias(args.name, args.version, args.alias)
    output.line(f"{args.name}@{args.alias} -> {args.name}:{args.version}")


def remove_alias(ctx: Context) -> None:
    ctx.project.registry.remove_alias(ctx.args.name, ctx.args.alias)
    output.line(f"removed {ctx.args.name}@{ctx.args.alias}")


def promote_version(ctx: Context) -> None:
    args = ctx.args
    result = ctx.project.promotion.promote(
        args.name, args.version, args.to, force=args.force, reason=args.reason
    )
    if ctx.json:
        output.emit_json(result)
        return
    for gate in result.gates:
        mark = "passed" if gate.passed else "FAILED"
        output.line(f"  {mark:<7} {gate.gate}: {gate.reason}")
    forced = " (forced: failed gates recorded with the reason)" if result.forced else ""
    output.line(f"{args.name}@{args.to} -> {result.version.ref}{forced}")


def archive_version(ctx: Context) -> None:
    args = ctx.args
    ctx.project.registry.archive(args.name, args.version, undo=args.undo)
    output.line(f"{args.name}:{args.version} {'restored' if args.undo else 'archived'}")


def show_card(ctx: Context) -> None:
    from mloop.services.registry.card import to_html, to_markdown

    args = ctx.args
    card = ctx.project.cards.card(args.ref)
    if ctx.json:
        output.emit_json(card)
        return
    text = to_html(card) if args.html else to_markdown(card)
    if args.output is None:
        output.line(text.rstrip("\n"))
        return
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    output.line(f"wrote the model card of {card.ref} to {args.output}")


def predict_file(ctx: Context) -> None:
    from mloop.services.serving.batch import (
        output_format,
        predict_frame,
        read_rows,
        write_predictions,
    )
    from mloop.services.serving.requests import describe_unknown, mlflow_response

    args = ctx.args
    if args.output is not None:
        output_format(args.output)  # a wrong name fails before any work
    version = ctx.project.registry.get(args.ref)
    frame = read_rows(args.input, version.signature)  # and so does a wrong input, before loading
    predictor = ctx.project.registry.load_predictor(version.ref, trust=args.trust)
    scored = predict_frame(predictor, frame, args.input.name)
    if scored.unknown:  # a warning, even with --quiet: the predictions may be worth less
        output.warn(f"{args.input.name}: {describe_unknown(scored.unknown)}")
    if args.output is None:
        output.line(mlflow_response(scored.predictions).decode())
        return
    write_predictions(scored.predictions, frame, args.output)
    if not ctx.quiet:
        label = f"{predictor.name}:{predictor.version}"
        output.line(f"predicted {len(frame)} rows with {label}; wrote {args.output}")


def import_mlflow(ctx: Context) -> None:
    from mloop.services.registry.mlflow_import import import_mlflow_model

    args = ctx.args
    version = import_mlflow_model(
        ctx.project.registry,
        args.path,
        name=args.name,
        trusted_types=args.trusted_type,
        trust=args.trust,
        description=args.description,
    )
    if ctx.json:
        output.emit_json(version)
        return
    output.line(f"registered {version.ref} ({version.flavor}, {output.size(version.size)})")
