"""The `mloop` command: global options, one subcommand group per noun, and error handling."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mloop.errors import MloopError

if TYPE_CHECKING:
    from mloop.project import Project

VERSION = "0.1.0"


class Context:
    """What every handler gets: the parsed options and the project, opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quiet: bool = bool(args.quiet)
        self.json: bool = bool(getattr(args, "json", False))
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            from mloop.project import Project

            self._project = Project.open()
        return self._project

    def close(self) -> None:
        if self._project is not None:
            self._project.close()


def build_parser() -> argparse.ArgumentParser:
    from mloop.cli import config_cmd, data, init, lineage, runs, storage

    parser = argparse.ArgumentParser(
        prog="mloop",
        description="mloop runs the machine-learning lifecycle as one loop: version data, "
        "track runs, trace lineage.",
        epilog="Run `mloop COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mloop {VERSION}")
    parser.add_argument("-C", dest="chdir", metavar="DIR", help="run as if started in DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (init, config_cmd, runs, data, lineage, storage):
        module.register(commands)
    return parser


Handler = Callable[[Context], "int | None"]


GLOBAL_FLAGS = ("-q", "--quiet", "--debug")


def _hoist_global_flags(argv: Sequence[str]) -> list[str]:
    """Let `-q` and `--debug` go anywhere (`mloop data add -q …`), as users type them."""
    args = list(argv)
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return flags + rest + args[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_hoist_global_flags(sys.argv[1:] if argv is None else argv))
    handler: Any = getattr(args, "handler", None)
    if handler is None:
        target = getattr(args, "parser", parser)
        target.print_help()
        return 0 if args.command is None else 2
    debug = args.debug or os.environ.get("MLOOP_DEBUG") == "1"
    ctx = Context(args)
    try:
        if args.chdir:
            os.chdir(args.chdir)
        return int(handler(ctx) or 0)
    except MloopError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:  # continuation lines line up under the first (a caret, say)
            sys.stderr.write("hint: " + exc.hint.replace("\n", "\n      ") + "\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            raise
        sys.stderr.write(
            f"error: internal error: {type(exc).__name__}: {exc}\n"
            "hint: this is a bug in mloop; rerun with --debug and report the traceback\n"
        )
        return 2
    finally:
        ctx.close()
