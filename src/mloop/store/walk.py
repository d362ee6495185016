"""Reading the user's files into the stores: one rule for links and special files, one walk.

Whatever mloop snapshots or logs (dataset files, a logged folder, a folder a step returns or a
model packages) is found by `walk_files`, so one rule holds everywhere: a symbolic link whose
target resolves inside the boundary (the project) is followed and its content stored; a link
that leads outside it, a dangling link, a loop and a special file (FIFO, socket, device) are
refused with an error naming the path and the link's target, since silently storing
`/etc/passwd`, hanging on a FIFO or skipping files the user believes are versioned would all
be worse. Folders mloop manages (`.mloop/`, `.git/`, wherever the stores are configured) are
never walked into nor reached through a link, and checkout never writes into them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from mloop.errors import InvalidPath, StoreUnavailable
from mloop.store.metadata.sql.db import sqlite_path

MANAGED_NAMES = frozenset({".mloop", ".git"})
"""Folder names mloop never snapshots nor writes into from a manifest, at any depth."""

SQLITE_SIDECARS = (
    "",
    "-wal",
    "-shm",
    "-journal",
    ".lock",
)  # .lock: the migration lock (migrate.py)

_SPECIAL = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
_FIX = "copy the file into the project in its place, or remove the link"


def store_locations(store_uri: str, artifacts_uri: str) -> tuple[Path, ...]:
    """The local files and folders the stores live in, wherever they are configured: the
    artifact folder, and the SQLite database with the files SQLite keeps beside it (the
    database's folder itself may be the project, so only its files are named).

    Example:
        >>> store_locations("sqlite:////p/.mloop/mloop.db", "/p/.mloop/objects")[0]
        PosixPath('/p/.mloop/mloop.db')
    """
    found: list[Path] = []
    if store_uri.startswith("sqlite:"):
        with contextlib.suppress(StoreUnavailable):  # no file (in memory): nothing to protect
            database = str(sqlite_path(store_uri))
            found.extend(Path(database + suffix) for suffix in SQLITE_SIDECARS)
    if "://" not in artifacts_uri or artifacts_uri.startswith("file://"):
        found.append(Path(artifacts_uri.removeprefix("file://")))
    return tuple(found)


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


class Boundary(NamedTuple):
    """Where links may lead (`within`, described as `what`) and what is never read or written
    (`managed`). Paths are real (symlink-free) and absolute; `skip` holds folder names a walk
    passes over without a word (mloop's own, and caches such as `__pycache__`).
    """

    within: tuple[str, ...]
    managed: tuple[str, ...] = ()
    skip: frozenset[str] = frozenset()
    what: str = "the project"

    @classmethod
    def of(
        cls,
        within: Iterable[str | os.PathLike[str]],
        managed: Iterable[str | os.PathLike[str]] = (),
        skip: Iterable[str] = (),
        what: str = "the project",
    ) -> Boundary:
        return cls(
            tuple(_real(p) for p in within),
            tuple(dict.fromkeys(_real(p) for p in managed)),
            frozenset(skip),
            what,
        )

    @classmethod
    def project(
        cls,
        root: Path,
        stores: Iterable[str | os.PathLike[str]] = (),
        skip: Iterable[str] = MANAGED_NAMES,
    ) -> Boundary:
        """Links stay inside `root`; its `.mloop/`, `.git/` and the store locations are managed."""
        managed = [root / name for name in sorted(MANAGED_NAMES)] + list(stores)
        return cls.of([root], managed, skip, f"the project at {root}")

    def managing(self, real: str) -> str | None:
        """The managed location holding the real path `real`, if any."""
        for location in self.managed:
            if _under(real, location):
                return location
        return None

    def without(self, folder: Path) -> Boundary:
        """The same, less the managed locations that hold `folder` (mloop's own cache there)."""
        real = _real(folder)
        kept = tuple(m for m in self.managed if not _under(real, m))
        return Boundary(self.within, kept, self.skip, self.what)

    def shown(self, path: str) -> str:
        """`path` as the user knows it: relative to the first boundary folder when inside it."""
        base = self.within[0] if self.within else ""
        return path[len(base) + 1 :] if base and path.startswith(base + "/") else path

    # the rule ---------------------------------------------------------------------------------
    def follow(self, path: str, mode: int) -> tuple[str, os.stat_result]:
        """What the non-regular, non-folder entry `path` (of lstat mode `mode`) stands for:
        the real path and stat of a regular file or folder inside the boundary; else refuse."""
        if not stat.S_ISLNK(mode):
            raise _special(self.shown(path), mode)
        shown = f"{self.shown(path)} is a link to {os.readlink(path)}"
        try:
            real = os.path.realpath(path, strict=True)
            st = os.stat(real)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidPath(
                    f"{shown}, which loops back to itself", "remove the link"
                ) from None
            raise InvalidPath(
                f"{shown}, which does not exist", "remove the link, or restore what it points to"
            ) from None
        self.check_real(real, shown)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise _special(shown, st.st_mode, "which is")
        return real, st

    def check_real(self, real: str, shown: str) -> None:
        """Refuse a real path outside the boundary or inside what mloop manages; `shown` says
        how the user reached it ("data/x is a link to /etc/passwd")."""
        base = next((folder for folder in self.within if _under(real, folder)), None)
        if base is None:
            raise InvalidPath(f"{shown}, which is outside {self.what}", _FIX)
        location = self.managing(real)
        if location is not None or MANAGED_NAMES.intersection(real[len(base) :].split("/")):
            raise InvalidPath(
                f"{shown}, inside {self.shown(location or real)}, which mloop manages",
                "remove the link; link only to your own files",
            )


def _special(shown: str, mode: int, verb: str = "is") -> InvalidPath:
    kind = _SPECIAL.get(stat.S_IFMT(mode), "not a regular file")
    return InvalidPath(
        f"{shown}, {verb} {kind}" if verb != "is" else f"{shown} is {kind}, not a regular file",
        "move it out of the folder: mloop stores regular files and folders only",
    )


class Folder(NamedTuple):
    """One folder's regular files, as `walk_folders` found them."""

    path: str  # the folder as reached: under the top, through a link under the link's name
    names: list[str]  # its regular files (and links to regular files inside the boundary)
    stats: list[int]  # size, mtime_ns and inode of each name, in turn (three per name)


def walk_folders(top: str, boundary: Boundary) -> Iterator[Folder]:
    """Every folder under `top` (itself included) with its regular files, links followed by
    the rule; the one walk behind every scanner.

    Folders named in `boundary.skip` and managed locations are passed over. A link to a folder
    that holds the link itself (a loop the filesystem cannot see) is refused. The order is the
    filesystem's, the same from one walk of an unchanged tree to the next. Files come as
    columns, not records: `data status` walks 10,000 files in the time of their `lstat`s.

    Example:
        >>> found = walk_folders("/p/data", Boundary.project(Path("/p")))  # doctest: +SKIP
        >>> [f.names for f in found]  # doctest: +SKIP
        [['a.csv'], ['b.bin']]
    """
    skip = boundary.skip
    # (folder as shown, its real path, real folders where links were taken on the way)
    pending: list[tuple[str, str, tuple[str, ...]]] = [(top, _real(top), ())]
    while pending:
        folder, real_folder, chain = pending.pop()
        renamed = folder != real_folder  # reached through a link: the real paths differ
        # Managed locations below this folder; almost always none, so files cost nothing more.
        watch = tuple(m for m in boundary.managed if _under(m, real_folder))
        names: list[str] = []
        stats: list[int] = []
        name_of, stat_of = names.append, stats.extend
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    if watch and f"{real_folder}/{entry.name}" in watch:
                        continue
                    st = entry.stat(follow_symlinks=False)
                    name_of(entry.name)
                    stat_of((st.st_size, st.st_mtime_ns, st.st_ino))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    real = f"{real_folder}/{entry.name}" if renamed else entry.path
                    if entry.name not in skip and not any(_under(real, m) for m in watch):
                        pending.append((entry.path, real, chain))
                    continue
                target, st = boundary.follow(entry.path, entry.stat(follow_symlinks=False).st_mode)
                if stat.S_ISREG(st.st_mode):
                    name_of(entry.name)
                    stat_of((st.st_size, st.st_mtime_ns, st.st_ino))
                    continue
                taken = (*chain, real_folder)
                if any(_under(seen, target) for seen in taken):
                    raise InvalidPath(
                        f"{boundary.shown(entry.path)} is a link to {os.readlink(entry.path)}, "
                        "a folder that holds the link itself (a loop)",
                        "remove the link",
                    )
                pending.append((entry.path, target, taken))
        yield Folder(folder, names, stats)


def walk_files(top: str, boundary: Boundary) -> Iterator[str]:
    """The path of every regular file under the folder `top`, by `walk_folders`' rule; paths
    are spelled under `top` (a file reached through a link keeps the link's name)."""
    for folder in walk_folders(top, boundary):
        for name in folder.names:
            yield f"{folder.path}/{name}"


def resolve_file(path: str, boundary: Boundary) -> tuple[str, os.stat_result] | None:
    """A named file or folder by the same rule: (its real path, stat), or None when nothing
    is there. A link on the way (in the name itself or in a folder above) is checked like one
    met in a walk. Used for the sources of a dataset, which may be single files."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return boundary.follow(path, st.st_mode)
    real = _real(path)
    if real != path:
        boundary.check_real(real, f"{boundary.shown(path)} leads to {real}")
    return real, st
