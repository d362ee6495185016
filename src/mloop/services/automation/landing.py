"""Landed files: list a watched folder or bucket, and read a file's digest and row count in one
pass without loading it whole.

A local folder is listed with `os.scandir` (one stat per file, symbolic links skipped: a link in
a landing folder could lead anywhere); any other URL through fsspec, credentials and endpoints
coming from the usual environment, as for the artifact store. Rows: Parquet from its footer;
CSV by counting newlines while hashing, unless a quote or a blank line appears, when the `csv`
module counts records instead (a quoted field may hold a newline).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import IO, Any

import blake3

from mloop.domain.landing import Listed, SkippedFile

CHUNK = 1 << 20
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs"})
_SLOW_MARKS = (b'"', b"\n\n", b"\n\r\n")


class Unreachable(Exception):
    """The watched folder or bucket cannot be listed now (gone, refused, not installed)."""


@dataclass(frozen=True, slots=True)
class Listing:
    files: list[Listed]
    skipped: list[SkippedFile]


def is_url(path: str) -> bool:
    return "://" in path


def list_landed(path: str, root: Path) -> Listing:
    """Every file under `path` (a folder relative to `root`, or a URL) with its size and stamp.

    Raises:
        Unreachable: the folder is gone or not a folder, or the bucket answered an error.
    """
    if is_url(path) and not path.startswith("file://"):
        return _list_fsspec(path)
    top = root / path.removeprefix("file://")
    files: list[Listed] = []
    skipped: list[SkippedFile] = []
    try:
        _walk(str(top), files, skipped)
    except OSError as exc:
        reason = "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise Unreachable(f"{path}: {reason or exc}") from None
    return Listing(files, skipped)


def _walk(folder: str, files: list[Listed], skipped: list[SkippedFile]) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)  # one call: the listing's whole cost
            if S_ISREG(st.st_mode):
                files.append(Listed(entry.path, st.st_size, str(st.st_mtime_ns), st.st_mtime))
            elif S_ISDIR(st.st_mode):
                _walk(entry.path, files, skipped)
            elif S_ISLNK(st.st_mode):
                skipped.append(SkippedFile(entry.path, "a symbolic link (not followed)"))
            else:
                skipped.append(SkippedFile(entry.path, "not a regular file"))


def filesystem(url: str) -> tuple[Any, str]:
    """fsspec's file system for `url`, and the path within it."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        protocol = url.split("://", 1)[0]
        hint = "pip install 'mloop[s3]'" if protocol.startswith("s3") else "install its backend"
        raise Unreachable(f"cannot open {url}: {exc} ({hint})") from None
    return fs, root


def _list_fsspec(url: str) -> Listing:
    fs, top = filesystem(url)
    protocol = url.split("://", 1)[0]
    try:
        found = fs.find(top, detail=True)
        # An object store has no folders: an empty prefix is no files yet, and only a missing
        # bucket is a missing folder. Elsewhere the folder itself must be there.
        where = top.strip("/").split("/", 1)[0] if protocol in OBJECT_STORES else top
        if not found and not fs.isdir(where):
            raise FileNotFoundError(where)
    except Exception as exc:  # a client's own errors too (botocore, aiohttp)
        kind = "does not exist" if isinstance(exc, FileNotFoundError) else str(exc) or repr(exc)
        raise Unreachable(f"{url}: {kind}") from None
    files: list[Listed] = []
    for key, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            continue
        stamp = str(info.get("ETag") or info.get("etag") or info.get("mtime") or "")
        files.append(Listed(f"{protocol}://{key}", int(info["size"]), stamp, _modified(info)))
    return Listing(files, [])


def _modified(info: dict[str, Any]) -> float:
    for key in ("LastModified", "last_modified", "mtime", "created"):
        value = info.get(key)
        if value is None:
            continue
        timestamp = getattr(value, "timestamp", None)  # a datetime (S3's LastModified)
        return float(timestamp() if timestamp is not None else value)
    return 0.0  # no time known: counted as settled; its size is still compared between checks


def open_landed(path: str) -> IO[bytes]:
    if is_url(path) and not path.startswith("file://"):
        fs, inner = filesystem(path)
        handle: IO[bytes] = fs.open(inner, "rb")
        return handle
    return open(path.removeprefix("file://"), "rb")


@dataclass(frozen=True, slots=True)
class Reading:
    digest: str
    rows: int


class NotATable(Exception):
    """The file's content does not read as its suffix says (a broken Parquet footer)."""


def read_landed(path: str) -> Reading:
    """The file's BLAKE3 digest and rows (`_read`); a remote client's own errors (botocore,
    aiohttp) come out as OSError, so one bad object is skipped, not the loop stopped."""
    if not is_url(path) or path.startswith("file://"):
        return _read(path)
    try:
        return _read(path)
    except (OSError, NotATable):
        raise
    except Exception as exc:  # see above
        raise OSError(f"{type(exc).__name__}: {exc}") from None


def _read(path: str) -> Reading:
    """The file's BLAKE3 digest (the one its dataset entry would have) and its rows, reading
    it once (twice for a CSV with quotes or blank lines).

    Raises:
        OSError: the file cannot be read (gone since the listing, refused).
        NotATable: a Parquet file without a readable footer, or pyarrow missing.
    """
    hasher = blake3.blake3()
    with open_landed(path) as fh:
        if path.lower().endswith((".parquet", ".pq")):
            for chunk in _chunks(fh):
                hasher.update(chunk)
            return Reading(hasher.hexdigest(), _parquet_rows(fh))
        newlines = 0
        slow = False
        tail = b""
        last = b""
        for chunk in _chunks(fh):
            hasher.update(chunk)
            newlines += chunk.count(b"\n")
            if not slow:
                joined = tail + chunk
                slow = any(mark in joined for mark in _SLOW_MARKS) or joined.startswith(b"\n")
            tail = chunk[-2:]
            last = chunk[-1:]
    if slow:
        with open_landed(path) as fh:
            records = _csv_records(fh)
    else:
        records = newlines + (1 if last not in (b"", b"\n") else 0)
    return Reading(hasher.hexdigest(), max(records - 1, 0))  # the header is not a row


def _chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


def _parquet_rows(fh: IO[bytes]) -> int:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise NotATable(
            "pyarrow is needed to count Parquet rows: pip install 'mloop[data]'"
        ) from None
    try:
        fh.seek(0)
        return int(pq.ParquetFile(fh).metadata.num_rows)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise NotATable(f"not a readable Parquet file: {exc}") from None


def _csv_records(fh: IO[bytes]) -> int:
    """Records as the `csv` module reads them (quoted newlines inside a field), blank lines
    not counted; bytes that are not UTF-8 are replaced, as only quotes and newlines matter."""
    text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
    try:
        return sum(1 for record in csv.reader(text) if record)
    except csv.Error as exc:  # a field over the csv module's limit (128 KiB), a stray NUL
        raise NotATable(f"not a readable CSV file: {exc}") from None
