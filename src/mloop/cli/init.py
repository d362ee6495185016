"""`mloop init [DIR] [--template NAME]`: make a folder a project, optionally a working one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.main import Context

TEMPLATE_NAMES = ("classification", "regression")  # mloop.templates.TEMPLATES, without importing


def register(commands: Any) -> None:
    p = commands.add_parser("init", help="make a folder a project (mloop.yaml and .mloop/)")
    p.add_argument("directory", nargs="?", default=".", metavar="DIR", help="default: here")
    p.add_argument("--name", help="project name (default: the folder's name)")
    p.add_argument(
        "--template",
        metavar="NAME",
        help=f"start from a working project: {' or '.join(TEMPLATE_NAMES)} (pipeline, "
        "notebook, tests, CI files and sample data)",
    )
    p.set_defaults(handler=run_init)


def run_init(ctx: Context) -> None:
    from mloop.project import Project, init_project

    args: argparse.Namespace = ctx.args
    template = None
    if args.template is not None:
        import mloop.templates as templates

        template = templates.find(args.template)
        templates.check_folder(template, Path(args.directory).resolve())
    root, created = init_project(Path(args.directory), args.name)
    project = Project.open(root)
    try:
        project.metadata  # noqa: B018 - creates the schema now, so the first command is quick
        if template is not None:
            written = templates.write(template, root, project.settings.project)
            added = project.data.add(
                template.dataset, [root / template.data_file], "sample data"
            ).version
            project.data.add(template.holdout, [root / template.holdout_file], "holdout sample")
    finally:
        project.close()
    if template is None:
        if created:
            output.line(f"Initialised mloop project in {root}")
            output.line("next: mloop data add NAME PATH   (version a dataset)")
        else:
            output.line(f"{root} is already an mloop project; made sure .mloop/ exists")
        return
    output.line(f"Initialised mloop project in {root} from the {template.name} template")
    output.line(f"  {len(written)} files: {', '.join(_top_level(written))}")
    rows = added.tables[0].rows if added.tables else 0
    output.line(f"  {template.data_file}: {rows} rows of sample data, versioned as {added.ref}")
    output.line(f"  {template.holdout_file}: a holdout sample for promotion gates")
    wheel = next(rel for rel in written if rel.startswith(f"{templates.WHEELS}/"))
    output.line(f"  {wheel}: this mloop, installed by requirements.txt (it is on no index)")
    here = Path.cwd().resolve()
    where = root.relative_to(here) if root.is_relative_to(here) else root
    output.line("next:" + (f" cd {where}" if root != here else ""))
    output.line("  mloop run    # ingest -> validate -> prepare -> train -> evaluate -> register")
    output.line("  mloop ci     # what CI runs: data checks, tests, the pipeline, its gates")
    output.line("  (docs/README.md says what is where)")
    missing = templates.missing_packages()
    if missing:
        output.line(
            f"note: the pipeline needs {' and '.join(missing)}, which are not installed here: "
            "pip install -r requirements.txt"
        )


def _top_level(paths: list[str]) -> list[str]:
    """`pipeline.py`, `tests/`, `.github/`: what a user sees in the folder."""
    seen: dict[str, None] = {}
    for rel in paths:
        head, sep, _ = rel.partition("/")
        seen[head + sep] = None
    return sorted(seen)
