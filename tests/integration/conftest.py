"""Fixtures for the integration tests: the pipeline project (`pipeline_project.py`) in a test's
folder, with its dataset versioned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mloop
from tests.integration.pipeline_project import forget_project, write_project


@pytest.fixture
def pipes(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project with pipelines and a dataset; the user modules are forgotten afterwards so the
    next test imports its own copies."""
    write_project(project)
    monkeypatch.setenv("PIPES_TEST_COUNTER", str(project / "counter.txt"))
    mloop.data.add("sales", "data/sales.csv")
    yield project
    forget_project(project)
