"""Persistence (layer 1): the metadata store and the content-addressed artifact store.

`open_metadata_store(uri)` and `open_artifact_store(uri)` pick a backend from the URI scheme in
one table each; a backend whose library is not installed raises MissingDependency with the pip
command. Nothing here knows about services or interfaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mloop.errors import ConfigError

if TYPE_CHECKING:
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

METADATA_SCHEMES = {
    "sqlite": "mloop.store.metadata.sql.store:SqlMetadataStore",
    "postgresql": "mloop.store.metadata.sql.store:SqlMetadataStore",
    "postgresql+psycopg": "mloop.store.metadata.sql.store:SqlMetadataStore",
}


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else ""


def open_metadata_store(uri: str, *, pool_size: int = 5) -> MetadataStore:
    """Open the metadata store at `uri` (`sqlite:///path`, `postgresql+psycopg://…`).

    Example:
        >>> store = open_metadata_store("sqlite:////srv/example.db")  # doctest: +SKIP
    """
    scheme = _scheme(uri)
    if scheme not in METADATA_SCHEMES:
        raise ConfigError(
            f"store_uri {uri!r} has an unknown scheme {scheme!r}",
            "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB",
        )
    from mloop.store.metadata.sql.store import SqlMetadataStore

    return SqlMetadataStore(uri, pool_size=pool_size)


def open_artifact_store(uri: str) -> ArtifactStore:
    """Open the artifact store at `uri`: a local folder path or `file://`, or any fsspec URL.

    Example:
        >>> store = open_artifact_store("/srv/objects")  # doctest: +SKIP
    """
    from mloop.store.artifacts.cas import ArtifactStore

    scheme = _scheme(uri)
    if scheme in ("", "file"):
        from mloop.store.artifacts.local import LocalBackend

        return ArtifactStore(LocalBackend(uri.removeprefix("file://")))
    from mloop.store.artifacts.fsspec import FsspecBackend

    return ArtifactStore(FsspecBackend(uri))
