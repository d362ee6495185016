"""The `mloop` command: global options, one subcommand group per noun, and error handling."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mloop._version import __version__
from mloop.cli import oserrors
from mloop.errors import InvalidPath, MloopError, NeedsTrust, extras_named

if TYPE_CHECKING:
    from mloop.project import Project


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

    def store_folders(self) -> Iterator[tuple[str, Path]]:
        """Where the open project keeps its state and objects on this machine, if it is open."""
        if self._project is None:
            return
        settings = self._project.settings
        yield "project's state folder", settings.state_dir
        if settings.store_uri.startswith("sqlite:///"):
            yield "metadata store", Path(settings.store_uri.removeprefix("sqlite:///")).parent
        for label, uri in (
            ("artifact store", settings.artifacts_uri),
            ("remote", settings.remote_uri),
        ):
            if uri is not None and "://" not in uri:
                yield label, Path(uri)
            elif uri is not None and uri.startswith("file://"):
                yield label, Path(uri.removeprefix("file://"))


# Every command, its module and its one-line help. Only the module of the command being run is
# imported: `mloop --help` and `mloop data status` must not pay for the others.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("init", "mloop.cli.init", "make a folder a project (mloop.yaml and .mloop/)"),
    ("config", "mloop.cli.config_cmd", "show the project's settings"),
    ("runs", "mloop.cli.runs", "list, show and compare runs"),
    ("data", "mloop.cli.data", "version datasets and move them around"),
    ("run", "mloop.cli.pipelines", "run a pipeline; unchanged steps are reused"),
    ("sweep", "mloop.cli.pipelines", "run a pipeline over many params and rank the trials"),
    ("pipelines", "mloop.cli.pipelines", "list the project's pipelines and show their DAG"),
    ("models", "mloop.cli.models", "the model registry: versions, aliases, promotion"),
    ("serve", "mloop.cli.serve", "serve a model version over HTTP (MLflow and OIP APIs)"),
    (
        "deploy",
        "mloop.cli.endpoints",
        "serve model versions on an endpoint: direct, blue_green, canary, ab or shadow",
    ),
    ("endpoints", "mloop.cli.endpoints", "list endpoints; status, history, promote, rollback"),
    ("monitor", "mloop.cli.monitor", "what model servers saw: export the prediction log"),
    ("feedback", "mloop.cli.feedback", "store labels for answered requests, from a file"),
    ("triggers", "mloop.cli.triggers", "what would start each pipeline by itself, checked now"),
    (
        "controller",
        "mloop.cli.controller",
        "retrain, gate and roll out by itself when a trigger fires",
    ),
    (
        "export",
        "mloop.cli.export",
        "write a model version's bundle, container build context or Kubernetes manifests",
    ),
    (
        "reproduce",
        "mloop.cli.reproduce",
        "re-run the pipeline that made a model version; compare metrics and digest",
    ),
    ("ci", "mloop.cli.ci", "what CI runs: check new data, test, run the pipeline, check its gates"),
    (
        "lineage",
        "mloop.cli.lineage",
        "what made a run, dataset version or artifact, and what was made from it",
    ),
    ("events", "mloop.cli.lineage", "the audit log, newest first: who changed what, when and why"),
    ("fsck", "mloop.cli.storage", "check that every object runs and datasets refer to is intact"),
    ("gc", "mloop.cli.storage", "remove objects that no run, dataset or environment refers to"),
)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in mloop's shape: one `error:` line and a `hint:` line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\nhint: see `{self.prog} --help`\n")


class _Only:
    """Hands a module's `register` the real subparsers for one command and scratch parsers for
    the module's other commands, so modules keep registering all of theirs in one function."""

    def __init__(self, commands: Any, name: str) -> None:
        self._commands = commands
        self._name = name

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name == self._name:
            return self._commands.add_parser(name, **kwargs)  # type: ignore[no-any-return]
        return Parser(prog=name, add_help=False)


def _command_in(argv: Sequence[str]) -> str | None:
    names = {c[0] for c in COMMANDS}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "-C":
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in names else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    import importlib

    parser = Parser(
        prog="mloop",
        description="mloop runs the machine-learning lifecycle as one loop: version data, "
        "track runs, trace lineage.",
        epilog="Run `mloop COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mloop {__version__}")
    parser.add_argument("-C", dest="chdir", metavar="DIR", help="run as if started in DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    # An explicit prog spares argparse a help formatter (and shutil, locale) on every run.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", prog="mloop")
    wanted = _command_in(argv)
    for name, module, helptext in COMMANDS:
        if name == wanted:
            importlib.import_module(module).register(_Only(commands, name))
        else:
            commands.add_parser(name, help=helptext, add_help=False)
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


def _enter(folder: str | None) -> None:
    """Change to `-C DIR`; make sure there is a current folder to work in."""
    if folder:
        try:
            os.chdir(folder)
        except OSError as exc:
            raise oserrors.path_error(folder, exc) from None
    if oserrors.current_folder() is None:
        raise InvalidPath(
            "the current folder no longer exists",
            "cd into a folder that exists, or give one with -C DIR",
        )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _hoist_global_flags(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments)
    args = parser.parse_args(arguments)
    handler: Any = getattr(args, "handler", None)
    if handler is None:
        target = getattr(args, "parser", parser)
        target.print_help()
        return 0 if args.command is None else 2
    debug = args.debug or os.environ.get("MLOOP_DEBUG") == "1"
    ctx = Context(args)
    try:
        try:
            _enter(args.chdir)
            with extras_named():  # a part not installed: its pip command, not a traceback
                return int(handler(ctx) or 0)
        except OSError as exc:
            known = oserrors.explain(exc, oserrors.given_paths(args), ctx.store_folders())
            if known is None:
                raise
            raise known from exc
    except MloopError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(exc, NeedsTrust):  # its hint names the way to trust here: the flag
            exc = exc.needing(NeedsTrust.CLI)
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
