"""Each noun's store (`MetadataStore.runs`, `.datasets`, ...) has its own contract suite,
`test_NOUN*.py`, that calls every method of the noun's Protocol; a noun or a method added
without its contract tests fails here, before an implementation (SQL now, HTTP later) drifts."""

from __future__ import annotations

from pathlib import Path
from typing import get_type_hints

import pytest

from mloop.store.metadata.protocol import MetadataStore

NOUNS = {name: hint for name, hint in get_type_hints(MetadataStore).items() if name != "uri"}
NOUNS |= {  # nouns a store builds on first use are properties
    name: get_type_hints(member.fget)["return"]
    for name, member in vars(MetadataStore).items()
    if isinstance(member, property)
}


@pytest.mark.parametrize("noun", sorted(NOUNS))
def test_every_method_of_a_noun_store_is_called_by_its_suite(noun: str) -> None:
    suite = "".join(p.read_text() for p in sorted(Path(__file__).parent.glob(f"test_{noun}*.py")))
    methods = [name for name in vars(NOUNS[noun]) if callable(getattr(NOUNS[noun], name))]
    methods = [name for name in methods if not name.startswith("_")]

    assert suite, f"store.{noun} has no contract suite: add tests/contract/test_{noun}.py"
    assert methods
    assert [m for m in methods if f".{noun}.{m}(" not in suite] == []
