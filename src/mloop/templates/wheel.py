"""The running mloop as a wheel, so a generated project installs the mloop that made it.

mloop is not on a package index, so `mloop==0.1.0` in a project's requirements cannot be
installed anywhere; the one source that exists wherever the project goes (a teammate's
machine, CI) is a file in the project itself. A user's install has no build backend
(hatchling and `build` are not mloop dependencies), `pip wheel` needs a source tree that a
regular install lacks, and an editable install's source tree may hold uncommitted changes
that a build would take anyway. So the wheel is assembled here from what is running: every
file of the `mloop` package folder (the same in an editable install and a regular one, minus
bytecode) and the installed distribution's METADATA and entry points, following the binary
distribution format (PEP 427): a zip with the package, then `NAME-VERSION.dist-info/` with
METADATA, WHEEL and a RECORD holding every file's sha256, placed last. Time stamps are fixed,
so the same mloop gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mloop.errors import MissingDependency

DISTRIBUTION = "mloop"
PACKAGE = Path(__file__).resolve().parent.parent  # the `mloop` folder this code runs from
TAG = "py3-none-any"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIPPED = {"__pycache__"}


@dataclass(frozen=True)
class Wheel:
    """A built wheel: its file name (`mloop-0.1.0-py3-none-any.whl`) and its bytes."""

    filename: str
    content: bytes


def wheel_name() -> str:
    """The file name of the running mloop's wheel, e.g. `mloop-0.1.0-py3-none-any.whl`.

    Raises:
        MissingDependency: mloop runs from a source folder that was never installed, so it
            has no METADATA to pack.

    Example:
        >>> wheel_name()  # doctest: +SKIP
        'mloop-0.1.0-py3-none-any.whl'
    """
    return f"{_stem(_installed())}-{TAG}.whl"


def running_wheel() -> Wheel:
    """The mloop that is running, packed as a pure-Python wheel.

    Raises:
        MissingDependency: as `wheel_name`.

    Example:
        >>> len(running_wheel().content) > 0  # doctest: +SKIP
        True
    """
    installed = _installed()
    dist_info = f"{_stem(installed)}.dist-info"
    members = [
        (path.relative_to(PACKAGE.parent).as_posix(), path.read_bytes())
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file() and not _SKIPPED & set(path.parts) and path.suffix != ".pyc"
    ]
    members.append((f"{dist_info}/METADATA", (installed.read_text("METADATA") or "").encode()))
    entry_points = installed.read_text("entry_points.txt")
    if entry_points:
        members.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    wheel = f"Wheel-Version: 1.0\nGenerator: mloop\nRoot-Is-Purelib: true\nTag: {TAG}\n"
    members.append((f"{dist_info}/WHEEL", wheel.encode()))
    record = "".join(f"{path},{_digest(data)},{len(data)}\n" for path, data in members)
    members.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    return Wheel(wheel_name(), _zip(members))


def _installed() -> metadata.Distribution:
    try:
        installed = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        installed = None
    if installed is None or not installed.read_text("METADATA"):
        raise MissingDependency(
            f"mloop at {PACKAGE} is not installed as a package, so it cannot be packed "
            "into the project for its requirements.txt",
            f"install it, then run init again: pip install -e {PACKAGE.parent.parent}",
        )
    return installed


def _stem(installed: metadata.Distribution) -> str:
    """`NAME-VERSION` with the name escaped as wheel file names need (`my_pkg`)."""
    name = re.sub(r"[-_.]+", "_", installed.metadata["Name"]).lower()
    return f"{name}-{installed.version}"


def _digest(data: bytes) -> str:
    """RECORD's hash form: `sha256=` and the urlsafe base64 digest without padding."""
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in members:
            entry = zipfile.ZipInfo(path, date_time=_EPOCH)
            entry.create_system = 3  # the same bytes whichever system packed it
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return out.getvalue()
