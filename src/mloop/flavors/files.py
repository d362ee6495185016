"""The files flavor: a `pathlib.Path` to a file or folder, copied into the bundle.

Only content and relative names are kept (not modes, owners or times), so the same tree gives
the same digest on any machine; empty sub-folders are listed in the metadata. Symbolic links
are copied as links and judged where the bundle is stored, by mloop's one rule (`store.walk`):
one leading inside the folder is followed and the bundle holds what it points to; one leading
out, dangling, looping or a special file is refused. Loading returns a Path to the local copy
the caller fetched, with its files made read-only, so a step that edits its input in place fails
loudly instead of silently no longer matching the digest it was given.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mloop.domain.names import check_relative_path
from mloop.errors import InvalidInput, InvalidPath
from mloop.flavors.protocol import JSON

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def _entry_name(meta: dict[str, JSON]) -> str:
    """The file or folder name in a manifest: exactly one safe path component."""
    name = meta.get("name")
    if not isinstance(name, str) or check_relative_path(name, "file name") != name or "/" in name:
        raise InvalidPath(f"the bundle names its file {name!r}, which is not a plain file name")
    return name


class FilesFlavor:
    """A file or folder, as itself; see the module docstring."""

    name = "files"
    requires_trust = False
    returns_paths = True

    def handles(self, obj: object) -> bool:
        return isinstance(obj, Path)

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        path = Path(obj)
        name = path.name if path.name not in ("", ".", "..") else (path.resolve().name or "root")
        _entry_name({"name": name})  # refuse now what could not be loaded later
        target = folder / name
        empty: list[JSON] = []
        if path.is_dir():
            try:
                shutil.copytree(path, target, symlinks=True)
            except (shutil.Error, OSError) as exc:
                # shutil.Error lists (source, copy, why) for every failure: name the first.
                failures = exc.args[0] if isinstance(exc, shutil.Error) else None
                why = failures[0][2] if isinstance(failures, list) and failures else exc
                raise InvalidInput(
                    f"cannot copy the folder {path}: {why}",
                    "remove special files (named pipes, sockets, devices) from the folder",
                ) from exc
            for parent, dirs, files in os.walk(target):
                if not dirs and not files:
                    empty.append(Path(parent).relative_to(folder).as_posix())
            kind = "folder"
        elif path.is_file():
            shutil.copyfile(path, target)
            kind = "file"
        else:
            raise InvalidInput(
                f"the step returned the path {path}, which is not a file or folder",
                "return a path that exists when the step finishes",
            )
        return {"kind": kind, "name": name, "empty_dirs": sorted(empty, key=str)}

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        name = _entry_name(meta)
        target = folder / name
        empty = meta.get("empty_dirs", [])
        for rel in empty if isinstance(empty, list) else []:
            if not isinstance(rel, str) or not check_relative_path(rel).startswith(f"{name}/"):
                raise InvalidPath(f"the bundle lists the folder {rel!r} outside {name!r}")
            (folder / check_relative_path(rel)).mkdir(parents=True, exist_ok=True)
        if meta.get("kind") == "folder":
            target.mkdir(exist_ok=True)  # a folder that was empty itself has no files
            for parent, _, files in os.walk(target):
                for file in files:
                    os.chmod(os.path.join(parent, file), READ_ONLY)
        elif target.is_file():
            os.chmod(target, READ_ONLY)
        else:
            raise InvalidInput(f"the bundle has no file {name!r}")
        return target


FLAVOR = FilesFlavor()
