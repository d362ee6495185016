"""SqlMetadataStore: the MetadataStore Protocol on SQLite and PostgreSQL, one store per noun
over one shared Database (one connection pool, one schema check)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from mloop.store.metadata.sql.datasets import SqlDatasetStore
from mloop.store.metadata.sql.db import Database
from mloop.store.metadata.sql.environments import SqlEnvironmentStore
from mloop.store.metadata.sql.events import SqlEventStore
from mloop.store.metadata.sql.housekeeping import SqlHousekeepingStore
from mloop.store.metadata.sql.migrate import ensure_schema
from mloop.store.metadata.sql.models import SqlModelStore
from mloop.store.metadata.sql.runs import SqlRunStore

if TYPE_CHECKING:
    from mloop.store.metadata.protocol import (
        ControllerStore,
        DatasetStore,
        EndpointStore,
        EnvironmentStore,
        EventStore,
        FeedbackStore,
        HousekeepingStore,
        ModelStore,
        PredictionStore,
        RunStore,
        WatchedFileStore,
    )


class SqlMetadataStore:
    def __init__(self, uri: str, pool_size: int = 5) -> None:
        self.db = Database(uri, pool_size=pool_size)
        self.uri = uri
        ensure_schema(self.db)
        # Typed as the Protocols, so mypy checks each SQL class implements its noun's.
        self.runs: RunStore = SqlRunStore(self.db)
        self.environments: EnvironmentStore = SqlEnvironmentStore(self.db)
        self.datasets: DatasetStore = SqlDatasetStore(self.db)
        self.models: ModelStore = SqlModelStore(self.db)
        self.events: EventStore = SqlEventStore(self.db)
        self.housekeeping: HousekeepingStore = SqlHousekeepingStore(self.db)

    @cached_property
    def endpoints(self) -> EndpointStore:
        # Built on first use: a command about runs or data does not import the rollout rules.
        from mloop.store.metadata.sql.endpoints import SqlEndpointStore

        return SqlEndpointStore(self.db)

    @cached_property
    def predictions(self) -> PredictionStore:
        from mloop.store.metadata.sql.predictions import SqlPredictionStore

        return SqlPredictionStore(self.db)

    @cached_property
    def feedback(self) -> FeedbackStore:
        from mloop.store.metadata.sql.feedback import SqlFeedbackStore

        return SqlFeedbackStore(self.db)

    @cached_property
    def watched(self) -> WatchedFileStore:
        from mloop.store.metadata.sql.watched import SqlWatchedFileStore

        return SqlWatchedFileStore(self.db)

    @cached_property
    def controller(self) -> ControllerStore:
        from mloop.store.metadata.sql.controller import SqlControllerStore

        return SqlControllerStore(self.db)

    def close(self) -> None:
        self.db.close()
