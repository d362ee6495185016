"""Runs: one execution with its params, metrics, tags, inputs, outputs, code and environment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from mloop.domain.lineage import CodeVersion
from mloop.domain.names import DatasetRef


class RunStatus(enum.StrEnum):
    """`lost` is never stored: readers show it for a running run whose process is gone."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    LOST = "lost"


class RunKind(enum.StrEnum):
    """What started a run: code calling `start_run` (`run`), a pipeline, one of its steps, or
    a sweep over a pipeline's params (its trials are pipeline runs under it)."""

    RUN = "run"
    PIPELINE = "pipeline"
    STEP = "step"
    SWEEP = "sweep"


class InputKind(enum.StrEnum):
    DATASET = "dataset"
    ARTIFACT = "artifact"


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    value: float
    step: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class RunInput:
    """Something a run read: `kind` is dataset (ref `sales:3`) or artifact (ref a digest)."""

    kind: InputKind
    ref: str
    name: str | None = None

    @property
    def dataset(self) -> DatasetRef | None:
        """The dataset version read, for a dataset input (the text stays as the store keeps
        it: `ref` is a digest for an artifact)."""
        return DatasetRef.parse(self.ref) if self.kind == InputKind.DATASET else None


@dataclass(frozen=True, slots=True)
class RunOutput:
    """An artifact a run wrote, under a relative name; `size` is None where it is unknown
    (schema revisions before 0004 recorded a value's payload size beside its manifest's digest)."""

    name: str
    digest: str
    size: int | None


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    name: str
    status: RunStatus
    started: float
    ended: float | None = None
    parent_id: str | None = None
    user: str = ""
    code: CodeVersion | None = None
    environment: str | None = None
    error: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[RunInput, ...] = ()
    outputs: tuple[RunOutput, ...] = ()
    # The process that runs it, and when that process last said it was alive (a heartbeat).
    pid: int | None = None
    host: str | None = None
    heartbeat: float | None = None
    deleted: float | None = None  # when it was deleted (soft: `mloop gc` purges it later)
    kind: RunKind = RunKind.RUN
    pipeline: str | None = None  # the pipeline a pipeline, step or sweep run belongs to

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    @property
    def last_seen(self) -> float:
        """The last sign of life: the latest heartbeat, or the start for runs without one."""
        return self.heartbeat if self.heartbeat is not None else self.started


@dataclass(frozen=True, slots=True)
class Liveness:
    """How a reader tells a run whose process died from one still at work.

    A process beats for its open runs every 30 seconds; a running run is lost when its last
    sign of life is older than `stale_before`, or when its id is in `dead` (the reader saw
    that its process is gone from this host). The SQL store applies the same rule in a query,
    so `status = lost` can be filtered and sorted on.
    """

    stale_before: float
    dead: frozenset[str] = frozenset()

    def status_of(self, run: Run) -> RunStatus:
        if run.status is RunStatus.RUNNING and (
            run.id in self.dead or run.last_seen < self.stale_before
        ):
            return RunStatus.LOST
        return run.status
