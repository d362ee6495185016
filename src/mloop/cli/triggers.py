"""`mloop triggers check`: each trigger of mloop.yaml's `triggers:` as it stands now, without
acting on any (the controller acts): a schedule's next time, a new_data trigger's new rows, and
whether a drift, accuracy or alertmanager trigger would fire, with why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mloop.cli import output
from mloop.cli.main import Context


def register(commands: Any) -> None:
    p = commands.add_parser(
        "triggers",
        help="what would start each pipeline by itself, checked now",
        description="Triggers are declared per pipeline under `triggers:` in mloop.yaml.",
    )
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    check = sub.add_parser(
        "check",
        help="check every trigger now, acting on none",
        description="Check every trigger now without starting anything: a schedule's next "
        "time, the new rows a new_data trigger counts (files being written and files that "
        "are not CSV or Parquet are listed as skipped), whether drift or accuracy is past its "
        "bound over the window, and the firing alerts received from Alertmanager (all of "
        "them: the controller takes only those since it last acted).",
    )
    check.add_argument("--json", action="store_true", help="print the checks as JSON")
    check.set_defaults(handler=check_triggers)


def check_triggers(ctx: Context) -> None:
    from mloop.domain.records import to_plain

    checks = ctx.project.triggers.check_all()
    if ctx.json:
        output.emit_json([to_plain(c) for c in checks])
        return
    if not checks:
        output.line("no triggers: declare them per pipeline under `triggers:` in mloop.yaml")
        return
    rows = []
    for c in checks:
        state = c.note or ""
        if c.schedule is not None:
            state = _next(c.schedule.next_fire, c.trigger.spec)
        elif c.signal is not None:
            state = f"{'fires' if c.signal.fired else 'waits'}: {c.signal.reason}"
        elif c.new_data is not None:
            found = c.new_data
            if found.error:
                state = f"cannot look: {found.error} (retried at the next check)"
            else:
                verdict = "fires" if found.fired else "waits"
                state = (
                    f"{found.new_rows:,} new rows in {len(found.new_files)} "
                    f"file{'' if len(found.new_files) == 1 else 's'} "
                    f"(threshold {found.threshold:,}): {verdict}"
                )
        rows.append([c.trigger.key, state])
    output.table(["trigger", "state"], rows)
    for c in checks:
        for skipped in c.new_data.skipped if c.new_data is not None else ():
            output.warn(f"{c.trigger.key}: skipped {skipped.path}: {skipped.reason}")


def _next(upcoming: datetime | None, spec: object) -> str:
    if upcoming is None:
        return "never matches (within 50 years)"
    shown = f"next {upcoming:%Y-%m-%d %H:%M} UTC"
    zone = getattr(spec, "timezone", "UTC")
    if zone != "UTC":
        from zoneinfo import ZoneInfo

        shown += f" ({upcoming.astimezone(ZoneInfo(zone)):%H:%M} {zone})"
    return shown
