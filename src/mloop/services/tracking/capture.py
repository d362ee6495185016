"""Capture what made a run: the code version (git) and the environment (installed packages).

Both are captured for every top-level run, in every process, so both are kept cheap. The code
version costs one `git status` on a clean tree (plus `git diff` on a dirty one), and nothing
outside git. The environment is listed once per change of the environment: a machine-local
cache keyed by the interpreter and the `sys.path` folders' stat (installing or removing a
package renames, adds or removes a `*.dist-info` folder, which changes its folder's mtime)
gives the same listing without a folder read. Nothing from the cache is used unless its
checksum, its key and every folder's stat match; anything else is listed again.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from mloop.domain.lineage import CodeVersion, Environment

UNTRACKED_CONTENT_LIMIT = 1 << 20
GIT_TIMEOUT = 30
CACHE_FORMAT = 1
CACHE_FILES = 64
# Like the data stat cache: a folder modified less than this before it was read may change
# again within the same mtime tick, so such a listing is used but not cached.
RACY_NS = 1_000_000_000
# Variables that make git look somewhere other than the folders above the project.
_GIT_LOCATION_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")


# --- code version ---------------------------------------------------------------------------


def _git(root: Path, *args: str) -> bytes | None:
    import subprocess  # only when there is a repository to ask

    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, timeout=GIT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _ceilings() -> set[str]:
    """GIT_CEILING_DIRECTORIES as git reads it: absolute entries, resolved unless they follow
    an empty entry."""
    found: set[str] = set()
    resolve = True
    for entry in os.environ.get("GIT_CEILING_DIRECTORIES", "").split(os.pathsep):
        if not entry:
            resolve = False
        elif os.path.isabs(entry):
            found.add(os.path.realpath(entry) if resolve else os.path.normpath(entry))
    return found


def _plain_repository(git_dir: str) -> bool:
    """A `.git` folder git would take as the repository of its parent folder, with nothing in
    its config that moves the working tree elsewhere."""
    try:
        with open(os.path.join(git_dir, "config"), "rb") as config:
            moved = b"worktree" in config.read().lower()
    except OSError:
        return False
    return (
        not moved
        and os.path.isfile(os.path.join(git_dir, "HEAD"))
        and os.path.isdir(os.path.join(git_dir, "objects"))
        and os.path.isdir(os.path.join(git_dir, "refs"))
    )


def _find_repository(root: Path) -> tuple[bool, str | None]:
    """Whether git could find a repository for `root`, and its top folder when that is certain.

    Git looks for `.git` in `root` and each folder above it, never going up into a folder of
    GIT_CEILING_DIRECTORIES. When no such `.git` exists (and no GIT_DIR points elsewhere),
    there is no repository and no git process is needed. A plain `.git` folder gives the top
    folder; anything else (a `.git` file of a worktree or submodule, a config that moves the
    working tree) leaves the answer to `git rev-parse`.
    """
    if any(os.environ.get(name) for name in _GIT_LOCATION_ENV):
        return True, None
    ceilings = _ceilings()
    folder = os.path.realpath(root)
    while True:
        dot_git = os.path.join(folder, ".git")
        if os.path.isdir(dot_git):
            return True, folder if _plain_repository(dot_git) else None
        if os.path.lexists(dot_git):
            return True, None
        parent = os.path.dirname(folder)
        if parent == folder or parent in ceilings:
            return False, None
        folder = parent


def _parse_status(out: bytes) -> tuple[str | None, bool, list[bytes]]:
    """(HEAD's commit or None before the first commit, any tracked change, untracked paths)
    from `git status --porcelain=v2 --branch -z`; paths are relative to the top folder."""
    commit: str | None = None
    changed = False
    untracked: list[bytes] = []
    fields = iter(out.split(b"\0"))
    for field in fields:
        if field.startswith(b"# branch.oid "):
            oid = field[len(b"# branch.oid ") :].decode()
            commit = None if oid == "(initial)" else oid
        elif field.startswith(b"? "):
            untracked.append(field[2:])
        elif field[:2] in (b"1 ", b"u "):
            changed = True
        elif field.startswith(b"2 "):  # a rename or copy: its original path follows
            changed = True
            next(fields, None)
    return commit, changed, untracked


def capture_code(root: Path) -> CodeVersion:
    """The commit checked out at `root`, and a digest of every uncommitted change.

    The digest covers `git diff HEAD` and the content of untracked, unignored files (size and
    modification time for those over 1 MiB, which are data more often than code), so two runs
    share it exactly when their working trees are the same.
    """
    in_git, toplevel = _find_repository(root)
    if not in_git:
        return CodeVersion(None)
    status = _git(root, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
    if status is None:
        return CodeVersion(None)
    commit, changed, untracked = _parse_status(status)
    if commit is None:
        return CodeVersion(None)
    if toplevel is None:
        found = _git(root, "rev-parse", "--show-toplevel")
        if not found:
            return CodeVersion(None)
        toplevel = found.decode().strip()
    if not changed and not untracked:
        return CodeVersion(commit, None, toplevel)
    import blake3

    hasher = blake3.blake3()
    hasher.update(_git(root, "diff", "HEAD", "--binary") or b"")
    top = Path(toplevel)
    for name in sorted(untracked):
        path = top / name.decode()
        hasher.update(b"\0untracked\0" + name + b"\0")
        try:
            st = path.stat()
            if st.st_size <= UNTRACKED_CONTENT_LIMIT:
                hasher.update(path.read_bytes())
            else:  # large untracked files (data, usually): size and mtime, not a full read
                hasher.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            hasher.update(b"<unreadable>")
    return CodeVersion(commit, hasher.hexdigest(), toplevel)


# --- environment ----------------------------------------------------------------------------


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _list_folder(folder: str) -> tuple[list[str], bool]:
    """`name==version` of the distributions in one `sys.path` folder, and whether the answer
    depends only on the folder's entry names (so an unchanged folder mtime means the same).

    Installers name each `*.dist-info` folder `{name}-{version}` (PEP 376/427), so reading the
    folder names costs one listdir per path entry; parsing every METADATA file as
    `importlib.metadata` does took ~0.1 s per run here. Folders that do not follow the naming
    rule fall back to their metadata.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return [], True
    found: list[str] = []
    by_name_only = True
    for name in names:
        if name.endswith(".dist-info"):
            dist, sep, version = name[: -len(".dist-info")].partition("-")
        elif name.endswith(".egg-info"):
            dist, sep, version = name[: -len(".egg-info")].partition("-")
            version = version.split("-py", 1)[0]
        else:
            continue
        if sep and dist and version:
            found.append(f"{_normalise(dist)}=={version}")
            continue
        import importlib.metadata  # only for folders named against the rule

        by_name_only = False
        meta = importlib.metadata.PathDistribution(Path(folder, name)).metadata
        if meta["Name"] and meta["Version"]:
            found.append(f"{_normalise(meta['Name'])}=={meta['Version']}")
    return found, by_name_only


def _search_path() -> list[str]:
    return [os.path.abspath(entry or ".") for entry in sys.path]


def installed_packages() -> list[str]:
    """`name==version` of every distribution the interpreter can import, sorted."""
    return sorted({p for folder in _search_path() for p in _list_folder(folder)[0]})


def python_description() -> str:
    """`CPython 3.11.7 (linux)`: the interpreter, as an environment records it."""
    import platform

    return f"{platform.python_implementation()} {platform.python_version()} ({sys.platform})"


def default_cache_dir() -> Path | None:
    """The user's cache folder for mloop ($XDG_CACHE_HOME/mloop or ~/.cache/mloop)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "mloop") if os.path.isabs(base) else None


def _folder_stat(path: str, now_ns: int) -> list[int] | None:
    """What must stay equal for a folder's listing to be reused: mtime, inode, device and size;
    None for a missing folder, [] (matching nothing) for one modified too recently to trust."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_mtime_ns + RACY_NS >= now_ns:
        return []
    return [st.st_mtime_ns, st.st_ino, st.st_dev, st.st_size]


def _checksum(body: Any) -> int:
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _read_cache(file: Path, key: list[Any]) -> dict[str, Any] | None:
    """The cached body if it is intact, well formed and made for `key`; None otherwise."""
    try:
        entry = json.loads(file.read_bytes())
        body = entry["body"]
        if entry["check"] != _checksum(body) or body["key"] != key:
            return None
        folders, environment = body["folders"], body["environment"]
        if not (
            isinstance(body["python"], str)
            and isinstance(folders, list)
            and len(folders) == len(key[-1])
            and all(
                isinstance(f, list)
                and len(f) == 2
                and (f[0] is None or isinstance(f[0], list))
                and _strings(f[1])
                for f in folders
            )
            and _strings(environment[:3])
            and isinstance(environment[3], int)
        ):
            return None
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None  # missing, unreadable or damaged: list the folders again
    return body  # type: ignore[no-any-return]


def _write_cache(file: Path, body: dict[str, Any]) -> None:
    """Best effort and atomic: a cache that cannot be written costs the next run a listing.

    There is one file per interpreter and `sys.path` (scripts in other folders have other
    paths); past CACHE_FILES files, the least recently written go.
    """
    data = json.dumps({"body": body, "check": _checksum(body)}, separators=(",", ":"))
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, file)
        cached = sorted(file.parent.glob("environment-*.json"), key=lambda f: f.stat().st_mtime)
        for old in cached[:-CACHE_FILES]:
            old.unlink(missing_ok=True)
    except OSError:
        tmp.unlink(missing_ok=True)


