"""`mloop data …`: version datasets, see what changed, diff, check out, push and pull."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.args import number
from mloop.cli.main import Context
from mloop.domain.records import to_plain

if TYPE_CHECKING:
    from mloop.services.data.status import StatusReport


def register(commands: Any) -> None:
    p = commands.add_parser("data", help="version datasets and move them around")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)

    add = sub.add_parser("add", help="snapshot files or folders as a new dataset version")
    add.add_argument("name", metavar="NAME")
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("-m", "--message", default="", help="why this version exists")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(handler=add_version)

    ls = sub.add_parser("list", help="datasets and their latest versions")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_datasets)

    show = sub.add_parser("show", help="a version (default: latest): files, schema, profile")
    show.add_argument("ref", metavar="NAME[:V]")
    show.add_argument("--files", action="store_true", help="list every file")
    show.add_argument("--versions", action="store_true", help="list all versions")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_version)

    status = sub.add_parser(
        "status", help="what changed in the working files since the latest version"
    )
    status.add_argument("name", nargs="?", metavar="NAME")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=show_status)

    diff = sub.add_parser("diff", help="files, schema and profile changes between versions")
    diff.add_argument("old", metavar="NAME:A")
    diff.add_argument("new", metavar="NAME:B")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.set_defaults(handler=diff_versions)

    val = sub.add_parser("validate", help="check a version's tables against a reference version")
    val.add_argument("ref", metavar="NAME[:V]")
    val.add_argument(
        "--against", metavar="NAME:REF", help="the reference (default: the version before)"
    )
    val.add_argument(
        "--tolerance",
        type=number(),
        metavar="FRACTION",
        help="widen each reference range by this fraction of its span (default 0.1)",
    )
    val.add_argument(
        "--max-psi", type=number(), metavar="PSI", help="largest distribution shift (default 0.2)"
    )
    for flag, what in (
        ("--columns", "check only these columns"),
        ("--exclude", "check all but these"),
    ):
        val.add_argument(
            flag,
            action="append",
            metavar="NAME[,NAME...]",
            help=f"{what} (comma-separated or repeated)",
        )
    val.add_argument("--json", action="store_true", help="print JSON")
    val.set_defaults(handler=validate_version)

    co = sub.add_parser("checkout", help="write a version's files back (or into --to DIR)")
    co.add_argument("ref", metavar="NAME:V")
    co.add_argument("--to", metavar="DIR", type=Path, help="write into DIR instead")
    co.add_argument("--force", action="store_true", help="overwrite work that is in no version")
    co.set_defaults(handler=checkout)

    for verb, helptext in (("push", "copy objects to"), ("pull", "fetch objects from")):
        cmd = sub.add_parser(verb, help=f"{helptext} the remote artifact store")
        cmd.add_argument("refs", nargs="*", metavar="NAME[:V]", help="default: everything")
        cmd.add_argument("--remote", metavar="URI", help="default: remote_uri in mloop.yaml")
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(handler=transfer, verb=verb)

    register_remove(sub)


def add_version(ctx: Context) -> None:
    args = ctx.args
    data = ctx.project.data
    with output.progress(f"adding {args.name}", None, ctx.quiet) as advance:
        result = data.add(
            args.name, args.paths, args.message, progress=advance, on_total=advance.total
        )
    if ctx.json:
        output.emit_json(result)
        return
    v = result.version
    for warning in result.warnings:
        output.line(f"warning: {warning}")
    if not result.created:
        output.line(f"{v.ref} unchanged: the files are the same as version {v.version}")
        return
    output.line(
        f"{v.ref}: {v.file_count} files, {output.size(v.total_size)} "
        f"({result.new_objects} new objects, {output.size(result.new_bytes)} stored)"
    )
    for table in v.tables:
        output.line(f"  {table.path}: {table.rows} rows x {len(table.columns)} columns profiled")


def list_datasets(ctx: Context) -> None:
    found = ctx.project.data.find()
    if ctx.json:
        output.emit_json(found)
        return
    if not found:
        output.line("no datasets yet; add one with `mloop data add NAME PATH`")
        return
    output.table(
        ["NAME", "LATEST", "FILES", "SIZE", "UPDATED"],
        [
            [d.name, d.latest, d.file_count, output.size(d.total_size), output.when(d.updated)]
            for d in found
        ],
    )


def show_version(ctx: Context) -> None:
    args = ctx.args
    data = ctx.project.data
    if args.versions:
        from mloop.services.data.versioning import parse_version_ref

        versions = data.versions(parse_version_ref(args.ref)[0])
        if ctx.json:
            output.emit_json(versions)
            return
        output.table(
            ["VERSION", "CREATED", "USER", "FILES", "SIZE", "MESSAGE"],
            [
                [
                    v.version,
                    output.when(v.created),
                    v.user,
                    v.file_count,
                    output.size(v.total_size),
                    v.message,
                ]
                for v in versions
            ],
        )
        return
    version = data.get(args.ref, files=args.files or ctx.json)
    if ctx.json:
        output.emit_json(version)
        return
    output.fields(
        [
            ("dataset", version.ref),
            ("created", output.when(version.created)),
            ("user", version.user),
            ("message", version.message or "-"),
            ("files", f"{version.file_count} ({output.size(version.total_size)})"),
            ("sources", ", ".join(version.sources)),
            ("run", version.run_id or "-"),
        ]
    )
    for table in version.tables:
        output.table(
            ["COLUMN", "TYPE", "NULLS", "MIN", "MAX", "MEAN", "TOP"],
            [
                [
                    c.name,
                    c.dtype,
                    c.nulls,
                    output.number(c.min),
                    output.number(c.max),
                    output.number(c.mean),
                    ", ".join(f"{v} ({n})" for v, n in c.top[:3]) or "-",
                ]
                for c in table.columns
            ],
            title=f"{table.path}: {table.rows} rows",
        )
    if args.files:
        output.table(
            ["PATH", "DIGEST", "SIZE"],
            [[f.path, f.digest[:12], output.size(f.size)] for f in version.files],
        )


def show_status(ctx: Context) -> int:
    reports = ctx.project.data.status(ctx.args.name)
    if ctx.json:
        output.emit_json([{**to_plain(r), "clean": r.clean} for r in reports])
        return 0
    if not reports:
        output.line("no datasets yet")
    for r in reports:
        if r.clean:
            output.line(f"{r.name}:{r.version}: up to date ({r.unchanged} files)")
            continue
        output.line(f"{r.name}:{r.version}: changed since the latest version")
        for label, paths in (("modified", r.modified), ("added", r.added), ("deleted", r.deleted)):
            for path in paths:
                output.line(f"  {label + ':':<10} {path}")
        output.line(f"  ({_advice(r)})")
    return 0


def _advice(r: StatusReport) -> str:
    """A command that works: the sources still there, or what to do when none are left."""
    remaining = [s for s in r.sources if s not in r.missing_sources]
    if not remaining:
        return (
            f"every source is gone: restore the files with `mloop data checkout {r.name}`, "
            f"or remove the dataset with `mloop data remove {r.name}`"
        )
    save = f"save with `mloop data add {r.name} {' '.join(remaining)}`"
    if r.missing_sources:
        gone = ", ".join(r.missing_sources)
        verb = "exists" if len(r.missing_sources) == 1 else "exist"
        save += f"; the new version leaves out {gone}, which no longer {verb}"
    return save


def diff_versions(ctx: Context) -> None:
    result = ctx.project.data.diff(ctx.args.old, ctx.args.new)
    if ctx.json:
        output.emit_json(result)
        return
    output.line(f"{result.old_ref} -> {result.new_ref}")
    if not result.changed:
        output.line("no differences")
        return
    for entry in result.added:
        output.line(f"  added:     {entry.path} ({output.size(entry.size)})")
    for entry in result.removed:
        output.line(f"  removed:   {entry.path}")
    for old, new in result.modified:
        output.line(f"  modified:  {new.path} ({output.size(old.size)} -> {output.size(new.size)})")
    for table in result.tables:
        output.line(f"table {table.path}: rows {table.old_rows} -> {table.new_rows}")
        for column in table.added_columns:
            output.line(f"  + column {column}")
        for column in table.removed_columns:
            output.line(f"  - column {column}")
        for column, old_type, new_type in table.type_changes:
            output.line(f"  ~ column {column}: {old_type} -> {new_type}")
        for change in table.changes:
            before, after = (
                output.number(v) if isinstance(v, float) else v for v in (change.old, change.new)
            )
            note = f"  ({change.note})" if change.note else ""
            output.line(f"  ~ {change.column}.{change.statistic}: {before} -> {after}{note}")


def validate_version(ctx: Context) -> int:
    """Exit 1 when a check fails: a failed validation is a result, not an error."""
    from mloop.services.data.validation import DataValidator, Thresholds

    args = ctx.args
    given = {"tolerance": args.tolerance, "max_psi": args.max_psi}
    thresholds = Thresholds(**{k: v for k, v in given.items() if v is not None})
    columns, exclude = (
        None if found is None else [n.strip() for p in found for n in p.split(",") if n.strip()]
        for found in (args.columns, args.exclude)
    )
    validator = DataValidator(ctx.project.data, thresholds, columns, exclude or ())
    results = validator.validate(args.ref, args.against)
    ok = all(report.ok for _, report in results)
    if ctx.json:
        tables = [{"path": path, **to_plain(report)} for path, report in results]
        output.emit_json({"ok": ok, "tables": tables})
        return 0 if ok else 1
    first = results[0][1]
    output.line(f"{first.version} against {first.reference}: {'ok' if ok else 'failed'}")
    for path, report in results:
        other = report.reference_path
        label = f"{path} (against {other})" if other and other != path else path
        size = f" ({report.checked_rows} rows, {report.checked_columns} columns)"
        size = size if report.checked_columns else ""
        failed = f"{len(report.failures)} failed check{'s' if len(report.failures) > 1 else ''}"
        output.line(f"{label}: {'ok' if report.ok else failed}{size}")
        for failure in report.failures:
            output.line(f"  {failure.column or '(table)'}: {failure.check}: {failure.message}")
            for row in failure.failing_rows:
                cells = [f"{k}={v!r}" for k, v in row["values"].items()]
                more = ", …" if len(cells) > 4 else ""
                output.line(f"    row {row['row']}: {', '.join(cells[:4])}{more}")
        for note in report.notes:
            output.line(f"  note: {note}")
    return 0 if ok else 1


def checkout(ctx: Context) -> None:
    args = ctx.args
    data = ctx.project.data
    total = data.get(args.ref).total_size
    with output.progress(f"checking out {args.ref}", total, ctx.quiet) as advance:
        result = data.checkout(args.ref, args.to, force=args.force, progress=advance)
    output.line(
        f"{result.version.ref} -> {result.target}: {result.written} written, "
        f"{result.unchanged} already up to date"
        + (f", {result.removed} removed" if result.removed else "")
    )


def transfer(ctx: Context) -> int:
    args = ctx.args
    project = ctx.project
    remote = project.remote(args.remote)
    data = project.data
    verb = args.verb
    move = data.push if verb == "push" else data.pull
    with output.progress(f"{verb}ing", None, ctx.quiet) as advance:
        result = move(args.refs, remote, advance, advance.total)
    if ctx.json:
        output.emit_json(result)
    else:
        where = "to" if verb == "push" else "from"
        output.line(
            f"{verb}: {result.copied} objects ({output.size(result.copied_bytes)}) copied "
            f"{where} {remote.uri}, {result.present} already there"
        )
        for digest in result.missing:
            output.line(f"  missing from the source: {digest[:12]}")
    return 1 if result.missing else 0


# `data remove` ----------------------------------------------------------------------------
def register_remove(sub: Any) -> None:
    rm = sub.add_parser(
        "remove",
        help="remove a dataset or one version (softly: undo until `mloop gc` purges it)",
        description="Hide a dataset, or one version, from data list, status and show; "
        "`mloop gc` purges it after its grace period and then removes the files only it "
        "referred to. A version a registered model version was trained on needs --force.",
    )
    rm.add_argument("ref", metavar="NAME[:V]", help="a dataset (every version) or one version")
    rm.add_argument(
        "--force", action="store_true", help="even if a registered model was trained on it"
    )
    rm.add_argument("--undo", action="store_true", help="bring removed versions back")
    rm.add_argument("--reason", metavar="TEXT", help="recorded in the event")
    rm.add_argument("--json", action="store_true", help="print JSON")
    rm.set_defaults(handler=remove_versions)


def remove_versions(ctx: Context) -> None:
    args = ctx.args
    data = ctx.project.data
    if args.undo:
        refs = data.restore(args.ref, reason=args.reason)
    else:
        refs = data.remove(args.ref, force=args.force, reason=args.reason)
    if ctx.json:
        output.emit_json({"restored" if args.undo else "removed": refs})
        return
    if args.undo:
        output.line(f"restored {', '.join(refs)}")
        return
    output.line(
        f"removed {', '.join(refs)}; `mloop data remove {args.ref} --undo` brings "
        f"{'it' if len(refs) == 1 else 'them'} back until `mloop gc` purges "
        f"{'it' if len(refs) == 1 else 'them'}"
    )
