"""Which OSErrors are the user's to fix, and what the CLI says about them (`cli/oserrors.py`).

Real OSErrors, as the OS raises them, against paths a command line could hold.
"""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

import pytest

from mloop.cli.oserrors import explain, given_paths
from mloop.errors import InvalidPath, StoreUnavailable


def raised(action: object, *args: object) -> OSError:
    with pytest.raises((FileNotFoundError, NotADirectoryError)) as caught:
        action(*args)  # type: ignore[operator]
    return caught.value


STORES = [("artifact store", Path("/srv/objects")), ("project's state folder", Path("/p/.mloop"))]


@pytest.mark.parametrize(
    ("given", "failing", "message"),
    [
        ("/proc/x/y", "/proc/x", "cannot use '/proc/x/y': No such file or directory (/proc/x)"),
        ("/proc/out", "/proc/out/a/b", "cannot use '/proc/out': No such file or directory"),
        ("/proc/p.csv", "/proc/.p.csv.1.tmp", "cannot use '/proc/p.csv': No such file or dir"),
        ("/proc/nope", "/proc/nope", "cannot use '/proc/nope': No such file or directory"),
    ],
    ids=["folder-above", "file-inside", "temporary-beside", "itself"],
)
def test_an_error_about_a_path_on_the_command_line_names_that_path(
    given: str, failing: str, message: str
) -> None:
    exc = raised(os.mkdir, failing)
    args = argparse.Namespace(output=Path(given), name="churn", chdir=None)

    error = explain(exc, given_paths(args), STORES)

    assert isinstance(error, InvalidPath)
    assert error.message.startswith(message)
    assert (
        error.hint == "check that it exists; for a new file or folder, that the folder above exists"
    )


def test_a_relative_path_is_matched_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    exc = raised(os.mkdir, "a-file/out")  # a file where a folder should be

    error = explain(exc, given_paths(argparse.Namespace(dest="a-file/out")), STORES)

    assert isinstance(error, InvalidPath)
    assert error.message == f"cannot use '{tmp_path}/a-file/out': Not a directory"
    assert error.hint == "a part of the path is a file, not a folder"


def test_an_error_inside_a_store_names_the_store_and_the_setting() -> None:
    exc = OSError(errno.EACCES, os.strerror(errno.EACCES), "/srv/objects/ab/cdef")

    error = explain(exc, [Path("/srv/objects/ab")], STORES)  # the store wins over an argument

    assert isinstance(error, StoreUnavailable)
    assert error.message == (
        "the artifact store at /srv/objects cannot be written: Permission denied "
        "(/srv/objects/ab/cdef)"
    )
    assert error.hint is not None and "`mloop config show`" in error.hint


def test_a_full_disk_is_an_error_even_without_a_path() -> None:
    full = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 - closed below
    with full, pytest.raises(OSError, match="No space left") as caught:
        full.write(b"x")  # a write to a full disk: the error holds no file name

    error = explain(caught.value, [], STORES)

    assert isinstance(error, StoreUnavailable)
    assert error.message == "cannot write: No space left on device"


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOENT, "No such file or directory", "/usr/lib/mloop-internal"),
        OSError(errno.EBADF, "Bad file descriptor"),
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
    ],
    ids=["another-path", "no-path", "broken-pipe"],
)
def test_any_other_oserror_stays_mloops_own(exc: OSError) -> None:
    args = argparse.Namespace(output=Path("/tmp/out.csv"), ref="churn:1")
    assert explain(exc, given_paths(args), STORES) is None
