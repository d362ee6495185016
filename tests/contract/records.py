"""Records built straight from mloop.domain for the contract suites, as a service would build
them; the store numbers versions itself."""

from __future__ import annotations

import uuid
from datetime import datetime

from mloop.domain.dataset import DatasetVersion, FileEntry
from mloop.domain.digests import digest_bytes
from mloop.domain.event import Event
from mloop.domain.lineage import CodeVersion
from mloop.domain.run import Run, RunStatus
from mloop.store.metadata.protocol import MetadataStore

T0 = datetime(2026, 11, 1, 12, 0).timestamp()
DAY = 86_400.0
CODE = CodeVersion("0123456789abcdef0123456789abcdef01234567", "ab" * 32, "/srv/repo")
FINISHED = {"status": RunStatus.FINISHED, "ended": T0 + 1}
TOO_BIG = 2**63  # one past the largest 64-bit integer
HUGE = 10**20


def make_run(name: str = "run", **fields: object) -> Run:
    values: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "name": name,
        "status": RunStatus.RUNNING,
        "started": T0,
        "user": "ada",
        "code": CODE,
        "environment": "e" * 64,
    }
    values.update(fields)
    return Run(**values)  # type: ignore[arg-type]


def started(run: Run) -> Event:
    return Event(run.started, run.user, "run.started", f"run/{run.id}", None, {"name": run.name})


def add_run(store: MetadataStore, name: str = "run", **fields: object) -> Run:
    run = make_run(name, **fields)
    store.runs.create(run, started(run))
    return run


def digest(seed: str) -> str:
    return digest_bytes(seed.encode())


def version_of(name: str, *files: FileEntry, **fields: object) -> DatasetVersion:
    values: dict[str, object] = {
        "name": name,
        "version": 0,  # the store allocates the number
        "created": T0,
        "user": "ada",
        "message": "",
        "file_count": len(files),
        "total_size": sum(f.size for f in files),
        "files": files,
    }
    values.update(fields)
    return DatasetVersion(**values)  # type: ignore[arg-type]


def created(name: str) -> Event:
    return Event(T0, "ada", "dataset.version_created", f"dataset/{name}", "new data", {"n": 1})


def deleting(run_id: str) -> Event:
    return Event(T0 + 10, "bob", "run.deleted", f"run/{run_id}", "smoke test", {})


def add_family(store: MetadataStore) -> list[str]:
    """A pipeline run with two steps, the second with a child of its own; all ended. Returns
    their ids: parent, one, two, deep."""
    parent = add_run(store, "pipeline", **FINISHED)
    one = add_run(store, "one", parent_id=parent.id, **FINISHED)
    two = add_run(store, "two", parent_id=parent.id, **FINISHED)
    deep = add_run(store, "deep", parent_id=two.id, **FINISHED)
    return [parent.id, one.id, two.id, deep.id]
