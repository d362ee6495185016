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
    from mloop.project import find_root

    settings = load_settings(find_root())
    rows = [
        {
            "key": s.key,
            "value": settings.shown(s.key),
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
