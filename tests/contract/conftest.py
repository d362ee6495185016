"""Every implementation of each store Protocol, as parametrized fixtures for the contract suites.

A contract test takes `metadata_store` or `artifact_store` and runs once per implementation
(ids `sqlite` / `postgres`, `local` / `s3`); the real servers come from `tests/servers.py`.
Each noun of the metadata store has its suite, `test_NOUN*.py` (`test_runs.py`, ...), calling
`metadata_store.NOUN.METHOD`; a new implementation joins every suite by adding a param here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mloop.store import open_artifact_store, open_metadata_store
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.metadata.protocol import MetadataStore
from tests.servers import postgres_database

METADATA_IMPLEMENTATIONS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
ARTIFACT_IMPLEMENTATIONS = [
    pytest.param("local", id="local"),
    pytest.param("s3", id="s3", marks=pytest.mark.s3),
]


@pytest.fixture(params=METADATA_IMPLEMENTATIONS)
def metadata_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URI of a brand-new, empty metadata store of each kind."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_db"))
    return f"sqlite:///{tmp_path / 'mloop.db'}"


@pytest.fixture(scope="module", params=METADATA_IMPLEMENTATIONS)
def module_metadata_uri(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like `metadata_uri`, but shared by a module's tests that only read what it holds."""
    if request.param == "postgres":
        with postgres_database(request.getfixturevalue("postgres_server")) as uri:
            yield uri
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'mloop.db'}"


@pytest.fixture
def metadata_store(metadata_uri: str) -> Iterator[MetadataStore]:
    store = open_metadata_store(metadata_uri)
    yield store
    store.close()


@pytest.fixture(params=ARTIFACT_IMPLEMENTATIONS)
def artifact_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URI of a brand-new, empty artifact store of each kind."""
    if request.param == "s3":
        return str(request.getfixturevalue("s3_prefix"))
    return str(tmp_path / "objects")


@pytest.fixture
def artifact_store(artifact_uri: str) -> ArtifactStore:
    return open_artifact_store(artifact_uri)
