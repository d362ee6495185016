"""The house rules a script can check: small files, a stable SDK surface, no root imports."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import mloop

SRC = Path(mloop.__file__).parent
MAX_LINES = 800
ALLOWED_LONG: set[str] = set()


def python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_file_is_a_god_module() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in python_files()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert {k: v for k, v in long.items() if k not in ALLOWED_LONG} == {}


def test_the_sdk_surface_is_exactly_what_all_says() -> None:
    # Submodules appear as attributes once imported; the surface is every other public name.
    public = {
        name
        for name, value in vars(mloop).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    # loaded on first use by the module's __getattr__
    lazy = {"PythonModel", "dataset", "notebook_step", "pipeline", "step", "validate"}
    assert public | {"data"} | lazy == set(mloop.__all__)
    assert all(callable(getattr(mloop, name)) for name in lazy)
    assert isinstance(mloop.data, ModuleType)
    assert callable(mloop.data.add) and callable(mloop.data.get)


def test_nothing_inside_mloop_imports_the_package_root() -> None:
    offenders = []
    for path in python_files():
        if path == SRC / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mloop" and node.level == 0:
                offenders.append(str(path.relative_to(SRC)))
            if isinstance(node, ast.Import) and any(a.name == "mloop" for a in node.names):
                offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_every_package_says_what_it_is_for() -> None:
    missing = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("__init__.py")
        if "migrations" not in p.parts and not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert missing == []


def test_no_utils_dumping_ground() -> None:
    assert not [p for p in SRC.rglob("*") if p.stem in ("utils", "helpers", "misc")]
