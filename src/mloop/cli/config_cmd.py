"""`mloop config show`: every setting, its value, and where the value came from."""

from __future__ import annotations

from typing import Any

from mloop.cli import output
from mloop.cli.main import Context


def register(commands: Any) -> None:
    p = commands.add_parser("config", help="show the project's settings")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)
    show = sub.add_parser("show", help="print each setting, its value and its source")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_config)


def show_config(ctx: Context) -> None:
    from mloop.config import SETTINGS, load_settings
    from mloop.domain.uris import redact
    from mloop.project import find_root

    settings = load_settings(find_root())
    effective = {
        "project": settings.project,
        "store_uri": redact(settings.store_uri),
        "artifacts_uri": redact(settings.artifacts_uri),
        "remote_uri": None if settings.remote_uri is None else redact(settings.remote_uri),
        "pool_size": settings.pool_size,
        "user": settings.user,
    }
    rows = [
        {
            "key": s.key,
            "value": effective.get(s.key, settings.values[s.key]),
            "source": settings.sources[s.key],
            "env": s.env,
            "help": s.help,
        }
        for s in SETTINGS
    ]
    if ctx.json:
        output.emit_json({"root": str(settings.root), "settings": rows})
        return
    output.line(f"project root: {settings.root}")
    output.table(
        ["KEY", "VALUE", "SOURCE"],
        [[r["key"], "-" if r["value"] is None else r["value"], r["source"]] for r in rows],
    )
