"""Models: registered versions with their lineage, input signature, aliases and gate results.

A ModelVersion points at a value bundle in the artifact store (the model saved by its flavor)
and records what made it: the run, the dataset versions, the code and the environment. Aliases
(`champion`, `challenger`, any name) point at one version of a model at a time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from mloop.domain.gate import GateRecord
from mloop.domain.lineage import CodeVersion
from mloop.domain.names import DatasetRef, ModelRef

NUMERIC_DTYPES = ("float64", "float32", "int64", "int32", "int16", "int8", "uint8", "bool")


class ModelStatus(enum.StrEnum):
    """An archived version keeps its files and lineage but no alias may point at it."""

    READY = "ready"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One input (or output) column: its name, dtype and whether missing values are allowed."""

    name: str
    dtype: str
    nullable: bool = False

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC_DTYPES


@dataclass(frozen=True, slots=True)
class Signature:
    """What a model takes and returns; requests are checked against `inputs`."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.inputs)

    @property
    def all_numeric(self) -> bool:
        return all(c.numeric for c in self.inputs)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    created: float
    user: str
    flavor: str
    digest: str  # the model's value bundle in the artifact store
    size: int
    run_id: str | None = None
    signature: Signature | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    datasets: tuple[DatasetRef, ...] = ()  # the dataset versions it was trained on
    code: CodeVersion = field(default_factory=CodeVersion)  # the run's commit and diff digest
    environment: str | None = None
    aliases: tuple[str, ...] = ()
    status: ModelStatus = ModelStatus.READY
    description: str = ""
    trusted_types: tuple[str, ...] = ()  # types the flavor may load beyond its safe defaults
    gates: tuple[GateRecord, ...] = ()

    @property
    def ref(self) -> str:
        return str(ModelRef(self.name, self.version))


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    created: float
    latest: int
    aliases: Mapping[str, int] = field(default_factory=dict)
    description: str = ""
