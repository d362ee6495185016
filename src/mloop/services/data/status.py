"""What changed in the working files since a dataset's latest version, as cheaply as it can be
known: one scan and one digest when nothing did (the common case), the per-file snapshot when
only new files appeared, the manifest and a hash of each file whose stat changed otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

from mloop.services.data.scan import Survey, WorkingFile, missing_sources, survey
from mloop.store.artifacts.hashing import hash_file
from mloop.store.statcache import Entry, Known, StatCache

if TYPE_CHECKING:
    from mloop.domain.dataset import DatasetVersion
    from mloop.store.metadata.protocol import MetadataStore
    from mloop.store.walk import Boundary


@dataclass(frozen=True, slots=True)
class StatusReport:
    name: str
    version: int
    added: tuple[str, ...]
    modified: tuple[str, ...]
    deleted: tuple[str, ...]
    unchanged: int
    sources: tuple[str, ...] = ()  # the latest version's sources
    missing_sources: tuple[str, ...] = ()  # those gone from the working tree

    @property
    def clean(self) -> bool:
        return not (self.added or self.modified or self.deleted)


def vouched(entry: tuple[int, int, int, str] | None, f: WorkingFile) -> TypeGuard[Entry]:
    """The snapshot vouches for `f`: a trusted entry with the very same stat."""
    return entry is not None and bool(entry[3]) and entry[:3] == (f.size, f.mtime_ns, f.inode)


class StatusCheck:
    """Status of one dataset after another, against one metadata store and stat cache."""

    def __init__(self, metadata: MetadataStore, stat_cache: StatCache, boundary: Boundary) -> None:
        self.metadata = metadata
        self.stat_cache = stat_cache
        self.boundary = boundary

    def status_of(self, name: str, latest: int) -> StatusReport:
        started = time.time_ns()
        snap = self.stat_cache.snapshot(name)
        if snap is None or snap.version != latest:
            version = self.metadata.datasets.get_version(name, latest, files=True)
            seen = survey(self.boundary, list(version.sources))
            known = self.stat_cache.known(list(version.sources))
            return self.verify(version, seen, known, started)
        seen = survey(self.boundary, snap.sources)
        if snap.scan and snap.scan == seen.digest:
            # The very files, with the very stats, that were verified equal to this version.
            return StatusReport(name, latest, (), (), (), snap.file_count, tuple(snap.sources))
        known = self.stat_cache.files(name)
        working = seen.files()
        added = [f.rel for f in working if f.rel not in known]
        matched = sum(1 for f in working if vouched(known.get(f.rel), f))
        if matched == snap.file_count and matched + len(added) == len(working):
            # Every file of the version is there with its verified stat; some are new.
            return StatusReport(name, latest, tuple(added), (), (), matched, tuple(snap.sources))
        version = self.metadata.datasets.get_version(name, latest, files=True)
        return self.verify(version, seen, known, started)

    def verify(
        self, version: DatasetVersion, seen: Survey, known: Known, started: int
    ) -> StatusReport:
        """Compare every working file with the manifest, hashing only what `known` cannot vouch
        for; then record the verified state for next time."""
        working = seen.files()
        # Files outside every source (landed from a bucket by a new_data trigger) were never
        # in the working tree: not there is not deleted.
        manifest = {f.path: f for f in version.files if _in_sources(f.path, version.sources)}
        added: list[str] = []
        modified: list[str] = []
        verified: list[tuple[str, int, int, int, str]] = []
        for f in working:
            entry = manifest.get(f.rel)
            if entry is None:
                added.append(f.rel)
                continue
            hit = known.get(f.rel)
            if vouched(hit, f):
                digest = hit[3]
            elif f.size != entry.size:
                modified.append(f.rel)
                continue
            else:
                digest = hash_file(f.path)
            if digest == entry.digest:
                verified.append((f.rel, f.size, f.mtime_ns, f.inode, digest))
            else:
                modified.append(f.rel)
        present = {f.rel for f in working}
        deleted = tuple(p for p in manifest if p not in present)
        exact = not (added or modified or deleted)
        self.stat_cache.save(
            version.name,
            version.version,
            list(version.sources),
            verified,
            count=len(manifest),
            verified_at=started,
            scan=seen.digest if exact else "",
        )
        gone = tuple(missing_sources(self.boundary, list(version.sources))) if deleted else ()
        return StatusReport(
            version.name,
            version.version,
            tuple(added),
            tuple(modified),
            deleted,
            len(verified),
            version.sources,
            gone,
        )


def _in_sources(path: str, sources: tuple[str, ...]) -> bool:
    """Whether the version's file `path` lies in one of its (project-relative) sources."""
    return any(path == src or path.startswith(src.rstrip("/") + "/") for src in sources)
