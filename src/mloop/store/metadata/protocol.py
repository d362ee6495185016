"""What every metadata store does: one small store per noun, bundled as `MetadataStore`.

`store.runs`, `store.environments`, `store.datasets`, `store.models`, `store.events`,
`store.endpoints`, `store.predictions`, `store.feedback`, `store.watched` and
`store.controller` each hold one noun;
`store.housekeeping` holds the few questions that read every noun's tables at once (which
artifact objects the metadata names, purging what was removed).

The transaction rule, for every method below: one call is one transaction. It does all it was
asked or nothing, and no reader sees half of it. So what must change together is written by one
call, never by two in a row:
- a change and its Event: every call that takes an `event` writes it with the change, so the
  audit log names no change that did not happen and misses none that did
  (`datasets.create_version(version, event)`, `models.set_alias(name, alias, version, event)`);
- a record and the rows it owns: a run with its params, tags, metrics, inputs, outputs and its
  new Environment (`runs.create`, `runs.end(..., outputs=...)`); a version with its files;
- a removal with what goes with it: a run with the runs below it, one event each.
A refused call (an error raised) has written nothing. A store that cannot open a transaction
itself (an HTTP client) sends each call as one request that its server runs as one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: importing the store must stay cheap for the CLI
    from mloop.domain.analysis import VersionStats
    from mloop.domain.controller import Iteration, IterationState, TriggerState
    from mloop.domain.dataset import DatasetSummary, DatasetVersion, FileEntry
    from mloop.domain.endpoint import Deployment, Endpoint
    from mloop.domain.event import Event
    from mloop.domain.feedback import Label, Stored
    from mloop.domain.gate import GateRecord
    from mloop.domain.landing import WatchedFile
    from mloop.domain.lineage import Environment
    from mloop.domain.model import Model, ModelVersion
    from mloop.domain.prediction import PredictionBatch
    from mloop.domain.query import Expr, SortKey
    from mloop.domain.run import Liveness, Metric, Run, RunInput, RunOutput, RunStatus


class RunStore(Protocol):
    def create(self, run: Run, event: Event, environment: Environment | None = None) -> None: ...

    def write_data(
        self,
        run_id: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
        metrics: Sequence[Metric] = (),
        inputs: Sequence[RunInput] = (),
        outputs: Sequence[RunOutput] = (),
    ) -> None: ...

    def end(
        self,
        run_id: str,
        status: RunStatus,
        ended: float,
        error: str | None,
        event: Event,
        *,
        only_running: bool = False,
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
        metrics: Sequence[Metric] = (),
        inputs: Sequence[RunInput] = (),
        outputs: Sequence[RunOutput] = (),
    ) -> None: ...

    def record_heartbeat(self, run_ids: Sequence[str], at: float) -> None: ...

    def running_on(self, host: str) -> list[tuple[str, int | None]]: ...

    def get(self, ref: str, liveness: Liveness | None = None) -> Run: ...

    def find(
        self,
        where: Expr | None = None,
        order: Sequence[SortKey] = (),
        limit: int | None = None,
        *,
        liveness: Liveness | None = None,
        deleted: bool = False,
    ) -> list[Run]: ...

    def count(
        self,
        where: Expr | None = None,
        *,
        liveness: Liveness | None = None,
        deleted: bool = False,
    ) -> int: ...

    def delete(self, run_id: str, at: float, event: Event) -> list[str]: ...

    def restore(self, run_id: str, event: Event) -> list[str]: ...

    def metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    def children(self, run_id: str) -> list[Run]: ...

    def with_input(self, kind: str, ref: str) -> list[Run]: ...

    def with_output(self, digest: str) -> list[Run]: ...


class EnvironmentStore(Protocol):
    def put(self, env: Environment) -> None: ...

    def get(self, digest: str) -> Environment: ...


class DatasetStore(Protocol):
    def create_version(self, version: DatasetVersion, event: Event) -> DatasetVersion: ...

    def get_version(
        self, name: str, version: int | None = None, *, files: bool = False
    ) -> DatasetVersion: ...

    def all(self) -> list[DatasetSummary]: ...

    def list_versions(self, name: str) -> list[DatasetVersion]: ...

    def remove_versions(
        self, name: str, version: int | None, at: float, event: Event, *, force: bool = False
    ) -> list[int]: ...

    def restore_versions(self, name: str, version: int | None, event: Event) -> list[int]: ...

    def versions_with_file(self, digest: str) -> list[DatasetVersion]: ...

    def versions_of_run(self, run_id: str) -> list[DatasetVersion]: ...

    def file_digests(self, name: str, after: int = 0) -> frozenset[str]: ...


class ModelStore(Protocol):
    def create_version(
        self, version: ModelVersion, files: Sequence[FileEntry], event: Event
    ) -> ModelVersion: ...

    def get_version(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> ModelVersion: ...

    def all(self) -> list[Model]: ...

    def list_versions(self, name: str) -> list[ModelVersion]: ...

    def versions_of_run(self, run_id: str) -> list[ModelVersion]: ...

    def set_alias(self, name: str, alias: str, version: int, event: Event) -> None: ...

    def delete_alias(self, name: str, alias: str, event: Event) -> None: ...

    def set_status(self, name: str, version: int, status: str, event: Event) -> None: ...

    def set_gates(self, name: str, version: int, gates: Sequence[GateRecord]) -> None: ...


class EventStore(Protocol):
    def append(self, event: Event) -> None: ...

    def find(self, ref: str | None = None, limit: int = 100) -> list[Event]: ...


class EndpointStore(Protocol):
    """Endpoints, their deployments, what the servers saw, and who decides.

    `save` is the one write of a deployment: it compares and sets. Several server processes may
    decide for the same endpoint (the lease makes that rare, not impossible), so each write
    names the deployment it was decided from (`expected`: its sequence and `updated`, None for
    an endpoint's first) and is refused with `Conflict` if the endpoint moved on meanwhile.
    """

    def save(
        self,
        changes: Sequence[tuple[Deployment, Event]],
        *,
        expected: Deployment | None,
    ) -> None: ...

    def get(self, name: str) -> Endpoint: ...

    def current(self, name: str) -> Deployment: ...

    def deployment(self, name: str, sequence: int) -> Deployment: ...

    def history(self, name: str, limit: int = 100) -> list[Deployment]: ...

    def find(self) -> list[Deployment]: ...

    def report(
        self,
        name: str,
        sequence: int,
        reporter: str,
        at: float,
        stats: Mapping[str, VersionStats],
    ) -> None: ...

    def stats(
        self,
        name: str,
        sequence: int | None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, VersionStats]:
        """What the servers reported of each version (NAME:V) from `since` to `until`, added
        up; of deployment `sequence` only, or of every deployment (None)."""
        ...

    def lease(self, name: str, holder: str, now: float, ttl: float) -> bool: ...

    def look(self, name: str, sequence: int) -> tuple[float, dict[str, Any]] | None:
        """The last look of deployment `sequence`'s A/B test, and when it was taken."""
        ...

    def save_look(self, name: str, sequence: int, at: float, look: Mapping[str, Any]) -> None:
        """Keep `look` as deployment `sequence`'s last (replacing the one before)."""
        ...


class PredictionStore(Protocol):
    """The index of the prediction log: one row per Parquet file a server wrote.

    The rows themselves live in the artifact store; a reader asks `find` which files overlap
    its window and opens only those. No Event per batch: the log is a recording, as a run's
    metrics are, and a server adds a batch every few seconds.
    """

    def add(self, batch: PredictionBatch) -> None: ...

    def find(
        self,
        endpoint: str,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[PredictionBatch]: ...

    def expired(self, before: float) -> list[PredictionBatch]: ...

    def remove(self, ids: Sequence[str]) -> int: ...


class FeedbackStore(Protocol):
    """Labels for answered requests, by endpoint, request id and row: what monitoring joins
    to the prediction log. No Event per label: labels arrive by the thousand, as log rows do.

    `add` stores a batch in one call, each label replacing an earlier one for its request and
    row, and says how many it replaced. Labels for requests the log does not hold are kept.
    """

    def add(self, endpoint: str, labels: Sequence[Label]) -> Stored: ...

    def find(self, endpoint: str, request_ids: Sequence[str]) -> list[Label]: ...

    def received(
        self, endpoint: str, since: float | None = None, until: float | None = None
    ) -> list[Label]: ...


class WatchedFileStore(Protocol):
    """Files under each `new_data` trigger's path as its last check saw them, so a check reads
    only files that changed, whichever controller makes it (state kept in the store survives a
    restart and a change of lease holder)."""

    def files(self, trigger: str) -> dict[str, WatchedFile]: ...

    def save(self, trigger: str, seen: Sequence[WatchedFile], gone: Sequence[str] = ()) -> None: ...


class ControllerStore(Protocol):
    """The controller's progress (`domain/controller.py`): its iterations, each written by
    compare-and-set on its state with its Event; what it last saw of each trigger; and named
    leases with expiry, so that of several controllers on one store one acts."""

    def begin(self, iteration: Iteration, event: Event, trigger: TriggerState) -> None: ...

    def advance(
        self, iteration: Iteration, expected: IterationState, event: Event | None = None
    ) -> None: ...

    def get(self, iteration_id: str) -> Iteration: ...

    def current(self, pipeline: str) -> Iteration | None: ...

    def recent(self, limit: int = 20) -> list[Iteration]: ...

    def fires(self, trigger: str, since: float) -> list[float]: ...

    def outcomes(self) -> dict[str, int]: ...

    def trigger_states(self) -> dict[str, TriggerState]: ...

    def save_trigger(self, state: TriggerState, event: Event | None = None) -> None: ...

    def lease(
        self, name: str, holder: str, now: float, ttl: float, *, replacing: str | None = None
    ) -> bool: ...

    def release(self, name: str, holder: str) -> None: ...

    def holder(self, name: str, now: float) -> str | None: ...


class HousekeepingStore(Protocol):
    """What reads every noun's tables at once: the digests the metadata names, for gc, fsck and
    `mloop lineage`, and the purge of what was removed (runs and dataset versions together, as
    a dataset version may name a run)."""

    def resolve_digest(self, prefix: str) -> str: ...

    def referenced_objects(
        self, purged_before: float | None = None
    ) -> Iterator[tuple[str, int | None, str]]: ...

    def purge_removed(
        self, before: float, *, event: Event | None = None, dry_run: bool = False
    ) -> tuple[list[str], list[str]]: ...


class MetadataStore(Protocol):
    uri: str
    runs: RunStore
    environments: EnvironmentStore
    datasets: DatasetStore
    models: ModelStore
    events: EventStore
    housekeeping: HousekeepingStore

    @property
    def endpoints(self) -> EndpointStore: ...  # a property: a store may build it on first use

    @property
    def predictions(self) -> PredictionStore: ...

    @property
    def feedback(self) -> FeedbackStore: ...

    @property
    def watched(self) -> WatchedFileStore: ...

    @property
    def controller(self) -> ControllerStore: ...

    def close(self) -> None: ...
