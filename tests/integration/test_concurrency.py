"""Many processes on one store at once, on SQLite and on PostgreSQL: all succeed, nothing is lost.

Each worker is a real Python process using the SDK, as eight training scripts on one machine (or
eight machines on one PostgreSQL) would. Workers import everything first, say "ready", and wait
for one start line on stdin, so they hit the store together rather than one after another.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from mloop.project import Project
from mloop.store import open_metadata_store
from mloop.store.metadata.sql import migrate
from mloop.store.metadata.sql.db import Database, sqlite_path

WORKERS = 8
RUNS = 4  # runs per worker
STEPS = 250  # steps per run, two metrics each: 2,000 values per worker
FLUSH_EVERY = 50  # steps between flushes: many small transactions interleave
TIMEOUT = 180

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

WORKER = textwrap.dedent(
    """
    import sys

    import mloop
    import mloop.services.tracking.runs
    import mloop.store.metadata.sql.store

    mode, worker, runs, steps, flush_every = sys.argv[1], *map(int, sys.argv[2:])
    if mode == "open":  # what migrating needs is imported before the start line, too
        import alembic.command
        import sqlalchemy
    print("ready", flush=True)
    sys.stdin.readline()

    if mode == "open":
        with mloop.start_run(f"opener-{worker}"):
            mloop.log_metric("worker", worker)
        sys.exit(0)
    for r in range(runs):
        with mloop.start_run(f"w{worker}-r{r}", params={"worker": worker}) as run:
            mloop.log_param("run", r)
            mloop.set_tag("kind", "stress")
            for step in range(steps):
                mloop.log_metric("loss", worker + r / 10 + step / 10_000, step=step)
                mloop.log_metric("acc", step / steps)
                if step % flush_every == flush_every - 1:
                    run.flush()
    """
)


def run_together(mode: str, root: Path) -> None:
    """Start WORKERS processes, release them at once, and require that every one exits 0."""
    args = [mode, "0", str(RUNS), str(STEPS), str(FLUSH_EVERY)]
    procs = []
    try:
        for worker in range(WORKERS):
            args[1] = str(worker)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, *args],
                    cwd=root,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            assert proc.stdout is not None and proc.stdin is not None
            line = proc.stdout.readline()  # blocks until the worker is ready (or has died)
            assert line == "ready\n", proc.communicate(timeout=TIMEOUT)[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        errors = [proc.communicate(timeout=TIMEOUT)[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = [(n, p.returncode, err) for n, (p, err) in enumerate(zip(procs, errors, strict=True))]
    assert [f for f in failed if f[1] != 0] == []


@pytest.mark.parametrize("store", STORES)
def test_eight_processes_logging_at_once_all_succeed_and_lose_nothing(
    make_project: Callable[..., Path], store: str
) -> None:
    root = make_project(store=store)
    open_metadata_store(Project.open(root).settings.store_uri).close()  # opening races below

    run_together("log", root)

    project = Project.open(root)
    try:
        tracking = project.runs
        found = tracking.find(sort="name")
        assert [r.name for r in found] == sorted(
            f"w{w}-r{r}" for w in range(WORKERS) for r in range(RUNS)
        )
        assert tracking.count("tags.kind = stress and status = finished") == WORKERS * RUNS
        total = 0
        for run in found:
            worker, r = (int(part[1:]) for part in run.name.split("-"))
            assert run.params == {"worker": str(worker), "run": str(r)}
            loss = tracking.metric_history(run.id, "loss")
            acc = tracking.metric_history(run.id, "acc")
            assert [(m.step, m.value) for m in loss] == [
                (step, worker + r / 10 + step / 10_000) for step in range(STEPS)
            ]
            assert [(m.step, m.value) for m in acc] == [(s, s / STEPS) for s in range(STEPS)]
            assert run.metrics["loss"].step == STEPS - 1
            total += len(loss) + len(acc)
        assert total == WORKERS * RUNS * STEPS * 2
    finally:
        project.close()


@pytest.mark.parametrize("store", STORES)
def test_eight_processes_opening_a_new_store_at_once_all_succeed(
    make_project: Callable[..., Path], store: str
) -> None:
    root = make_project(store=store)
    uri = Project.open(root).settings.store_uri
    if store == "sqlite":
        assert not sqlite_path(uri).exists()
    else:
        empty = Database(uri)
        assert empty.read(migrate.current_revision) is None
        empty.close()

    run_together("open", root)

    project = Project.open(root)
    try:
        found = project.runs.find(sort="name")
        assert [r.name for r in found] == [f"opener-{w}" for w in range(WORKERS)]
        assert all(r.metrics["worker"].value == int(r.name[-1]) for r in found)
        db = project.metadata.db
        assert db.read(migrate.current_revision) == migrate.HEAD
    finally:
        project.close()
