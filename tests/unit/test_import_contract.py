"""The import contract checks what it names: a package it names exists, or is marked optional
and listed here as not built yet.

import-linter treats a layer in parentheses as optional and skips it when the package is
missing, so a renamed package would switch its check off without a word; this test makes the
rename fail instead.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

import mloop

SRC = Path(mloop.__file__).parent
PYPROJECT = SRC.parents[1] / "pyproject.toml"

# Packages the contract places before they are written; each stays in parentheses until then.
NOT_YET_BUILT: set[str] = set()


def contracts() -> list[dict[str, Any]]:
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)["tool"]["importlinter"]["contracts"]


def layer_entries(contract: dict[str, Any]) -> list[tuple[str, bool]]:
    """(module, optional) for every package a layers contract names, containers applied."""
    containers = contract.get("containers") or [""]
    entries = []
    for layer in contract["layers"]:
        for part in layer.replace(":", "|").split("|"):
            name = part.strip()
            optional = name.startswith("(") and name.endswith(")")
            name = name.strip("()")
            for container in containers:
                entries.append((f"{container}.{name}" if container else name, optional))
    return entries


def exists(module: str) -> bool:
    path = SRC.parent.joinpath(*module.split("."))
    return (path / "__init__.py").is_file() or path.with_suffix(".py").is_file()


def named_modules() -> list[tuple[str, bool]]:
    named: list[tuple[str, bool]] = []
    for contract in contracts():
        if contract["type"] == "layers":
            named += layer_entries(contract)
        else:
            for key in ("source_modules", "forbidden_modules", "containers"):
                modules = contract.get(key) or []
                named += [(m, False) for m in modules if m.split(".")[0] == "mloop"]
    return named


def test_the_contract_is_read() -> None:
    named = dict(named_modules())
    assert "mloop.services.serving" in named and "mloop.domain" in named
    assert named["mloop.services.monitoring"] is False  # built: no longer optional


@pytest.mark.parametrize(("module", "optional"), named_modules(), ids=lambda v: str(v))
def test_every_package_the_contract_names_exists_or_is_not_built_yet(
    module: str, optional: bool
) -> None:
    if optional:
        assert module in NOT_YET_BUILT, f"({module}) is optional but not listed as not built yet"
        assert not exists(module), f"{module} exists: drop its parentheses and NOT_YET_BUILT entry"
    else:
        assert exists(module), f"the import contract names {module}, which does not exist"


def test_a_package_not_built_yet_is_still_placed_in_the_contract() -> None:
    optional = {module for module, is_optional in named_modules() if is_optional}
    assert optional == NOT_YET_BUILT
