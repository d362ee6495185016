"""Find the working files behind dataset sources: one scandir walk, one stat per file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from mloop.errors import InvalidPath

SKIP_DIRS = {".mloop", ".git", ".dvc", "__pycache__"}


class WorkingFile(NamedTuple):
    rel: str  # project-relative POSIX path, the manifest key
    path: str  # absolute path
    size: int
    mtime_ns: int
    inode: int


def source_of(root: Path, given: Path) -> str:
    """The project-relative POSIX form of a path the user gave, refusing paths outside."""
    absolute = (Path.cwd() / given).resolve() if not given.is_absolute() else given.resolve()
    try:
        rel = absolute.relative_to(root)
    except ValueError:
        raise InvalidPath(
            f"{given} is outside the project at {root}",
            "datasets hold files inside the project folder; copy or move the data there",
        ) from None
    if not absolute.exists():
        raise InvalidPath(f"{given} does not exist", "check the path (it is relative to here)")
    if any(part in SKIP_DIRS for part in rel.parts):
        raise InvalidPath(
            f"{given} is inside {rel.parts[0]}/, which mloop manages",
            "add your own data folders, such as data/",
        )
    return rel.as_posix() if rel.parts else "."


def _walk(root: str, folder: str, out: list[WorkingFile]) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIP_DIRS:
                    _walk(root, entry.path, out)
            elif entry.is_file():
                st = entry.stat()
                rel = entry.path[len(root) + 1 :]
                out.append(WorkingFile(rel, entry.path, st.st_size, st.st_mtime_ns, st.st_ino))


def scan(root: Path, sources: list[str]) -> list[WorkingFile]:
    """Every regular file under the sources (files or folders), sorted by path; sources that
    no longer exist contribute nothing (their files show up as deleted)."""
    base = str(root)
    found: list[WorkingFile] = []
    for source in sources:
        path = base if source == "." else os.path.join(base, source)
        if os.path.isdir(path):
            _walk(base, path, found)
        elif os.path.isfile(path):
            st = os.stat(path)
            found.append(WorkingFile(source, path, st.st_size, st.st_mtime_ns, st.st_ino))
    unique = {f.rel: f for f in found}
    return [unique[k] for k in sorted(unique)]
