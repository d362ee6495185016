"""`mloop models …`: register, list, show, alias, promote and archive model versions; write a
version's model card; score a file with a version; import MLflow models.

Every command names a version by one address, `NAME:V` (or `NAME@ALIAS` where an alias can
stand for the version), and every command that loads a model takes the same `--trust`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.main import Context
from mloop.domain.records import to_plain
from mloop.errors import InvalidAddress

if TYPE_CHECKING:
    from mloop.domain.model import ModelVersion

TRUST_HELP = (
    "load the model even if loading can run code or build types mloop does not load by "
    "default: pickle and Python models, skops types off mloop's audited list; only for "
    "models whose source you trust (recorded as an event)"
)
VERSION_REF = "NAME:V|NAME@ALIAS"


def add_trust(p: Any) -> None:
    """The one `--trust` flag, with the one help text, of every command that loads a model."""
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)


def _register_flags(p: Any) -> None:
    add_trust(p)
    p.add_argument("-m", "--description", default="")
    p.add_argument("--json", action="store_true", help="print JSON")


def _address(p: Any, metavar: str = VERSION_REF) -> None:
    """One address argument, plus a hidden slot that catches the old `NAME V` form."""
    p.add_argument("ref", metavar=metavar)
    p.add_argument("extra", nargs="?", help=argparse.SUPPRESS)


def register(commands: Any) -> None:
    p = commands.add_parser("models", help="the model registry: versions, aliases, promotion")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)

    reg = sub.add_parser("register", help="register a saved model file as the next version")
    reg.add_argument("name", metavar="NAME")
    reg.add_argument("--path", required=True, type=Path, help=".skops, .onnx (.pkl needs --trust)")
    reg.add_argument("--run", metavar="RUN", help="the run that made it (lineage)")
    _register_flags(reg)
    reg.set_defaults(handler=register_version)

    ls = sub.add_parser("list", help="models, their latest versions and aliases")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_models)

    show = sub.add_parser("show", help="a version: lineage, signature, metrics, gates")
    show.add_argument("ref", metavar="NAME[:V|@ALIAS]")
    show.add_argument("--versions", action="store_true", help="every version, key metrics")
    show.add_argument(
        "--sort",
        metavar="KEY",
        help="with --versions: e.g. --sort=-metrics.accuracy (best first), params.C",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_model)

    alias = sub.add_parser("alias", help="point an alias at a version (no gates)")
    alias.add_argument("ref", metavar=VERSION_REF)
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("extra", nargs="?", help=argparse.SUPPRESS)
    alias.add_argument("--json", action="store_true", help="print JSON")
    alias.set_defaults(handler=set_alias)

    unalias = sub.add_parser("unalias", help="remove an alias")
    _address(unalias, "NAME@ALIAS")
    unalias.add_argument("--json", action="store_true", help="print JSON")
    unalias.set_defaults(handler=remove_alias)

    promote = sub.add_parser("promote", help="move an alias to a version if its gates pass")
    _address(promote)
    promote.add_argument("--to", default="champion", metavar="ALIAS", help="default: champion")
    promote.add_argument("--force", action="store_true", help="promote despite failed gates")
    promote.add_argument("--reason", help="why (required with --force; recorded)")
    add_trust(promote)
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
    out_help = ".csv or .parquet: the rows with a prediction column; .json: MLflow's answer"
    pred.add_argument("-o", "--output", type=Path, metavar="FILE", help=out_help)
    add_trust(pred)
    pred.set_defaults(handler=predict_file)

    imp = sub.add_parser("import-mlflow", help="register the model of an MLflow model directory")
    imp.add_argument("path", type=Path, metavar="PATH", help="the folder holding MLmodel")
    imp.add_argument("--name", help="model name (default: from the folder's name)")
    _register_flags(imp)
    imp.set_defaults(handler=import_mlflow)

    archive = sub.add_parser("archive", help="retire a version (its aliases are removed)")
    _address(archive, "NAME:V")
    archive.add_argument("--undo", action="store_true", help="bring it back")
    archive.set_defaults(handler=archive_version)


def _legacy(ctx: Context, command: str, fixed: str) -> None:
    """Refuse the old `NAME V` form with the one-address command to type instead."""
    if getattr(ctx.args, "extra", None) is not None:
        raise InvalidAddress(
            f"`mloop models {command}` takes one address (NAME:V or NAME@ALIAS), not NAME V",
            f"mloop models {command} {fixed}",
        )


def _version(ctx: Context, command: str) -> ModelVersion:
    """The version `ref` names by number or alias; a bare NAME is refused, since these commands
    change what a version is, and "the latest" is rarely the one meant."""
    from mloop.services.registry.models import parse_model_ref

    name, number, alias = parse_model_ref(ctx.args.ref)
    if number is None and alias is None:
        from mloop.services.registry.ranking import key_metrics

        metrics = key_metrics(ctx.project.models.versions(name))
        sort = f" --sort=-metrics.{metrics[0]}" if metrics else ""
        raise InvalidAddress(
            f"which version of {name}? `mloop models {command}` needs NAME:V or NAME@ALIAS",
            f"list them{', best first' if sort else ''}: mloop models show {name} --versions{sort}",
        )
    return ctx.project.models.get(ctx.args.ref)


def _warn_trust(ctx: Context, version: ModelVersion) -> None:
    reason = ctx.project.models.trust_reason(version)
    if reason is not None:
        output.warn(
            f"{version.ref} needs trust to load: {reason}; serving, scoring and promoting it "
            "will need --trust (trust=True in Python), given by whoever loads it"
        )


def register_version(ctx: Context) -> None:
    args = ctx.args
    version = ctx.project.models.register_path(
        args.path, args.name, run=args.run, trust=args.trust, description=args.description
    )
    _warn_trust(ctx, version)
    if ctx.json:
        output.emit_json(version_json(version))
        return
    output.line(f"registered {version.ref} ({version.flavor}, {output.size(version.size)})")


def list_models(ctx: Context) -> None:
    found = ctx.project.models.find()
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


def version_json(version: ModelVersion) -> dict[str, Any]:
    """A version as `--json` shows it: its fields, plus the `code_commit` and `code_diff` keys
    scripts read before the code became one `code` record."""
    plain: dict[str, Any] = to_plain(version)
    plain["code_commit"], plain["code_diff"] = version.code.commit, version.code.diff_digest
    return plain


SHOWN_METRICS = 4  # metric columns in `show --versions`; --json has them all


def show_versions(ctx: Context) -> None:
    from mloop.services.registry.models import parse_model_ref
    from mloop.services.registry.ranking import key_metrics

    args = ctx.args
    registry = ctx.project.models
    versions = registry.versions(parse_model_ref(args.ref)[0], sort=args.sort)
    if ctx.json:
        output.emit_json([version_json(v) for v in versions])
        return
    metrics = key_metrics(versions, args.sort)[:SHOWN_METRICS]
    output.table(
        ["VERSION", *(m.upper() for m in metrics), "STATUS", "ALIASES", "CREATED", "RUN"],
        [
            [
                v.version,
                *(output.number(v.metrics.get(m)) for m in metrics),
                v.status,
                ", ".join(v.aliases) or "-",
                output.when(v.created),
                (v.run_id or "-")[:12],
            ]
            for v in versions
        ],
    )


def show_model(ctx: Context) -> None:
    args = ctx.args
    if args.versions:
        show_versions(ctx)
        return
    if args.sort:
        raise InvalidAddress("--sort orders the list of versions", "add --versions")
    registry = ctx.project.models
    v = registry.get(args.ref)
    if ctx.json:
        output.emit_json(version_json(v))
        return
    reason = registry.trust_reason(v)
    output.fields(
        [
            ("model", v.ref),
            ("aliases", ", ".join(v.aliases) or "-"),
            ("status", v.status),
            ("flavor", v.flavor),
            ("size", output.size(v.size)),
            ("created", f"{output.when(v.created)} by {v.user}"),
            ("run", v.run_id or "-"),
            ("datasets", ", ".join(map(str, v.datasets)) or "-"),
            ("code", v.code.describe()),
            ("environment", (v.environment or "-")[:12]),
            ("digest", v.digest[:12]),
            ("loading", f"needs --trust: {reason}" if reason else "safe (no trust needed)"),
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
    _legacy(ctx, "alias", f"{args.ref}:{args.alias} {args.extra}")
    version = _version(ctx, "alias")
    ctx.project.models.set_alias(version.name, version.version, args.alias)
    if ctx.json:
        output.emit_json({"model": version.name, "alias": args.alias, "version": version.version})
        return
    output.line(f"{version.name}@{args.alias} -> {version.ref}")


def remove_alias(ctx: Context) -> None:
    from mloop.services.registry.models import parse_model_ref

    args = ctx.args
    _legacy(ctx, "unalias", f"{args.ref}@{args.extra}")
    name, _, alias = parse_model_ref(args.ref)
    if alias is None:
        raise InvalidAddress(
            f"which alias of {name}? `mloop models unalias` takes NAME@ALIAS",
            f"mloop models unalias {name}@champion",
        )
    version = ctx.project.models.get(args.ref).version
    ctx.project.models.remove_alias(name, alias)
    if ctx.json:
        output.emit_json({"model": name, "alias": alias, "version": version, "removed": True})
        return
    output.line(f"removed {name}@{alias} (was {name}:{version})")


def promote_version(ctx: Context) -> None:
    args = ctx.args
    to = "" if args.to == "champion" else f" --to {args.to}"
    _legacy(ctx, "promote", f"{args.ref}:{args.extra}{to}")
    version = _version(ctx, "promote")
    result = ctx.project.promoter.promote(
        version.name,
        version.version,
        args.to,
        force=args.force,
        reason=args.reason,
        trust=args.trust,
    )
    if ctx.json:
        output.emit_json({**to_plain(result), "version": version_json(result.version)})
        return
    for gate in result.gates:
        mark = "passed" if gate.passed else "FAILED"
        output.line(f"  {mark:<7} {gate.gate}: {gate.reason}")
    forced = " (forced: failed gates recorded with the reason)" if result.forced else ""
    output.line(f"{version.name}@{args.to} -> {result.version.ref}{forced}")


def archive_version(ctx: Context) -> None:
    args = ctx.args
    _legacy(ctx, "archive", f"{args.ref}:{args.extra}")
    version = _version(ctx, "archive")
    ctx.project.models.archive(version.name, version.version, undo=args.undo)
    output.line(f"{version.ref} {'restored' if args.undo else 'archived'}")


def show_card(ctx: Context) -> None:
    from mloop.services.registry.card import to_html, to_markdown

    args = ctx.args
    card = ctx.project.card_builder.build(args.ref)
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
    from mloop.services.serving.requests import describe_unknown, mlflow_response

    args = ctx.args
    result = ctx.project.scorer.score(
        args.ref,
        args.input,
        args.output,
        trust=args.trust,
        progress=lambda label, rows: output.progress(f"predicting with {label}", rows, ctx.quiet),
    )
    if result.unknown:  # a warning, even with --quiet: the predictions may be worth less
        output.warn(f"{args.input.name}: {describe_unknown(result.unknown)}")
    if result.written is None:
        output.line(mlflow_response(result.predictions).decode())
    elif not ctx.quiet:
        output.line(f"predicted {result.rows} rows with {result.ref}; wrote {result.written}")


def import_mlflow(ctx: Context) -> None:
    from mloop.services.registry.mlflow_import import import_mlflow_model

    args = ctx.args
    version = import_mlflow_model(
        ctx.project.models,
        args.path,
        name=args.name,
        trust=args.trust,
        description=args.description,
    )
    _warn_trust(ctx, version)
    if ctx.json:
        output.emit_json(version_json(version))
        return
    output.line(f"registered {version.ref} ({version.flavor}, {output.size(version.size)})")