def capture_environment(cache_dir: Path | None = None) -> tuple[Environment, bytes]:
    """Digest the interpreter and packages; returns the Environment and the package listing
    (the bytes its `packages_digest` names), which the caller stores when the store lacks it.

    With `cache_dir`, a `sys.path` folder whose stat has not changed since it was last listed
    is not listed again; when none has changed, nothing is listed or digested.
    """
    paths = _search_path()
    key: list[Any] = [CACHE_FORMAT, sys.executable, sys.version, sys.platform, paths]
    file = cached = None
    if cache_dir is not None:
        file = cache_dir / f"environment-{zlib.crc32(json.dumps(key).encode()):08x}.json"
        cached = _read_cache(file, key)
    now_ns = time.time_ns()
    # Each stat is taken before its folder is listed: a change after it shows as a new mtime.
    stats = [_folder_stat(path, now_ns) for path in paths]
    if (
        cached is not None
        and [] not in stats
        and [folder[0] for folder in cached["folders"]] == stats
    ):
        environment = Environment(*cached["environment"])
        packages = sorted({p for folder in cached["folders"] for p in folder[1]})
        return environment, "".join(p + "\n" for p in packages).encode()
    folders: list[list[Any]] = []
    for index, (path, stat) in enumerate(zip(paths, stats, strict=True)):
        if cached is not None and stat != [] and cached["folders"][index][0] == stat:
            folders.append(cached["folders"][index])
            continue
        found, by_name_only = _list_folder(path)
        folders.append([stat if by_name_only else [], found])
    from mloop.domain.digests import digest_bytes

    packages = sorted({p for folder in folders for p in folder[1]})
    listing = "".join(p + "\n" for p in packages).encode()
    python = cached["python"] if cached is not None else python_description()
    digest = digest_bytes(python.encode() + b"\n" + listing)
    environment = Environment(digest, python, digest_bytes(listing), len(packages))
    if file is not None:
        fields = [digest, python, environment.packages_digest, len(packages)]
        _write_cache(
            file, {"key": key, "python": python, "folders": folders, "environment": fields}
        )
    return environment, listing
