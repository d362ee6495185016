"""OSErrors a user can fix, told apart from mloop's own.

An OSError about a path the user gave (an output file, a folder, `-C`) is theirs to fix: it is
named with the OS's reason and a hint. One inside the project's stores is the store's: the
message names the store and where its setting comes from. A full or read-only disk is nobody's
bug. Anything else stays an internal error, never hidden behind a friendly line.
"""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from mloop.errors import InvalidPath, MloopError, StoreUnavailable

# What to do about what the OS says; the reason itself is the OS's (strerror).
HINTS = {
    errno.ENOENT: "check that it exists; for a new file or folder, that the folder above exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file name",
    errno.EACCES: "you may not use it; choose a path you own, or change its permissions",
    errno.EPERM: "you may not use it; choose a path you own, or change its permissions",
    errno.EROFS: "it is on a read-only file system; choose a path on a writable one",
    errno.ENOSPC: "the disk is full; free some space, or choose a path on another disk",
    errno.EDQUOT: "your disk quota is used up; free some space, or choose another disk",
    errno.EEXIST: "something is already there; remove it or choose another path",
    errno.ENAMETOOLONG: "choose a shorter name",
}
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def current_folder() -> str | None:
    """The current folder, or None when it was removed while a shell was in it."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def path_error(
    given: str | os.PathLike[str], exc: OSError, failed: Path | None = None
) -> InvalidPath:
    """The error for a path the user gave; `failed` is where the OS failed, if elsewhere."""
    where = "" if failed is None or failed == Path(given) else f" ({failed})"
    reason = exc.strerror or str(exc)
    hint = HINTS.get(exc.errno or 0, "check the path and run the command again")
    return InvalidPath(f"cannot use {str(given)!r}: {reason}{where}", hint)


def explain(
    exc: OSError, given: Iterable[Path], stores: Iterable[tuple[str, Path]]
) -> MloopError | None:
    """The user's error in `exc`, or None when it is mloop's own (a bug, reported as one).

    `given` are the paths on the command line, `stores` the project's folders by label.
    """
    if isinstance(exc, BrokenPipeError):
        return None
    here = current_folder() or "/"
    failed = [
        Path(os.path.normpath(os.path.join(here, os.fsdecode(name))))
        for name in (exc.filename, exc.filename2)
        if isinstance(name, str | bytes | os.PathLike)
    ]
    reason = exc.strerror or str(exc)
    hint = HINTS.get(exc.errno or 0, "check the path and run the command again")
    for path in failed:
        for label, folder in stores:
            if _within(path, Path(os.path.normpath(folder))):
                where = "" if path == folder else f" ({path})"
                return StoreUnavailable(
                    f"the {label} at {folder} cannot be written: {reason}{where}",
                    f"{hint}; `mloop config show` says where the setting comes from",
                )
    for path in failed:
        for user_path in given:
            if _about(path, user_path):
                return path_error(user_path, exc, path)
    if not failed and exc.errno in FULL_DISK:
        return StoreUnavailable(f"cannot write: {reason}", hint)
    return None


def given_paths(args: argparse.Namespace) -> list[Path]:
    """Every text and path on the command line (but `-C`, handled where it is used), as an
    absolute path: most are not paths, and match nothing."""
    here = current_folder()
    return [] if here is None else list(_paths_in(args, here))


def _paths_in(args: argparse.Namespace, here: str) -> Iterator[Path]:
    for dest, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if dest != "chdir" and isinstance(item, str | Path) and str(item) not in ("", "-"):
                yield Path(os.path.normpath(os.path.join(here, os.path.expanduser(item))))


def _about(path: Path, user_path: Path) -> bool:
    """Whether an OSError on `path` is about `user_path`: the path itself, a file in it, a
    folder above it that could not be made, or a temporary file beside it (written, then
    renamed over it, as every output is)."""
    return (
        _within(path, user_path)
        or _within(user_path, path)
        or (
            path.parent == user_path.parent and user_path.name != "" and user_path.name in path.name
        )
    )


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
