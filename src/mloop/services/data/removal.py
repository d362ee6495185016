"""Removing datasets and versions softly, as `dvc remove` users expect to be able to.

A removal hides the versions from `data list`, `data status` and `data show` and records an
Event; it is undone with `restore` until `mloop gc` purges the versions after its grace period
and removes the objects only they referred to. A version some registered model version was
trained on is refused without `force`, naming the model versions.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mloop.domain.event import Event
from mloop.services.data.versioning import parse_version_ref

if TYPE_CHECKING:
    from mloop.store.metadata.protocol import MetadataStore


def remove(
    metadata: MetadataStore,
    actor: str,
    ref: str,
    *,
    force: bool = False,
    reason: str | None = None,
) -> list[str]:
    """Remove dataset `ref` (every version) or version `ref` (`NAME:V`); returns the refs."""
    name, version = parse_version_ref(ref)
    now = time.time()
    event = Event(now, actor, "dataset.removed", f"dataset/{name}", reason, {"force": force})
    numbers = metadata.datasets.remove_versions(name, version, now, event, force=force)
    return [f"{name}:{n}" for n in numbers]


def restore(
    metadata: MetadataStore, actor: str, ref: str, *, reason: str | None = None
) -> list[str]:
    """Bring back a removed version, or every removed version of a dataset; returns the refs."""
    name, version = parse_version_ref(ref)
    event = Event(time.time(), actor, "dataset.restored", f"dataset/{name}", reason, {})
    return [f"{name}:{n}" for n in metadata.datasets.restore_versions(name, version, event)]
