"""Versioning datasets: snapshot files into a new DatasetVersion, and see what changed since.

`add` stores only content the artifact store lacks, hashing a file only when the stat cache
cannot vouch for it; all objects are made durable with one filesystem sync before the
metadata that refers to them is committed, so a crash leaves at worst unreferenced objects.
Both `add` and `status` leave a snapshot of what they verified (`store.statcache`), which is
what makes the next `status` of an unchanged tree one scan and one digest.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.domain.dataset import DatasetSummary, DatasetVersion, FileEntry, is_table_path
from mloop.domain.event import Event
from mloop.domain.names import DatasetRef, check_name
from mloop.errors import InvalidInput
from mloop.services.data.scan import WorkingFile, project_boundary, source_of, survey
from mloop.services.data.status import StatusCheck, vouched
from mloop.services.data.status import StatusReport as StatusReport  # for callers of status()
from mloop.store.statcache import Known, StatCache

if TYPE_CHECKING:
    from mloop.domain.dataset import TableProfile
    from mloop.services.data.checkout import CheckoutResult, LocalDataset
    from mloop.services.data.diff import VersionDiff
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.artifacts.transfer import TransferResult
    from mloop.store.metadata.protocol import MetadataStore

Progress = Callable[[int], None]


def _no_progress(n: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class AddResult:
    version: DatasetVersion
    created: bool  # False when the files equal the latest version's: nothing new was made
    new_objects: int
    new_bytes: int
    warnings: tuple[str, ...] = ()


def parse_version_ref(text: str) -> tuple[str, int | None]:
    """`sales`, `sales:3` or `dataset/sales:3` -> ("sales", 3): the parts of
    `DatasetRef.parse`, for callers that take them apart; aliases are for models."""
    ref = DatasetRef.parse(text)
    return ref.name, ref.version


class DataService:
    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: Callable[[], ArtifactStore],
        *,
        root: Path,
        actor: str,
        stat_cache: StatCache,
        checkout_cache: Path,
        stores: Sequence[Path] = (),
    ) -> None:
        """`stores`: the local files and folders of the stores (`store_locations`), which
        datasets never hold and checkout never writes into, wherever they are configured."""
        self.metadata = metadata
        self._open_artifacts = artifacts
        self.root = root
        self.boundary = project_boundary(root, tuple(stores))
        self.actor = actor
        self.stat_cache = stat_cache
        self.checkout_cache = checkout_cache

    @functools.cached_property
    def artifacts(self) -> ArtifactStore:
        """Opened on first use: `data status` never touches the artifact store."""
        return self._open_artifacts()

    # adding -------------------------------------------------------------------------------
    def add(
        self,
        name: str,
        paths: Sequence[str | Path],
        message: str = "",
        *,
        run_id: str | None = None,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> AddResult:
        """Snapshot files and folders as the next version of `name`.

        Example:
            >>> service.add("sales", [Path("data/sales.csv")], "January").version.ref
            'sales:1'
        """
        check_name(name, "dataset name")
        if not paths:
            raise InvalidInput("no paths to add", "give one or more files or folders")
        sources = sorted({source_of(self.boundary, p) for p in paths})
        started = time.time_ns()  # before any file is read: what the snapshot can vouch for
        seen = survey(self.boundary, sources)
        files = seen.files()
        if not files:
            raise InvalidInput(f"no files under {', '.join(sources)}", "add a folder with files")
        if on_total is not None:
            on_total(sum(f.size for f in files))
        known = self.stat_cache.known(sources)
        entries, new_objects, new_bytes = self._store(files, known, progress or _no_progress)
        previous = self._latest(name)
        if previous is not None and previous.files == tuple(entries):
            same = list(previous.sources) == sources  # else the walk was of other sources
            self._remember(previous, files, entries, started, seen.digest if same else "")
            return AddResult(previous, False, 0, 0)
        tables, warnings = self._profiles(entries, files, previous)
        self.artifacts.sync()
        draft = DatasetVersion(
            name=name,
            version=0,
            created=time.time(),
            user=self.actor,
            message=message,
            file_count=len(entries),
            total_size=sum(e.size for e in entries),
            sources=tuple(sources),
            tables=tables,
            files=tuple(entries),
            run_id=run_id,
        )
        event = Event(
            draft.created,
            self.actor,
            "dataset.version_created",
            f"dataset/{name}",
            message or None,
            {"files": draft.file_count, "bytes": draft.total_size, "new_objects": new_objects},
        )
        version = self.metadata.datasets.create_version(draft, event)
        self._remember(version, files, entries, started, seen.digest)
        return AddResult(version, True, new_objects, new_bytes, tuple(warnings))

    def _remember(
        self,
        version: DatasetVersion,
        files: list[WorkingFile],
        entries: list[FileEntry],
        started: int,
        scan: str,
    ) -> None:
        """Snapshot the files just stored: they are exactly `version`, in the same order."""
        self.stat_cache.save(
            version.name,
            version.version,
            list(version.sources),
            (
                (f.rel, f.size, f.mtime_ns, f.inode, e.digest)
                for f, e in zip(files, entries, strict=True)
            ),
            count=len(entries),
            verified_at=started,
            scan=scan,
        )

    def _latest(self, name: str) -> DatasetVersion | None:
        if not any(d.name == name for d in self.metadata.datasets.all()):
            return None
        return self.metadata.datasets.get_version(name, files=True)

    def _store(
        self, files: list[WorkingFile], known: Known, progress: Progress
    ) -> tuple[list[FileEntry], int, int]:
        """Store every file (in the given order), hashing only what `known` cannot vouch for;
        returns the manifest entries in the same order, and the count and bytes stored now."""
        put = self.artifacts.put_path
        entries: list[FileEntry] = []
        new_objects = new_bytes = 0
        # One thread: storing small files is a chain of system calls, and threads only add
        # GIL and directory-lock contention here (measured: 4 threads were 1.7x slower).
        for f in files:
            hit = known.get(f.rel)
            digest, size, new = put(f.path, hit[3] if vouched(hit, f) else None, f.size)
            entries.append(FileEntry(f.rel, digest, size))
            if new:
                new_objects += 1
                new_bytes += size
            progress(size)
        return entries, new_objects, new_bytes

    def _profiles(
        self,
        entries: list[FileEntry],
        files: list[WorkingFile],
        previous: DatasetVersion | None,
    ) -> tuple[tuple[TableProfile, ...], list[str]]:
        table_entries = [e for e in entries if is_table_path(e.path)]
        if not table_entries:
            return (), []
        from mloop.services.data.profile import profile_table

        reusable: dict[tuple[str, str], TableProfile] = {}
        if previous is not None:
            digests = {f.path: f.digest for f in previous.files}
            reusable = {(t.path, digests.get(t.path, "")): t for t in previous.tables}
        by_path = {f.rel: f for f in files}
        tables: list[TableProfile] = []
        warnings: list[str] = []
        for entry in table_entries:
            reused = reusable.get((entry.path, entry.digest))
            if reused is not None:
                tables.append(reused)
                continue
            try:
                tables.append(profile_table(Path(by_path[entry.path].path), entry.path))
            except InvalidInput as exc:
                warnings.append(f"{entry.path}: not profiled: {exc.message}")
        return tuple(tables), warnings

    # reading ------------------------------------------------------------------------------
    def find(self) -> list[DatasetSummary]:
        return self.metadata.datasets.all()

    def get(self, ref: str, files: bool = False) -> DatasetVersion:
        name, version = parse_version_ref(ref)
        return self.metadata.datasets.get_version(name, version, files=files)

    def versions(self, name: str) -> list[DatasetVersion]:
        return self.metadata.datasets.list_versions(check_name(name, "dataset name"))

    # removing (soft: `mloop gc` purges after its grace period) ----------------------------
    def remove(self, ref: str, *, force: bool = False, reason: str | None = None) -> list[str]:
        """Remove a dataset (`sales`) or one version (`sales:3`); returns the refs removed.

        A version a registered model version was trained on is refused unless `force`.

        Example:
            >>> data.remove("sales:3", reason="bad export")  # doctest: +SKIP
            ['sales:3']
        """
        from mloop.services.data.removal import remove

        return remove(self.metadata, self.actor, ref, force=force, reason=reason)

    def restore(self, ref: str, *, reason: str | None = None) -> list[str]:
        """Undo `remove` (before gc purges it): a dataset's removed versions, or one."""
        from mloop.services.data.removal import restore

        return restore(self.metadata, self.actor, ref, reason=reason)

    def diff(self, old: str, new: str) -> VersionDiff:
        from mloop.services.data.diff import diff_versions

        return diff_versions(self.get(old, files=True), self.get(new, files=True))

    # status -------------------------------------------------------------------------------
    def status(self, name: str | None = None) -> list[StatusReport]:
        """What changed in the working files since each dataset's latest version.

        Like git's index: a snapshot of the files' stats as last verified lets an unchanged
        tree be confirmed from one scan, without reading the manifest or hashing anything.
        """
        latest = {d.name: d.latest for d in self.find()}
        if name is not None and check_name(name, "dataset name") not in latest:
            self.metadata.datasets.get_version(name)  # raises the usual NotFound
        names = [name] if name else sorted(latest)
        check = StatusCheck(self.metadata, self.stat_cache, self.boundary)
        return [check.status_of(dataset, latest[dataset]) for dataset in names]

    # checkout and SDK access --------------------------------------------------------------
    def checkout(
        self,
        ref: str,
        to: Path | None = None,
        *,
        force: bool = False,
        progress: Progress | None = None,
    ) -> CheckoutResult:
        """Write a version's files back into the project (or into `to`), verified."""
        from mloop.services.data.checkout import check_target, checkout_version

        target = self.root if to is None else (Path.cwd() / to).resolve()
        if to is not None:
            check_target(target, self.boundary)
        version = self.get(ref, files=True)
        return checkout_version(
            self.artifacts,
            version,
            target,
            boundary=self.boundary,
            restore_sources=to is None,
            force=force,
            progress=progress or _no_progress,
        )

    def open(self, name: str, version: int | None = None) -> LocalDataset:
        from mloop.services.data.checkout import LocalDataset

        found = self.metadata.datasets.get_version(
            check_name(name, "dataset name"), version, files=True
        )
        return LocalDataset(found, self.artifacts, self.checkout_cache, self.boundary)

    # moving objects -----------------------------------------------------------------------
    def _digests(self, refs: Sequence[str]) -> list[str]:
        if not refs:
            return sorted(
                {digest for digest, _, _ in self.metadata.housekeeping.referenced_objects()}
            )
        wanted: set[str] = set()
        for ref in refs:
            name, version = parse_version_ref(ref)
            if version is None:  # a bare name: every version of the dataset
                for v in self.metadata.datasets.list_versions(name):
                    wanted.update(
                        f.digest
                        for f in self.metadata.datasets.get_version(
                            name, v.version, files=True
                        ).files
                    )
            else:
                wanted.update(f.digest for f in self.get(ref, files=True).files)
        return sorted(wanted)

    def push(
        self,
        refs: Sequence[str],
        remote: ArtifactStore,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> TransferResult:
        """Copy objects of the named versions (default: everything referenced) to `remote`;
        `on_total` hears how many objects are concerned before the copying starts."""
        return self._transfer(self.artifacts, remote, refs, progress, on_total)

    def pull(
        self,
        refs: Sequence[str],
        remote: ArtifactStore,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> TransferResult:
        """Fetch objects of the named versions (default: everything referenced) from `remote`."""
        return self._transfer(remote, self.artifacts, refs, progress, on_total)

    def _transfer(
        self,
        source: ArtifactStore,
        target: ArtifactStore,
        refs: Sequence[str],
        progress: Progress | None,
        on_total: Callable[[int], None] | None,
    ) -> TransferResult:
        from mloop.store.artifacts.transfer import transfer

        digests = self._digests(refs)
        if on_total is not None:
            on_total(len(digests))
        return transfer(source, target, digests, progress)
