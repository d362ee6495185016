"""Landed files a `new_data` trigger watches: what a check remembers of each, which it must read,
and what it found. Pure; listing and reading files is `services.automation.landing`."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple


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


class Listed(NamedTuple):
    """A file as a listing found it (a tuple: a listing of 10,000 files builds 10,000)."""

    path: str
    size: int
    stamp: str
    modified: float


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
    listed: Sequence[Listed],
    remembered: Mapping[str, WatchedFile],
    now: float,
    settle: float,
) -> ReadPlan:
    """Sort a listing against the remembered state, so that a check reads only files that are
    new or changed and have settled: a file still being written is neither read nor counted.

    Example:
        >>> f = Listed("in/a.csv", 10, "1", modified=0.0)
        >>> len(plan_reads([f], {}, now=100.0, settle=5.0).to_read)
        1
    """
    from mloop.domain.dataset import is_table_path

    known: list[WatchedFile] = []
    to_read: list[WatchedFile] = []
    pending: list[WatchedFile] = []
    skipped: list[SkippedFile] = []
    matched = 0  # remembered paths listed again
    for path, size, stamp, modified in listed:
        old = remembered.get(path)
        matched += old is not None
        if old is not None and old.digest and old.size == size and old.stamp == stamp:
            known.append(old)
            continue
        if not is_table_path(path):
            skipped.append(SkippedFile(path, "not CSV or Parquet"))
            continue
        first = now if old is None else old.first_seen
        seen = WatchedFile(path, size, stamp, modified, first_seen=first)
        if now - modified < settle or (old is not None and old.size != size):
            pending.append(seen)
        else:
            to_read.append(seen)
    gone: tuple[str, ...] = ()
    if matched < len(remembered):  # some were not listed: find which (not on every check)
        listed_paths = {f[0] for f in listed}
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
