"""Landed files a `new_data` trigger watches: what a check remembers of each, which it must read,
and what it found. Pure; listing and reading files is `services.automation.landing`."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WatchedFile:
    """A file under a `new_data` trigger's path as last seen: `stamp` is its mtime (ns) or its
    object's ETag; `digest` and `rows` are "" and 0 until it has been read."""

    path: str
    size: int
    stamp: str
    modified: float
    digest: str = ""
    rows: int = 0
    first_seen: float = 0.0


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What a check does with each listed file: reuse what it remembers (`known`), read it
    (`to_read`), wait (`pending`: written to within the settle time, or resized since the last
    check), or skip it (`skipped`, with the reason); `gone`: remembered, no longer listed."""

    known: tuple[WatchedFile, ...]
    to_read: tuple[WatchedFile, ...]
    pending: tuple[WatchedFile, ...]
    skipped: tuple[SkippedFile, ...]
    gone: tuple[str, ...]


def plan_reads(
    listed: Sequence[WatchedFile],
    remembered: Mapping[str, WatchedFile],
    now: float,
    settle: float,
) -> ReadPlan:
    """Sort a listing against the remembered state, so that a check reads only files that are
    new or changed and have settled: a file still being written is neither read nor counted.

    Example:
        >>> f = WatchedFile("in/a.csv", 10, "1", modified=0.0)
        >>> len(plan_reads([f], {}, now=100.0, settle=5.0).to_read)
        1
    """
    from mloop.domain.dataset import is_table_path

    known: list[WatchedFile] = []
    to_read: list[WatchedFile] = []
    pending: list[WatchedFile] = []
    skipped: list[SkippedFile] = []
    for f in listed:
        if not is_table_path(f.path):
            skipped.append(SkippedFile(f.path, "not CSV or Parquet"))
            continue
        old = remembered.get(f.path)
        if old is not None and old.digest and (old.size, old.stamp) == (f.size, f.stamp):
            known.append(old)
            continue
        first = f.first_seen if old is None else old.first_seen
        seen = WatchedFile(f.path, f.size, f.stamp, f.modified, first_seen=first or now)
        if now - f.modified < settle or (old is not None and old.size != f.size):
            pending.append(seen)
        else:
            to_read.append(seen)
    listed_paths = {f.path for f in listed}
    gone = tuple(p for p in remembered if p not in listed_paths)
    return ReadPlan(tuple(known), tuple(to_read), tuple(pending), tuple(skipped), gone)


class CheckStatus(enum.StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"  # the folder vanished or the bucket answered an error


@dataclass(frozen=True, slots=True)
class NewFile:
    path: str
    rows: int
    digest: str


@dataclass(frozen=True, slots=True)
class NewDataCheck:
    """One check of a `new_data` trigger: the files no version of the dataset holds, their
    rows against the threshold, and what was skipped and why. `error` says why the check could
    not see the folder (status `unreachable`): the caller retries later, nothing is lost."""

    trigger: str
    dataset: str
    status: CheckStatus
    new_files: tuple[NewFile, ...]
    new_rows: int
    threshold: int
    fired: bool
    skipped: tuple[SkippedFile, ...] = ()
    error: str | None = None
    checked_at: float = 0.0
