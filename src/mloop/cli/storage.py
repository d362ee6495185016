"""`mloop fsck` and `mloop gc`: check the artifact store against the metadata, and clean it.

fsck exits 1 when an object some run or dataset refers to is missing or damaged, so it can gate
a CI job or a backup; it also warns about lost runs (their process was killed). gc purges the
runs deleted and dataset versions removed before its grace period, then removes what nothing
refers to, leaving recent writes alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.main import Context
from mloop.domain.records import to_plain

if TYPE_CHECKING:
    from mloop.services.storage.housekeeping import FsckReport, GcReport, ObjectProblem

DEFAULT_GRACE = 3600.0  # mirrors services/storage/housekeeping.py; argparse needs it at startup


def register(commands: Any) -> None:
    fsck = commands.add_parser(
        "fsck",
        help="check that every object runs and datasets refer to is present and intact",
        description="Check every object the metadata refers to: present, of the recorded size, "
        "and with --full, content matching its digest. Exits 1 if anything is wrong.",
    )
    fsck.add_argument(
        "--full",
        action="store_true",
        help="also re-hash every object, unreferenced ones too (reads every byte)",
    )
    fsck.add_argument("--json", action="store_true", help="print JSON")
    fsck.set_defaults(handler=run_fsck)

    gc = commands.add_parser(
        "gc",
        help="purge deleted runs and removed data; remove objects nothing refers to",
        description="Purge runs deleted (`mloop runs delete`) and dataset versions removed "
        "(`mloop data remove`) before the grace period, then remove unreferenced objects, and "
        "leftovers of interrupted writes, older than the grace period. Safe while another "
        "mloop process is adding data, as long as the grace period is longer than its writes "
        "take.",
    )
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"keep anything younger than this (default {DEFAULT_GRACE:.0f}); "
        "0 removes everything unreferenced: only when nothing else is writing",
    )
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(handler=run_gc)


def _problem_line(problem: ObjectProblem) -> str:
    text = f"{problem.digest[:12]}  {problem.kind}"
    if problem.detail != problem.kind:
        text += f" ({problem.detail})"
    if problem.owners:
        text += "  referenced by " + ", ".join(problem.owners)
    return text


def _fsck_summary(report: FsckReport) -> str:
    if report.ok:
        text = f"{report.checked} objects checked, all present and intact"
    else:
        counts: dict[str, int] = {}
        for p in report.problems:
            counts[p.kind] = counts.get(p.kind, 0) + 1
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        text = f"{report.checked} objects checked: {len(report.problems)} bad ({kinds})"
    if report.full:
        text += f"; {report.unreferenced_checked} unreferenced objects re-hashed"
        if report.warnings:
            text += f", {len(report.warnings)} of them corrupt"
    return text


def run_fsck(ctx: Context) -> int:
    storage = ctx.project.storage
    plan = storage.plan_fsck(ctx.args.full)
    with output.progress("checking objects", plan.total, ctx.quiet or ctx.json) as advance:
        report = storage.fsck(progress=advance, plan=plan)
    # Not store damage (exit 0), but a store nobody looks after: runs no process will end.
    lost = ctx.project.runs.find("status = lost", limit=None)
    if ctx.json:
        lost_runs = [{"id": r.id, "name": r.name, "last_seen": r.last_seen} for r in lost]
        output.emit_json({"ok": report.ok, **_plain(report), "lost_runs": lost_runs})
        return 0 if report.ok else 1
    for problem in report.problems:
        output.line(_problem_line(problem))
    for warning in report.warnings:
        output.line("warning: unreferenced " + _problem_line(warning))
    output.line(_fsck_summary(report))
    if not report.ok:
        output.line(
            "hint: restore damaged objects from a remote with `mloop data pull`, or re-create "
            "the runs and dataset versions named above"
        )
    if report.warnings:
        output.line("hint: `mloop gc --grace 0` removes unreferenced objects")
    if lost:
        shown = ", ".join(r.id[:12] for r in lost[:5]) + (", …" if len(lost) > 5 else "")
        output.line(f"warning: {len(lost)} runs are lost (their process is gone): {shown}")
        output.line("hint: mark them failed with `mloop runs fail --lost`")
    return 0 if report.ok else 1


def _plain(report: FsckReport | GcReport) -> dict[str, Any]:
    plain: dict[str, Any] = to_plain(report)
    return plain


def run_gc(ctx: Context) -> None:
    args = ctx.args
    storage = ctx.project.storage
    plan = storage.plan_gc(args.grace)
    if args.dry_run:
        report = plan
    else:
        total = len(plan.removed)
        with output.progress("removing objects", total, ctx.quiet or ctx.json) as advance:
            report = storage.gc(progress=advance, plan=plan)
    if ctx.json:
        output.emit_json(
            {
                **_plain(report),
                "removed_bytes": report.removed_bytes,
                "temporary_bytes": report.temporary_bytes,
            }
        )
        return
    verb = "would remove" if report.dry_run else "removed"
    if report.purged_runs or report.purged_datasets:
        versions = report.purged_datasets
        named = ", ".join(versions[:5]) + (", …" if len(versions) > 5 else "")
        output.line(
            f"{'would purge' if report.dry_run else 'purged'} {len(report.purged_runs)} deleted "
            f"runs and {len(versions)} removed dataset versions" + (f" ({named})" if named else "")
        )
    if report.expired_predictions:
        output.line(
            f"{'would expire' if report.dry_run else 'expired'} "
            f"{len(report.expired_predictions)} prediction log files older than the "
            "predictions_retention setting"
        )
    if report.dry_run:
        for digest, size in report.removed:
            output.line(f"{verb} {digest[:12]}  {output.size(size)}")
        for name, size in report.temporary:
            output.line(f"{verb} temporary file {name}  {output.size(size)}")
    output.line(
        f"{verb} {len(report.removed)} unreferenced objects "
        f"({output.size(report.removed_bytes)}) and {len(report.temporary)} temporary files "
        f"({output.size(report.temporary_bytes)}); {report.referenced} objects are referenced"
    )
    if report.kept_recent:
        output.line(
            f"kept {report.kept_recent} unreferenced objects "
            f"({output.size(report.kept_recent_bytes)}) younger than {args.grace:g} seconds: "
            "they may belong to a write in progress"
        )
