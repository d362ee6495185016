"""Datasets: named, versioned snapshots of files; tables also carry a schema and a profile.

A DatasetVersion is a manifest (relative path -> digest and size). For CSV and Parquet files it
also records each table's schema, row count and per-column statistical profile, which later
becomes the reference that serving traffic is compared against for drift.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from mloop.domain.names import DatasetRef

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def is_table_path(path: str) -> bool:
    return path.lower().endswith(TABLE_SUFFIXES)


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Histogram:
    """`edges` has one more element than `counts`; bins are closed on the left."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


class ColumnKind(enum.StrEnum):
    """How a column is profiled: numbers get a range and a histogram, categories their top
    values, anything else only its counts."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """Statistics of one column. Numeric columns fill min..histogram; categorical fill `top`."""

    name: str
    dtype: str
    kind: ColumnKind
    count: int
    nulls: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: tuple[tuple[float, float], ...] = ()
    histogram: Histogram | None = None
    top: tuple[tuple[str, int], ...] = ()
    distinct: int | None = None

    @property
    def nullable(self) -> bool:
        return self.nulls > 0


@dataclass(frozen=True, slots=True)
class TableProfile:
    """Schema, row count and column profiles of one table file in a version."""

    path: str
    rows: int
    columns: tuple[ColumnProfile, ...]

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def schema(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.name, c.dtype) for c in self.columns)


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """One version; `files` is empty unless the caller asked for the manifest."""

    name: str
    version: int
    created: float
    user: str
    message: str
    file_count: int
    total_size: int
    sources: tuple[str, ...] = ()
    tables: tuple[TableProfile, ...] = ()
    files: tuple[FileEntry, ...] = ()
    run_id: str | None = None

    @property
    def ref(self) -> str:
        return str(DatasetRef(self.name, self.version))


def next_version(
    name: str,
    previous: DatasetVersion | None,
    files: Sequence[FileEntry],
    tables: Sequence[TableProfile],
    *,
    created: float,
    user: str,
    message: str,
    sources: tuple[str, ...],
) -> DatasetVersion:
    """The draft of `name`'s next version: `previous`'s files and table profiles (if any) with
    `files` and `tables` added, or put in place of those at the same path; what the controller
    makes of landed files and of labelled production rows. The store gives it its number."""
    old_files = previous.files if previous is not None else ()
    old_tables = previous.tables if previous is not None else ()
    by_path = {f.path: f for f in [*old_files, *files]}
    every = tuple(sorted(by_path.values(), key=lambda f: f.path))
    profiles = {t.path: t for t in [*old_tables, *tables]}
    return DatasetVersion(
        name=name,
        version=0,
        created=created,
        user=user,
        message=message,
        file_count=len(every),
        total_size=sum(f.size for f in every),
        sources=sources,
        tables=tuple(sorted(profiles.values(), key=lambda t: t.path)),
        files=every,
    )


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    name: str
    latest: int
    created: float
    updated: float
    file_count: int
    total_size: int
