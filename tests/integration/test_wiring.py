"""One wiring point: only `mloop.project` opens the stores and builds services; a worker
process is sent the picklable settings and builds its own services through the same code."""

from __future__ import annotations

import ast
import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mloop
from mloop.project import Project, StepServices
from mloop.services.pipelines.worker import Services

SRC = Path(mloop.__file__).parent
OPENERS = {"open_metadata_store", "open_artifact_store", "store_locations", "STATE_DIR"}


def _work_in_a_worker(open_services: Callable[[], Services]) -> tuple[str, str]:
    """What a step's worker does first: build its services, then record and store."""
    services = open_services()
    with services.runs.start("in-a-worker") as run:
        digest = services.artifacts.put_bytes(b"made in a worker process")
    services.artifacts.sync()
    return run.id, digest


def test_a_worker_process_builds_the_projects_services_from_the_pickled_settings(
    project: Path,
) -> None:
    (project / "meta").mkdir()
    (project / "mloop.yaml").write_text(
        "project: wired\nstore_uri: sqlite:///meta/elsewhere.db\nartifacts_uri: ../objects\n",
        encoding="utf-8",
    )
    opened = Project.open()
    opener = opened.pipelines.runner.open_services  # what the runner sends with each step
    assert isinstance(opener, StepServices)
    assert pickle.loads(pickle.dumps(opener)) == opener  # noqa: S301 (bytes made just above)
    acting = StepServices(opened.settings, "robot")  # a worker acts for whoever sent the step
    context = multiprocessing.get_context("forkserver")  # a fresh interpreter, as workers are
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        run_id, digest = pool.submit(_work_in_a_worker, acting).result(timeout=120)
    seen = Project.open()
    assert seen.runs.get(run_id).user == "robot"  # in the project's metadata store
    assert seen.artifacts.read_bytes(digest) == b"made in a worker process"
    assert (project / "meta" / "elsewhere.db").is_file()
    assert any((project.parent / "objects").iterdir())  # the artifact store mloop.yaml names


def test_only_the_wiring_layer_opens_stores() -> None:
    """Services and executors are handed their stores; none opens one from a URI or a path."""
    found = []
    for package in ("services", "executors"):
        for path in sorted((SRC / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom):
                    names = {alias.name for alias in node.names} & OPENERS
                    found += [f"{path.relative_to(SRC)}: {name}" for name in sorted(names)]
                elif isinstance(node, ast.Constant) and node.value == ".mloop":
                    found.append(f"{path.relative_to(SRC)}: '.mloop'")
    assert found == []
