"""The environment store's contract (`store.environments`) on every implementation."""

from __future__ import annotations

import pytest

from mloop.domain.lineage import Environment
from mloop.errors import NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import digest


def test_environments_are_stored_once_and_read_back(metadata_store: MetadataStore) -> None:
    env = Environment(digest("env"), "CPython 3.11.9 (linux)", digest("packages"), 42)

    metadata_store.environments.put(env)
    metadata_store.environments.put(env)

    assert metadata_store.environments.get(env.digest) == env
    with pytest.raises(NotFound):
        metadata_store.environments.get(digest("other"))
