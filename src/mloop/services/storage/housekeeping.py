"""fsck and gc: hold the artifact store against what the metadata store refers to.

`fsck` checks that every object some run, dataset version or environment refers to is present,
has the recorded size and (with `full`) still hashes to its digest. `gc` purges runs deleted and
dataset versions removed longer ago than its grace period, then removes objects nothing refers
to, theirs included. Writers store objects first, sync, then commit the metadata that refers
to them, so for a while a fresh object is unreferenced on purpose; gc therefore only removes
objects (and leftover temporary files) older than a grace period, lists before it reads the
references, and looks at an object's age once more just before removing it.

Checks and removals run on a thread pool: on S3 each one is a request with tens of milliseconds
of latency, and re-hashing reads many files at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from mloop.domain.event import Event
from mloop.domain.prediction import PredictionBatch
from mloop.errors import InvalidInput, MloopError, NotFound
from mloop.store.artifacts.cas import ArtifactStore, key_of
from mloop.store.metadata.protocol import MetadataStore

DEFAULT_GRACE = 3600.0
DEFAULT_WORKERS = 16
T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int], None]


def _no_progress(n: int) -> None:
    return None


@runtime_checkable
class _TemporaryFiles(Protocol):
    """Backends that write under temporary names first can list leftovers of crashed writes."""

    def list_temporary(self) -> Iterator[tuple[Path, float]]: ...


@dataclass(frozen=True, slots=True)
class Reference:
    """One object and everything in the metadata that refers to it, with the sizes recorded."""

    digest: str
    sizes: tuple[int, ...]
    owners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ObjectProblem:
    """`kind` is missing, size, corrupt or unreadable; `detail` says it in words."""

    digest: str
    kind: str
    detail: str
    owners: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FsckPlan:
    """What an fsck will look at; `total` sizes a progress bar before any check runs."""

    references: tuple[Reference, ...]
    unreferenced: tuple[str, ...]
    full: bool

    @property
    def total(self) -> int:
        return len(self.references) + len(self.unreferenced)


@dataclass(frozen=True, slots=True)
class FsckReport:
    """`problems` make the store unhealthy; `warnings` are damaged objects nothing refers to."""

    checked: int
    full: bool
    problems: tuple[ObjectProblem, ...]
    unreferenced_checked: int = 0
    warnings: tuple[ObjectProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class GcReport:
    """What gc removed, or with `dry_run` would remove, as (digest or file name, bytes).

    `kept_recent` counts unreferenced objects younger than the grace period: most likely a
    write in progress whose metadata is not committed yet. `purged_runs` and
    `purged_datasets` are the records deleted (or removed) before the grace period that gc
    purged, or would purge: their objects are among `removed` unless something else refers
    to them. `expired_predictions` are the prediction log's files older than its retention
    (their batch ids), whose index rows gc removes.
    """

    dry_run: bool
    grace: float
    cutoff: float
    referenced: int
    removed: tuple[tuple[str, int], ...]
    temporary: tuple[tuple[str, int], ...]
    kept_recent: int
    kept_recent_bytes: int
    purged_runs: tuple[str, ...] = ()
    purged_datasets: tuple[str, ...] = ()
    expired_predictions: tuple[str, ...] = ()

    @property
    def removed_bytes(self) -> int:
        return sum(size for _, size in self.removed)

    @property
    def temporary_bytes(self) -> int:
        return sum(size for _, size in self.temporary)


def _classify(detail: str) -> str:
    if detail == "missing":
        return "missing"
    if detail.startswith("size"):
        return "size"
    return "corrupt"


class StorageService:
    """Check (`fsck`) and clean (`gc`) the artifact store against the metadata store."""

    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        workers: int = DEFAULT_WORKERS,
        actor: str = "mloop",
        prediction_retention: float | None = None,
    ) -> None:
        self.actor = actor
        self.prediction_retention = prediction_retention
        self.metadata = metadata
        self.artifacts = artifacts
        self.workers = max(1, workers)

    # what metadata refers to --------------------------------------------------------------
    def references(self) -> list[Reference]:
        """Every object metadata refers to, once each, with all of its owners.

        Example:
            >>> [r.owners for r in storage.references()][:1]  # doctest: +SKIP
            [('dataset/sales:2',)]
        """
        sizes: dict[str, set[int]] = {}
        owners: dict[str, dict[str, None]] = {}
        for digest, size, owner in self.metadata.housekeeping.referenced_objects():
            found = sizes.setdefault(digest, set())
            if size is not None:
                found.add(size)
            owners.setdefault(digest, {})[owner] = None
        return [Reference(d, tuple(sorted(sizes[d])), tuple(owners[d])) for d in sorted(owners)]

    # fsck ---------------------------------------------------------------------------------
    def plan_fsck(self, full: bool = False) -> FsckPlan:
        """Read the references (and, for `full`, list the store) before checking anything.

        Example:
            >>> plan = storage.plan_fsck(full=True)  # doctest: +SKIP
            >>> report = storage.fsck(plan=plan)  # doctest: +SKIP
        """
        references = tuple(self.references())
        unreferenced: tuple[str, ...] = ()
        if full:
            known = {r.digest for r in references}
            unreferenced = tuple(d for d, _, _ in self.artifacts.iter_objects() if d not in known)
        return FsckPlan(references, unreferenced, full)

    def fsck(
        self, full: bool = False, progress: Progress = _no_progress, plan: FsckPlan | None = None
    ) -> FsckReport:
        """Check every referenced object; `full` also re-hashes it and every unreferenced one.

        `progress` is called, from this thread, with the number of objects just checked.

        Example:
            >>> report = storage.fsck(full=True)  # doctest: +SKIP
            >>> [(p.digest[:12], p.kind, p.owners) for p in report.problems]  # doctest: +SKIP
            [('1a2b3c4d5e6f', 'missing', ('dataset/sales:2',))]
        """
        plan = plan if plan is not None else self.plan_fsck(full)

        def check_reference(ref: Reference) -> ObjectProblem | None:
            if len(ref.sizes) > 1:
                shown = ", ".join(str(s) for s in ref.sizes)
                return ObjectProblem(ref.digest, "size", f"metadata records sizes {shown}")
            return self._check(ref.digest, ref.sizes[0] if ref.sizes else None, plan.full)

        problems = [
            ObjectProblem(found.digest, found.kind, found.detail, ref.owners)
            for ref, found in self._parallel(plan.references, check_reference, progress)
            if found is not None
        ]
        warnings = [
            found
            for _, found in self._parallel(plan.unreferenced, self._check_unreferenced, progress)
            if found is not None
        ]
        return FsckReport(
            checked=len(plan.references),
            full=plan.full,
            problems=tuple(sorted(problems, key=lambda p: (p.kind, p.digest))),
            unreferenced_checked=len(plan.unreferenced),
            warnings=tuple(sorted(warnings, key=lambda p: p.digest)),
        )

    def _check_unreferenced(self, digest: str) -> ObjectProblem | None:
        found = self._check(digest, None, True)
        # Gone since the listing means gc took it: no concern for an object nothing refers to.
        return None if found is None or found.kind == "missing" else found

    def _check(self, digest: str, size: int | None, full: bool) -> ObjectProblem | None:
        try:
            detail = self.artifacts.check(digest, size, full)
        except NotFound:
            detail = "missing"
        except (MloopError, OSError) as exc:
            return ObjectProblem(digest, "unreadable", str(exc))
        if detail is None:
            return None
        return ObjectProblem(digest, _classify(detail), detail)

    # gc -----------------------------------------------------------------------------------
    def plan_gc(self, grace: float = DEFAULT_GRACE) -> GcReport:
        """What gc would remove now: unreferenced objects and temporary files older than `grace`.

        The store is listed before the references are read: an object stored after the listing
        is not a candidate, and one whose metadata was committed before the read is referenced.

        Example:
            >>> storage.plan_gc(grace=0).removed  # doctest: +SKIP
            (('9f8e7d6c5b4a…', 1024),)
        """
        if not grace >= 0:
            raise InvalidInput(
                f"the grace period must be 0 seconds or more, not {grace}",
                "the default, 3600, leaves writes in progress alone",
            )
        cutoff = time.time() - grace
        listed = list(self.artifacts.iter_objects())
        runs, datasets = self.metadata.housekeeping.purge_removed(cutoff, dry_run=True)
        expired = {_owner(b): b.id for b in self._expired()}
        referenced = {
            d
            for d, _, owner in self.metadata.housekeeping.referenced_objects(purged_before=cutoff)
            if owner not in expired
        }
        removable: list[tuple[str, int]] = []
        recent: list[int] = []
        for digest, size, modified in listed:
            if digest in referenced:
                continue
            if modified <= cutoff:
                removable.append((digest, size))
            else:
                recent.append(size)
        temporary: list[tuple[str, int]] = []
        backend = self.artifacts.backend
        if isinstance(backend, _TemporaryFiles):
            for path, modified in backend.list_temporary():
                if modified <= cutoff:
                    temporary.append((str(path), _file_size(path)))
        return GcReport(
            dry_run=True,
            grace=grace,
            cutoff=cutoff,
            referenced=len(referenced),
            removed=tuple(removable),
            temporary=tuple(sorted(temporary)),
            kept_recent=len(recent),
            kept_recent_bytes=sum(recent),
            purged_runs=tuple(runs),
            purged_datasets=tuple(datasets),
            expired_predictions=tuple(expired.values()),
        )

    def _expired(self) -> list[PredictionBatch]:
        """The prediction log's batches older than its retention (none without one)."""
        if self.prediction_retention is None:
            return []
        return self.metadata.predictions.expired(time.time() - self.prediction_retention)

    def gc(
        self,
        grace: float = DEFAULT_GRACE,
        dry_run: bool = False,
        progress: Progress = _no_progress,
        plan: GcReport | None = None,
    ) -> GcReport:
        """Purge and remove what `plan_gc` found (or, with `dry_run`, only say what that is).

        The removed records are purged first (one transaction, with an Event for each). Just
        before removing objects, the references are read once more and each local object's age
        is looked at again, so metadata committed (or restored) or an object re-written
        meanwhile keeps it.
        `progress` is called, from this thread, with the number of objects just handled.

        Example:
            >>> report = storage.gc(grace=3600)  # doctest: +SKIP
            >>> len(report.removed), report.removed_bytes  # doctest: +SKIP
            (3, 52_428_800)
        """
        plan = plan if plan is not None else self.plan_gc(grace)
        if dry_run:
            return plan
        event = Event(time.time(), self.actor, "purged", "", None, {"grace_seconds": plan.grace})
        runs, datasets = self.metadata.housekeeping.purge_removed(plan.cutoff, event=event)
        if plan.expired_predictions:
            self.metadata.predictions.remove(plan.expired_predictions)
            details = {
                "batches": len(plan.expired_predictions),
                "retention_seconds": self.prediction_retention,
            }
            self.metadata.events.append(
                Event(time.time(), self.actor, "predictions.expired", "predictions", None, details)
            )
        referenced = {digest for digest, _, _ in self.metadata.housekeeping.referenced_objects()}
        candidates = [item for item in plan.removed if item[0] not in referenced]

        def remove(item: tuple[str, int]) -> bool:
            path = self.artifacts.backend.local_path(key_of(item[0]))
            if path is not None and not _older(path, plan.cutoff):
                return False
            self.artifacts.delete(item[0])
            return True

        removed = [item for item, done in self._parallel(candidates, remove, progress) if done]
        temporary = []
        for name, size in plan.temporary:
            path = Path(name)
            if _older(path, plan.cutoff):
                path.unlink(missing_ok=True)
                temporary.append((name, size))
        report = GcReport(
            dry_run=False,
            grace=plan.grace,
            cutoff=plan.cutoff,
            referenced=len(referenced),
            removed=tuple(removed),
            temporary=tuple(temporary),
            kept_recent=plan.kept_recent,
            kept_recent_bytes=plan.kept_recent_bytes,
            purged_runs=tuple(runs),
            purged_datasets=tuple(datasets),
            expired_predictions=plan.expired_predictions,
        )
        if removed or temporary:  # deleting data is a change like any other: audit it
            details = {
                "objects": len(removed),
                "bytes": report.removed_bytes,
                "temporary_files": len(temporary),
                "grace_seconds": plan.grace,
            }
            event = Event(
                time.time(), self.actor, "artifacts.gc", self.artifacts.uri, None, details
            )
            self.metadata.events.append(event)
        return report

    # running many store requests at once ----------------------------------------------------
    def _parallel(
        self, items: Sequence[T], work: Callable[[T], R], progress: Progress
    ) -> list[tuple[T, R]]:
        """`work` on every item on a thread pool, a bounded number in flight; in item order."""
        if not items:
            return []
        results: dict[int, R] = {}
        window = self.workers * 4
        with ThreadPoolExecutor(self.workers, thread_name_prefix="mloop-housekeeping") as pool:
            pending: dict[Future[R], int] = {}
            for index, item in enumerate(items):
                pending[pool.submit(work, item)] = index
                if len(pending) >= window:
                    _collect(pending, results, progress)
            while pending:
                _collect(pending, results, progress)
        return [(item, results[i]) for i, item in enumerate(items)]


def _collect(pending: dict[Future[R], int], results: dict[int, R], progress: Progress) -> None:
    """Wait for at least one job, keep its result and report it done."""
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    for future in done:
        results[pending.pop(future)] = future.result()
    progress(len(done))


def _owner(batch: PredictionBatch) -> str:
    """How `referenced_objects` names a prediction batch (sql/housekeeping.py REFERENCES)."""
    return f"predictions/{batch.endpoint} {batch.model} batch {batch.id}"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _older(path: Path, cutoff: float) -> bool:
    """True when `path` exists and was last written at or before `cutoff`."""
    try:
        return os.stat(path).st_mtime <= cutoff
    except FileNotFoundError:
        return False
