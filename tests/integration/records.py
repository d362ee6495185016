"""Dataset versions written straight into a project's stores, for tests that need lineage data
without going through `mloop data add` (the data service has its own tests)."""

from __future__ import annotations

import time
from pathlib import Path

from mloop.domain.dataset import DatasetVersion, FileEntry
from mloop.domain.event import Event
from mloop.project import Project


def add_dataset_version(
    root: Path, name: str, files: dict[str, bytes], run_id: str | None = None
) -> DatasetVersion:
    """Store `files` (relative path -> content) as the next version of dataset `name`."""
    project = Project.open(root)
    try:
        staging = root / ".staging" / name
        entries = []
        for rel, content in sorted(files.items()):
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            digest, size, _ = project.artifacts.put_path(path)
            entries.append(FileEntry(rel, digest, size))
        project.artifacts.sync()
        now = time.time()
        version = DatasetVersion(
            name=name,
            version=0,  # the store numbers versions
            created=now,
            user="tester",
            message="",
            file_count=len(entries),
            total_size=sum(e.size for e in entries),
            files=tuple(entries),
            run_id=run_id,
        )
        event = Event(now, "tester", "dataset.version_created", f"dataset/{name}")
        return project.metadata.datasets.create_version(version, event)
    finally:
        project.close()


def object_path(root: Path, digest: str) -> Path:
    """Where the local artifact store keeps the object `digest`."""
    return root / ".mloop" / "objects" / digest[:2] / digest[2:]
