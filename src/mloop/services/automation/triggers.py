"""Trigger checks a controller calls in its loop: each returns a record and never raises for
what the world does (a folder gone, a bucket refusing, a file half-written), so a loop keeps
running and says why; and `land`, what a fired `new_data` trigger does to its dataset.

A `new_data` check lists the watched path, reads only files that are new or changed since the
last check (what it saw is kept in the metadata store, `store.watched`, so a restarted
controller or the next lease holder does not re-read 10,000 old files), and counts the rows of
files whose content no version of the dataset holds. A file is new by its content, not its
name: a file that was landed before, or copied in under another name, is not new data.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from mloop.domain.dataset import DatasetVersion, FileEntry, next_version
from mloop.domain.event import Event
from mloop.domain.landing import (
    CheckStatus,
    NewDataCheck,
    NewFile,
    SkippedFile,
    WatchedFile,
    plan_reads,
)
from mloop.domain.signal import SignalCheck
from mloop.domain.trigger import (
    NewData,
    Schedule,
    Trigger,
    TriggerCheck,
    TriggerKind,
    check_pipelines,
    schedule_due,
)
from mloop.errors import InvalidInput, NotFound
from mloop.services.automation.landing import (
    NotATable,
    Unreachable,
    is_url,
    list_landed,
    open_landed,
    read_landed,
)

if TYPE_CHECKING:
    from mloop.domain.dataset import TableProfile
    from mloop.services.data.versioning import AddResult, DataService
    from mloop.store.metadata.protocol import MetadataStore


@dataclass(frozen=True, slots=True)
class _Held:
    latest: int  # the dataset's latest version when `digests` were read
    digests: frozenset[str]


class TriggerService:
    """Checks of `new_data` triggers and the landing of what they found."""

    def __init__(
        self,
        metadata: MetadataStore,
        data: DataService,
        *,
        root: Path,
        actor: str,
        triggers: Mapping[str, Sequence[Trigger]] | None = None,
        pipelines: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        signals: Mapping[TriggerKind, Callable[[Trigger], SignalCheck]] | None = None,
    ) -> None:
        """`triggers`: the project's (`settings.triggers`), checked against `pipelines` (the
        names under `pipelines:`) when all of them are checked; `signals`: the checks of the
        kinds that watch serving (`SignalService.checks`)."""
        self.signals = dict(signals or {})
        self.metadata = metadata
        self.triggers = dict(triggers or {})
        self.pipelines = tuple(pipelines)
        self.data = data
        self.root = root
        self.actor = actor
        self.clock = clock
        self._held: dict[str, _Held] = {}  # per dataset: its versions' file digests, as read
        # Per trigger, the store's watched files as this service last read or wrote them: a
        # loop's later checks skip reading 10,000 rows back. Only a cache: a stale entry (the
        # lease was held elsewhere meanwhile) has another size or stamp, so its file is read.
        self._seen: dict[str, dict[str, WatchedFile]] = {}

    # checking ----------------------------------------------------------------------------
    def check_all(self) -> list[TriggerCheck]:
        """Every trigger's state, acting on none: a schedule's next time (from now: when it
        last fired is the controller's to know), a new_data trigger's count, the verdict of
        a drift, accuracy or alertmanager check (every alert received, consumed or not).

        Raises:
            InvalidInput: a trigger names a pipeline the project does not declare.
        """
        from datetime import UTC, datetime

        check_pipelines(self.triggers, self.pipelines)
        found: list[TriggerCheck] = []
        for trigger in (t for items in self.triggers.values() for t in items):
            if isinstance(trigger.spec, Schedule):
                now = datetime.fromtimestamp(self.clock(), UTC)
                found.append(TriggerCheck(trigger, schedule_due(trigger.spec, None, now)))
            elif isinstance(trigger.spec, NewData):
                found.append(TriggerCheck(trigger, new_data=self.check_new_data(trigger)))
            elif trigger.kind in self.signals:
                found.append(TriggerCheck(trigger, signal=self.signals[trigger.kind](trigger)))
            else:
                found.append(TriggerCheck(trigger, note="checked by the controller"))
        return found

    def check_new_data(self, trigger: Trigger) -> NewDataCheck:
        """Count the rows in files under the trigger's path that no version of its dataset
        holds; `fired` when they reach the threshold. Reads only new or changed files that
        have settled; remembers what it saw for the next check.

        Example:
            >>> trigger = project.settings.triggers["train"][0]  # doctest: +SKIP
            >>> project.triggers.check_new_data(trigger).new_rows  # doctest: +SKIP
            1500
        """
        spec = _new_data(trigger)
        now = self.clock()
        try:
            listing = list_landed(spec.path, self.root)
        except Unreachable as exc:
            return NewDataCheck(
                trigger.key, spec.dataset, CheckStatus.UNREACHABLE, (), 0, spec.rows, False,
                error=str(exc), checked_at=now,
            )  # fmt: skip
        remembered = self._seen.get(trigger.key)
        if remembered is None:
            remembered = self._seen[trigger.key] = self.metadata.watched.files(trigger.key)
        plan = plan_reads(listing.files, remembered, now, spec.settle)
        skipped = [*listing.skipped, *plan.skipped]
        skipped += [SkippedFile(f.path, "still being written") for f in plan.pending]
        read: list[WatchedFile] = []
        for f in plan.to_read:
            try:
                found = read_landed(f.path)
            except (OSError, NotATable) as exc:
                skipped.append(SkippedFile(f.path, _reason(exc)))
                continue
            read.append(replace(f, digest=found.digest, rows=found.rows))
        changed = [*read, *(f for f in plan.pending if remembered.get(f.path) != f)]
        if changed or plan.gone:
            try:
                self.metadata.watched.save(trigger.key, changed, plan.gone)
            except BaseException:
                self._seen.pop(trigger.key, None)  # unsure what was saved: read it next time
                raise
            remembered.update((f.path, f) for f in changed)
            for path in plan.gone:
                del remembered[path]
        held = self._digests(spec.dataset)
        new: dict[str, NewFile] = {}
        fresh = [f for f in (*plan.known, *read) if f.digest not in held]
        for f in sorted(fresh, key=lambda f: f.path):
            if f.digest not in new:  # two copies count once
                new[f.digest] = NewFile(f.path, f.rows, f.digest)
        rows = sum(f.rows for f in new.values())
        return NewDataCheck(
            trigger.key, spec.dataset, CheckStatus.OK, tuple(new.values()), rows, spec.rows,
            rows >= spec.rows, tuple(skipped), checked_at=now,
        )  # fmt: skip

    def _digests(self, dataset: str) -> frozenset[str]:
        """Digests of every file of every version of `dataset`. A version's files never
        change, so only versions made since the last call are read (one summary query when
        none was), and only their file digests, never their records (a version's profiles can
        be megabytes). A version removed after it was read still counts until the next
        process: its files were the dataset's, and landing them again would make a duplicate
        version."""
        latest = next((d.latest for d in self.metadata.datasets.all() if d.name == dataset), 0)
        known = self._held.get(dataset)
        if known is not None and known.latest == latest:
            return known.digests
        kept = known is not None and known.latest < latest
        after = known.latest if known is not None and kept else 0
        digests = self.metadata.datasets.file_digests(dataset, after)
        if known is not None and kept:
            digests |= known.digests
        self._held[dataset] = _Held(latest, digests)
        return self._held[dataset].digests

    # landing -----------------------------------------------------------------------------
    def land(self, trigger: Trigger, check: NewDataCheck) -> AddResult:
        """Make the files a check found the dataset's next version: the latest version's
        files plus the landed ones (`LANDING_FOLDER/relative path`). Idempotent: files some
        version already holds are left out, and with none left the latest version is returned
        with `created` False. A file whose content changed since the check is left for the
        next check.
        """
        from mloop.services.data.versioning import AddResult

        spec = _new_data(trigger)
        if check.trigger != trigger.key:
            raise InvalidInput(f"{check.trigger} is not {trigger.key}", "land a check of it")
        held = self._digests(spec.dataset)  # with any version made since the check
        landing = [f for f in check.new_files if f.digest not in held]
        previous = self._latest(spec.dataset)
        if not landing:
            if previous is None:
                raise InvalidInput(
                    f"no new files for dataset {spec.dataset!r}", "land a check that fired"
                )
            return AddResult(previous, False, 0, 0)
        taken = {f.path for f in previous.files} if previous is not None else set()
        source = self._source(spec.path)
        entries: list[FileEntry] = []
        tables: list[TableProfile] = []
        warnings: list[str] = []
        new_objects = new_bytes = 0
        with tempfile.TemporaryDirectory(prefix="mloop-landing-") as scratch:
            for f in landing:
                name = _entry_path(spec.path, f, source, self.root, taken)
                local = _local_copy(f.path, Path(scratch))
                digest, size, stored = self.data.artifacts.put_path(local)
                if digest != f.digest:
                    warnings.append(f"{f.path}: changed since the check; left for the next one")
                    continue
                taken.add(name)
                entries.append(FileEntry(name, digest, size))
                new_objects += stored
                new_bytes += size if stored else 0
                tables += self._profile(local, name, warnings)
        if not entries:
            if previous is None:
                raise InvalidInput(f"every landed file changed since the check of {trigger.key}")
            return AddResult(previous, False, 0, 0, tuple(warnings))
        self.data.artifacts.sync()
        version = self._create(spec, trigger, previous, entries, tables, new_objects, check, source)
        return AddResult(version, True, new_objects, new_bytes, tuple(warnings))

    def _source(self, watched: str) -> str | None:
        """The watched folder as a dataset source (project-relative), when it is a folder in
        the project: `mloop data status` then finds the landed files where the version says."""
        from mloop.errors import InvalidPath
        from mloop.services.data.scan import source_of

        if is_url(watched):
            return None
        try:
            return source_of(self.data.boundary, self.root / watched)
        except InvalidPath:  # outside the project: the version names its files by the folder
            return None

    def _latest(self, dataset: str) -> DatasetVersion | None:
        try:
            return self.metadata.datasets.get_version(dataset, files=True)
        except NotFound:
            return None

    def _profile(self, local: Path, name: str, warnings: list[str]) -> list[TableProfile]:
        from mloop.services.data.profile import profile_table

        try:
            return [profile_table(local, name)]
        except InvalidInput as exc:
            warnings.append(f"{name}: not profiled: {exc.message}")
            return []

    def _create(
        self,
        spec: NewData,
        trigger: Trigger,
        previous: DatasetVersion | None,
        entries: Sequence[FileEntry],
        tables: Sequence[TableProfile],
        new_objects: int,
        check: NewDataCheck,
        source: str | None,
    ) -> DatasetVersion:
        rows = sum(f.rows for f in check.new_files if f.digest in {e.digest for e in entries})
        message = f"{len(entries)} landed files ({rows} rows) from {spec.path} by {trigger.key}"
        draft = next_version(
            spec.dataset, previous, entries, tables, created=self.clock(), user=self.actor,
            message=message, sources=_sources(previous, source),
        )  # fmt: skip
        event = Event(
            draft.created,
            self.actor,
            "dataset.version_created",
            f"dataset/{spec.dataset}",
            message,
            {
                "files": draft.file_count,
                "bytes": draft.total_size,
                "new_objects": new_objects,
                "trigger": trigger.key,
                "landed": len(entries),
                "rows": rows,
            },
        )
        return self.metadata.datasets.create_version(draft, event)


def _sources(previous: DatasetVersion | None, landing: str | None) -> tuple[str, ...]:
    before = previous.sources if previous is not None else ()
    return before if landing is None else tuple(sorted({*before, landing}))


def _new_data(trigger: Trigger) -> NewData:
    if not isinstance(trigger.spec, NewData):
        raise InvalidInput(f"{trigger.key} is not a new_data trigger", "pass a new_data trigger")
    return trigger.spec


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "gone since it was listed"
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or exc}"
    return str(exc)


def _entry_path(watched: str, f: NewFile, source: str | None, root: Path, taken: set[str]) -> str:
    """The landed file's path in the dataset: its project-relative path when the watched
    folder is in the project (as `mloop data add` names it), else under the folder's name
    (`landing/a.csv` from s3://bucket/landing/a.csv); a name the version already uses for
    other content gets the digest's start (`landing/a.0123456789ab.csv`)."""
    base = watched.rstrip("/")
    if source is not None:
        name = Path(f.path).resolve().relative_to(root.resolve()).as_posix()
    else:
        folder = PurePosixPath(base.split("://", 1)[-1]).name or "landing"
        start = len(base) if is_url(base) else len(str(root / base))
        name = f"{folder}/{f.path[start:].lstrip('/')}"
    if name in taken:
        path = PurePosixPath(name)
        name = str(path.with_name(f"{path.stem}.{f.digest[:12]}{path.suffix}"))
    return name


def _local_copy(path: str, scratch: Path) -> Path:
    """A local file to store and profile: the file itself, or a copy of a remote object."""
    if not is_url(path) or path.startswith("file://"):
        return Path(path.removeprefix("file://"))
    target = scratch / f"{len(os.listdir(scratch))}{PurePosixPath(path).suffix}"
    with open_landed(path) as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    return target
