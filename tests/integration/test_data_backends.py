"""Data versioning on every store combination, push/pull through S3, and crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import mloop
from tests.conftest import MLOOP, CliResult, run_mloop

BACKENDS = [
    pytest.param("sqlite", "local", id="sqlite-local"),
    pytest.param("postgres", "s3", id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    pytest.param("sqlite", "s3", id="sqlite-s3", marks=pytest.mark.s3),
    pytest.param("postgres", "local", id="postgres-local", marks=pytest.mark.postgres),
]


def make_data(root: Path, seed: int = 0, rows: int = 50) -> None:
    (root / "data/raw").mkdir(parents=True, exist_ok=True)
    lines = ["price,region"] + [
        f"{(i * 7 + seed) % 13 + 0.5},r{(i + seed) % 3}" for i in range(rows)
    ]
    (root / "data/sales.csv").write_text("\n".join(lines) + "\n")
    for i in range(5):
        (root / f"data/raw/part-{i}.bin").write_bytes(bytes([i + seed]) * (1000 + i))


@pytest.mark.parametrize(("store", "artifacts"), BACKENDS)
def test_version_read_and_restore_on_each_backend(
    make_project: Callable[..., Path], cli: Callable[..., CliResult], store: str, artifacts: str
) -> None:
    root = make_project(store=store, artifacts=artifacts)
    make_data(root)
    assert cli("data", "add", "sales", "data", "-m", "one").code == 0
    make_data(root, seed=1, rows=60)
    added = cli("data", "add", "sales", "data", "-m", "two")
    assert added.code == 0, added.err
    assert "sales:2" in added.out

    status = json.loads(cli("data", "status", "--json").out)
    assert status[0]["clean"] is True and status[0]["unchanged"] == 6

    frame = mloop.data.get("sales", version=1).to_pandas()
    assert len(frame) == 50 and list(frame.columns) == ["price", "region"]

    restored = cli("data", "checkout", "sales:1", "--to", "old")
    assert restored.code == 0, restored.err
    assert (root / "old/data/raw/part-3.bin").read_bytes() == bytes([3]) * 1003

    diff = json.loads(cli("data", "diff", "sales:1", "sales:2", "--json").out)
    assert len(diff["modified"]) == 6 and diff["tables"][0]["new_rows"] == 60
    fsck = cli("fsck", "--full")
    assert fsck.code == 0, fsck.out + fsck.err


@pytest.mark.s3
def test_push_then_pull_into_another_clone(
    make_project: Callable[..., Path],
    cli: Callable[..., CliResult],
    s3_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = make_project("first")
    make_data(first)
    assert cli("data", "add", "sales", "data").code == 0
    pushed = cli("data", "push", "--remote", s3_prefix)
    assert pushed.code == 0, pushed.err
    assert "6 objects" in pushed.out or "7 objects" in pushed.out
    again = json.loads(cli("data", "push", "--remote", s3_prefix, "--json").out)
    assert again["copied"] == 0 and again["present"] >= 6

    # A teammate: same metadata store, an empty local object store.
    second = make_project("second")
    monkeypatch.setenv("MLOOP_STORE_URI", f"sqlite:///{first / '.mloop/mloop.db'}")
    missing = cli("data", "checkout", "sales:1", "--to", "copy")
    assert missing.code == 1 and "mloop data pull" in missing.err
    (second / "mloop.yaml").write_text(f"project: second\nremote_uri: {s3_prefix}\n")
    pulled = cli("data", "pull", "sales:1")
    assert pulled.code == 0, pulled.err
    assert cli("data", "checkout", "sales:1", "--to", "copy").code == 0
    assert (second / "copy/data/sales.csv").read_bytes() == (first / "data/sales.csv").read_bytes()


@pytest.mark.s3
def test_pull_refuses_a_corrupt_remote_object(
    make_project: Callable[..., Path], cli: Callable[..., CliResult], s3_prefix: str
) -> None:
    import fsspec

    root = make_project()
    (root / "data").mkdir()
    (root / "data/a.txt").write_text("precious")
    cli("data", "add", "d", "data")
    cli("data", "push", "--remote", s3_prefix)
    digest = json.loads(cli("data", "show", "d", "--json").out)["files"][0]["digest"]
    fs, path = fsspec.core.url_to_fs(f"{s3_prefix}/{digest[:2]}/{digest[2:]}")
    fs.pipe_file(path, b"tampered")
    local = root / ".mloop/objects" / digest[:2] / digest[2:]
    local.unlink()
    result = cli("data", "pull", "--remote", s3_prefix)
    assert result.code == 1
    assert "corrupt" in result.err
    assert not local.exists()  # nothing unverified entered the local store


def test_sigkill_during_add_leaves_a_clean_store(project: Path) -> None:
    folder = project / "data/many"
    folder.mkdir(parents=True)
    for i in range(4000):
        (folder / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
    objects = project / ".mloop/objects"
    proc = subprocess.Popen(
        [*MLOOP, "data", "add", "many", "data/many"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if objects.is_dir() and sum(1 for _ in objects.glob("??/*")) > 200:
            break
    else:
        pytest.fail("data add finished before it could be interrupted; add more files")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    fsck = run_mloop("fsck", "--full", cwd=project)
    assert fsck.code == 0, fsck.out + fsck.err
    listing = run_mloop("data", "list", "--json", cwd=project)
    assert json.loads(listing.out) == []  # no half-registered version
    again = run_mloop("data", "add", "many", "data/many", cwd=project)
    assert again.code == 0, again.err
    assert "many:1: 4000 files" in again.out
    assert run_mloop("fsck", "--full", cwd=project).code == 0
