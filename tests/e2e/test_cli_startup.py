"""Starting the CLI stays cheap: help and a listing import no pandas, ORM or server code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pandas", "pyarrow", "sqlalchemy", "sqlalchemy.orm", "alembic", "mloop.server", "rich")


def imported_by(args: list[str], cwd: Path) -> set[str]:
    code = (
        "import sys\n"
        "from mloop.cli.main import main\n"
        f"rc = main({args!r})\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
        "raise SystemExit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stderr.split())


@pytest.mark.parametrize(
    "args",
    [["--help"], ["runs", "list"], ["data", "status"], ["data", "list"]],
    ids=["help", "runs-list", "data-status", "data-list"],
)
def test_commands_do_not_import_heavy_modules(project: Path, args: list[str]) -> None:
    if args == ["--help"]:
        code = "import sys\nfrom mloop.cli.main import build_parser\nbuild_parser()\n"
        code += "print('\\n'.join(sorted(sys.modules)))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        modules = set(done.stdout.split())
    else:
        imported_by(["runs", "list"], project)  # the first use creates the schema (Alembic)
        modules = imported_by(args, project)
    assert not [m for m in HEAVY if m in modules]
