"""Find the working files behind dataset sources: one scandir walk, one stat per file.

Files are found by the store's one walk (`mloop.store.walk`), so links and special files follow
the same rule here as everywhere mloop reads files in.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from mloop.domain.names import check_relative_path
from mloop.errors import InvalidPath
from mloop.store.walk import MANAGED_NAMES, Boundary, resolve_file, walk_files

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


def scan(boundary: Boundary, sources: list[str]) -> list[WorkingFile]:
    """Every regular file under the sources (files or folders), sorted by path; sources that
    no longer exist contribute nothing (their files show up as deleted)."""
    cut = len(boundary.within[0]) + 1
    found: dict[str, WorkingFile] = {}
    for source, path in _source_paths(boundary, sources):
        named = resolve_file(path, boundary)
        if named is None:
            continue
        if stat.S_ISDIR(named[1].st_mode):
            for file, st in walk_files(path, boundary):
                rel = file[cut:]
                found[rel] = WorkingFile(rel, file, st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            st = named[1]
            found[source] = WorkingFile(source, path, st.st_size, st.st_mtime_ns, st.st_ino)
    return [found[k] for k in sorted(found)]


def missing_sources(boundary: Boundary, sources: list[str]) -> list[str]:
    """The sources that are gone from the working tree (a dataset's advice must not name them)."""
    return [s for s, path in _source_paths(boundary, sources) if not os.path.lexists(path)]


class Comparison(NamedTuple):
    """One pass over the working files against a snapshot of their verified stats."""

    matched: int  # files whose stat equals the snapshot's (unchanged, without reading them)
    added: list[str]  # files the snapshot does not know
    doubtful: list[WorkingFile]  # files whose stat differs: compare their content


def compare_with_snapshot(
    boundary: Boundary, sources: list[str], snapshot: dict[str, list[int] | None]
) -> Comparison:
    """Walk the sources once, comparing each file's stat with `snapshot` as it goes.

    This is `data status`'s hot loop (10,000 files in a few tens of milliseconds): no record is
    built for a file whose stat matches, which is almost every file.
    """
    cut = len(boundary.within[0]) + 1
    added: list[str] = []
    doubtful: list[WorkingFile] = []
    matched = 0
    for source, path in _source_paths(boundary, sources):
        named = resolve_file(path, boundary)
        if named is None:
            continue
        files: Iterator[tuple[str, str, os.stat_result]]
        if stat.S_ISDIR(named[1].st_mode):
            files = ((file[cut:], file, st) for file, st in walk_files(path, boundary))
        else:
            files = iter([(source, path, named[1])])
        for rel, file, st in files:
            known = snapshot.get(rel, _ABSENT)
            if known is _ABSENT:
                added.append(rel)
            elif (
                known is not None
                and known[1] == st.st_mtime_ns
                and known[0] == st.st_size
                and known[2] == st.st_ino
            ):
                matched += 1
            else:
                doubtful.append(WorkingFile(rel, file, st.st_size, st.st_mtime_ns, st.st_ino))
    added.sort()
    return Comparison(matched, added, doubtful)


_ABSENT: list[int] = []
