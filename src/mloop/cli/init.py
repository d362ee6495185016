"""`mloop init [DIR]`: make a folder a project."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.main import Context


def register(commands: Any) -> None:
    p = commands.add_parser("init", help="make a folder a project (mloop.yaml and .mloop/)")
    p.add_argument("directory", nargs="?", default=".", metavar="DIR", help="default: here")
    p.add_argument("--name", help="project name (default: the folder's name)")
    p.set_defaults(handler=run_init)


def run_init(ctx: Context) -> None:
    from mloop.project import init_project

    args: argparse.Namespace = ctx.args
    root, created = init_project(Path(args.directory), args.name)
    from mloop.project import Project

    project = Project.open(root)
    try:
        project.metadata  # noqa: B018 - creates the schema now, so the first command is quick
    finally:
        project.close()
    if created:
        output.line(f"Initialised mloop project in {root}")
        output.line("next: mloop data add NAME PATH   (version a dataset)")
    else:
        output.line(f"{root} is already an mloop project; made sure .mloop/ exists")
