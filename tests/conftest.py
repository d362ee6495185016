"""Shared fixtures: projects in temporary folders, the CLI in-process and as a real process.

`make_project(store=..., artifacts=...)` gives a fresh project on SQLite or a throwaway
PostgreSQL database, with artifacts in a local folder or on moto's S3 server; the servers are
started once per test session by the fixtures in `servers.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["tests.servers"]

MLOOP = [sys.executable, "-m", "mloop"]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never see the developer's MLOOP_* settings, nor write to their cache folder (the
    environment listing cache of runs)."""
    for name in list(os.environ):
        if name.startswith("MLOOP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def make_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Callable[..., Path]:
    """Create a project and chdir into it; returns its root.

    `store` is "sqlite" or "postgres"; `artifacts` is "local" or "s3". The settings go into the
    environment (MLOOP_STORE_URI / MLOOP_ARTIFACTS_URI), as a user would set them.
    """
    from mloop.project import init_project

    def make(name: str = "proj", store: str = "sqlite", artifacts: str = "local") -> Path:
        root, _ = init_project(tmp_path / name)
        if store == "postgres":
            monkeypatch.setenv("MLOOP_STORE_URI", request.getfixturevalue("postgres_db"))
        if artifacts == "s3":
            monkeypatch.setenv("MLOOP_ARTIFACTS_URI", request.getfixturevalue("s3_prefix"))
        monkeypatch.chdir(root)
        return root

    return make


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    """A fresh SQLite project with local artifacts, as `mloop init` makes it; cwd is its root."""
    return make_project()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `mloop ARGS` in-process (fast), returning exit code and output."""
    from mloop.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        cwd = os.getcwd()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse exits on a usage error, as the real command does
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(cwd)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_mloop(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> CliResult:
    """Run `python -m mloop ARGS` as its own process, as a user's shell would."""
    done = subprocess.run(
        [*MLOOP, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def mloop_process() -> Callable[..., CliResult]:
    return run_mloop
