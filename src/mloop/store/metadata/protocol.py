"""What every metadata store does, grouped by noun. Each method is one transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: importing the store must stay cheap for the CLI
    from mloop.domain.dataset import DatasetSummary, DatasetVersion, FileEntry
    from mloop.domain.event import Event
    from mloop.domain.lineage import Environment
    from mloop.domain.model import GateRecord, Model, ModelVersion
    from mloop.domain.query import Expr, SortKey
    from mloop.domain.run import Liveness, Metric, Run, RunInput, RunOutput, RunStatus


class MetadataStore(Protocol):
    uri: str

    def close(self) -> None: ...

    # runs
    def create_run(
        self, run: Run, event: Event, environment: Environment | None = None
    ) -> None: ...

    def write_run_data(
        self,
        run_id: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
        metrics: Sequence[Metric] = (),
        inputs: Sequence[RunInput] = (),
        outputs: Sequence[RunOutput] = (),
    ) -> None: ...

    def end_run(
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

    def running_runs_on(self, host: str) -> list[tuple[str, int | None]]: ...

    def get_run(self, ref: str, liveness: Liveness | None = None) -> Run: ...

    def find_runs(
        self,
        where: Expr | None = None,
        order: Sequence[SortKey] = (),
        limit: int | None = None,
        *,
        liveness: Liveness | None = None,
        deleted: bool = False,
    ) -> list[Run]: ...

    def count_runs(
        self,
        where: Expr | None = None,
        *,
        liveness: Liveness | None = None,
        deleted: bool = False,
    ) -> int: ...

    def delete_run(self, run_id: str, at: float, event: Event) -> list[str]: ...

    def restore_run(self, run_id: str, event: Event) -> list[str]: ...

    def metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    def child_runs(self, run_id: str) -> list[Run]: ...

    # environments
    def put_environment(self, env: Environment) -> None: ...

    def get_environment(self, digest: str) -> Environment: ...

    # datasets
    def create_dataset_version(self, version: DatasetVersion, event: Event) -> DatasetVersion: ...

    def get_dataset_version(
        self, name: str, version: int | None = None, *, files: bool = False
    ) -> DatasetVersion: ...

    def list_datasets(self) -> list[DatasetSummary]: ...

    def list_dataset_versions(self, name: str) -> list[DatasetVersion]: ...

    def remove_dataset_versions(
        self, name: str, version: int | None, at: float, event: Event, *, force: bool = False
    ) -> list[int]: ...

    def restore_dataset_versions(
        self, name: str, version: int | None, event: Event
    ) -> list[int]: ...

    # models
    def create_model_version(
        self, version: ModelVersion, files: Sequence[FileEntry], event: Event
    ) -> ModelVersion: ...

    def get_model_version(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> ModelVersion: ...

    def list_models(self) -> list[Model]: ...

    def list_model_versions(self, name: str) -> list[ModelVersion]: ...

    def model_versions_of_run(self, run_id: str) -> list[ModelVersion]: ...

    def set_model_alias(self, name: str, alias: str, version: int, event: Event) -> None: ...

    def delete_model_alias(self, name: str, alias: str, event: Event) -> None: ...

    def set_model_version_status(
        self, name: str, version: int, status: str, event: Event
    ) -> None: ...

    def set_model_version_gates(
        self, name: str, version: int, gates: Sequence[GateRecord]
    ) -> None: ...

    # lineage
    def runs_with_input(self, kind: str, ref: str) -> list[Run]: ...

    def runs_with_output(self, digest: str) -> list[Run]: ...

    def dataset_versions_with_file(self, digest: str) -> list[DatasetVersion]: ...

    def dataset_versions_of_run(self, run_id: str) -> list[DatasetVersion]: ...

    def resolve_digest(self, prefix: str) -> str: ...

    # events
    def append_event(self, event: Event) -> None: ...

    def list_events(self, ref: str | None = None, limit: int = 100) -> list[Event]: ...

    # housekeeping
    def referenced_objects(
        self, purged_before: float | None = None
    ) -> Iterator[tuple[str, int | None, str]]: ...

    def purge_removed(
        self, before: float, *, event: Event | None = None, dry_run: bool = False
    ) -> tuple[list[str], list[str]]: ...
