"""Capture what made a run: the code version (git) and the environment (installed packages)."""

from __future__ import annotations

import os
import pathlib
import platform
import re
import subprocess
import sys
from pathlib import Path

import blake3

from mloop.domain.digests import digest_bytes
from mloop.domain.lineage import CodeVersion, Environment
from mloop.store.artifacts.cas import ArtifactStore

UNTRACKED_CONTENT_LIMIT = 1 << 20


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def capture_code(root: Path) -> CodeVersion:
    """The commit checked out at `root`, and a digest of every uncommitted change.

    The digest covers `git diff HEAD` and the content of untracked, unignored files (size and
    modification time for those over 1 MiB, which are data more often than code), so two runs
    share it exactly when their working trees are the same.
    """
    head = _git(root, "rev-parse", "HEAD", "--show-toplevel")
    if head is None:
        return CodeVersion(None)
    commit, toplevel = head.decode().split()[:2]
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if not status:
        return CodeVersion(commit, None, toplevel)
    hasher = blake3.blake3()
    hasher.update(_git(root, "diff", "HEAD", "--binary") or b"")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--full-name")
    top = Path(toplevel)
    for name in sorted((untracked or b"").split(b"\0")):
        if not name:
            continue
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


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> list[str]:
    """`name==version` of every distribution the interpreter can import, sorted.

    Installers name each `*.dist-info` folder `{name}-{version}` (PEP 376/427), so reading the
    folder names costs one listdir per path entry; parsing every METADATA file as
    `importlib.metadata` does took ~0.1 s per run here. Folders that do not follow the naming
    rule fall back to their metadata.
    """
    found: set[str] = set()
    for entry in sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info"):
                dist, sep, version = name[: -len(".dist-info")].partition("-")
            elif name.endswith(".egg-info"):
                dist, sep, version = name[: -len(".egg-info")].partition("-")
                version = version.split("-py", 1)[0]
            else:
                continue
            if sep and dist and version:
                found.add(f"{_normalise(dist)}=={version}")
                continue
            import importlib.metadata  # only for folders named against the rule

            meta = importlib.metadata.PathDistribution(pathlib.Path(folder, name)).metadata
            if meta["Name"] and meta["Version"]:
                found.add(f"{_normalise(meta['Name'])}=={meta['Version']}")
    return sorted(found)


def capture_environment(artifacts: ArtifactStore) -> Environment:
    """Digest the interpreter and packages; store the full package list as an artifact."""
    packages = installed_packages()
    listing = "".join(p + "\n" for p in packages).encode()
    python = f"{platform.python_implementation()} {platform.python_version()} ({sys.platform})"
    packages_digest = artifacts.put_bytes(listing)
    digest = digest_bytes(python.encode() + b"\n" + listing)
    return Environment(digest, python, packages_digest, len(packages))
