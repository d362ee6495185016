"""The version is written in one place, and everything that shows it agrees."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import mloop
from mloop._version import __version__
from mloop.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_written_only_in_version_py() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/mloop/_version.py"
    literal = re.compile(rf"""["']{re.escape(__version__)}["']""")
    written = [
        str(path.relative_to(ROOT))
        for path in [ROOT / "pyproject.toml", *sorted((ROOT / "src/mloop").rglob("*.py"))]
        if literal.search(path.read_text(encoding="utf-8"))
    ]
    assert written == ["src/mloop/_version.py"]


def test_the_package_the_command_and_the_installed_metadata_agree(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert mloop.__version__ == __version__
    assert metadata.version("mloop") == __version__  # built from _version.py by hatch
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"mloop {__version__}"
