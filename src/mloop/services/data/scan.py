"""Find the working files behind dataset sources: one scandir walk, one stat per file.

Files are found by the store's one walk (`mloop.store.walk`), so links and special files follow
the same rule here as everywhere mloop reads files in.
"""

from __future__ import annotations

import marshal
import os
import stat
from pathlib import Path
from typing import NamedTuple

from mloop.domain.digests import digest_bytes
from mloop.domain.names import check_relative_path
from mloop.errors import InvalidPath
from mloop.store.walk import MANAGED_NAMES, Boundary, resolve_file, walk_folders

SKIP_DIRS = MANAGED_NAMES | {".dvc", "__pycache__"}


class WorkingFile(NamedTuple):
    rel: str  # project-relative POSIX path, the manifest key
    path: str  # absolute path
    size: int
    mtime_ns: int
    inode: int


def project_boundary(root: Path, stores: tuple[Path, ...] = ()) -> Boundary:
    """What a dataset may hold: files inside `root`, never mloop's own folders or stores."""
    return Boundary.project(root, stores, SKIP_DIRS)


def source_of(boundary: Boundary, given: str | os.PathLike[str]) -> str:
    """The project-relative POSIX form of a path the user gave, refusing empty paths, the
    project itself, paths outside it and the folders mloop manages."""
    root = Path(boundary.within[0])
    if not os.fspath(given):
        raise InvalidPath(
            "the path is empty", "name the data folder or files, e.g. `mloop data add NAME data/`"
        )
    given = Path(given)
    absolute = (Path.cwd() / given).resolve()
    try:
        rel = absolute.relative_to(root)
    except ValueError:
        raise InvalidPath(
            f"{given} is outside the project at {root}",
            "datasets hold files inside the project folder; copy or move the data there",
        ) from None
    if not rel.parts:
        raise InvalidPath(
            f"{given} is the whole project, not a data folder",
            "name the data folder or files, e.g. `mloop data add NAME data/`",
        )
    _check_unmanaged(boundary, rel.as_posix(), str(given))
    if not absolute.exists():
        raise InvalidPath(f"{given} does not exist", "check the path (it is relative to here)")
    return rel.as_posix()


def _check_unmanaged(boundary: Boundary, rel: str, shown: str) -> None:
    parts = rel.split("/")
    named = next((part for part in parts if part in SKIP_DIRS), None)
    location = boundary.managing(os.path.join(boundary.within[0], rel))
    if named is not None or location is not None:
        where = f"{named}/" if named is not None else boundary.shown(location or "")
        raise InvalidPath(
            f"{shown} is inside {where}, which mloop manages",
            "add your own data folders, such as data/",
        )


def _source_paths(boundary: Boundary, sources: list[str]) -> list[tuple[str, str]]:
    """(source, absolute path) of a version's sources, which a manifest written by others
    names: each must stay inside the project and out of what mloop manages."""
    base = boundary.within[0]
    found = []
    for source in sources:
        if source == ".":  # versions made before the project root was refused as a source
            found.append((source, base))
            continue
        rel = check_relative_path(source, "dataset source")
        _check_unmanaged(boundary, rel, rel)
        found.append((rel, f"{base}/{rel}"))
    return found


class Survey(NamedTuple):
    """One walk of a dataset's sources: the files as columns per folder, and their digest."""

    folders: list[tuple[str, str, list[str], list[int]]]  # (rel folder, path, names, stats)
    digest: str  # of every (rel folder, names, stats) in walk order: equal means unchanged

    def files(self) -> list[WorkingFile]:
        """Every file as a record, sorted by path (a file two sources hold appears once)."""
        found: dict[str, WorkingFile] = {}
        for prefix, folder, names, stats in self.folders:
            column = iter(stats)
            for name, size, mtime_ns, inode in zip(names, column, column, column, strict=True):
                rel = f"{prefix}/{name}" if prefix else name
                found[rel] = WorkingFile(rel, f"{folder}/{name}", size, mtime_ns, inode)
        return [found[k] for k in sorted(found)]


def survey(boundary: Boundary, sources: list[str]) -> Survey:
    """Walk the sources once, keeping each folder's files as columns and a digest of them all.

    The digest is what lets `data status` confirm an unchanged tree without building a record
    per file: the columns are serialised whole (marshal, version 2: no back-references, so the
    same values always give the same bytes) and hashed once.
    """
    base = boundary.within[0]
    cut = len(base) + 1
    folders: list[tuple[str, str, list[str], list[int]]] = []
    for source, path in _source_paths(boundary, sources):
        named = resolve_file(path, boundary)
        if named is None:
            continue  # a source that is gone: its files show up as deleted
        if stat.S_ISDIR(named[1].st_mode):
            for folder in walk_folders(path, boundary):
                prefix = folder.path[cut:] if folder.path != base else ""
                folders.append((prefix, folder.path, folder.names, folder.stats))
        else:
            st = named[1]
            prefix, _, name = source.rpartition("/")
            columns = [st.st_size, st.st_mtime_ns, st.st_ino]
            folders.append((prefix, os.path.dirname(path), [name], columns))
    serial = b"".join(marshal.dumps((p, names, stats), 2) for p, _, names, stats in folders)
    return Survey(folders, digest_bytes(serial))


def scan(boundary: Boundary, sources: list[str]) -> list[WorkingFile]:
    """Every regular file under the sources (files or folders), sorted by path; sources that
    no longer exist contribute nothing (their files show up as deleted)."""
    return survey(boundary, sources).files()


def missing_sources(boundary: Boundary, sources: list[str]) -> list[str]:
    """The sources that are gone from the working tree (a dataset's advice must not name them)."""
    return [s for s, path in _source_paths(boundary, sources) if not os.path.lexists(path)]
