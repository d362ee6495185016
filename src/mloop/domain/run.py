"""Runs: one execution with its params, metrics, tags, inputs, outputs, code and environment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from mloop.domain.lineage import CodeVersion


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    value: float
    step: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class RunInput:
    """Something a run read: `kind` is dataset (ref `sales:3`) or artifact (ref a digest)."""

    kind: str
    ref: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RunOutput:
    """An artifact a run wrote, under a relative name."""

    name: str
    digest: str
    size: int


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

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started
