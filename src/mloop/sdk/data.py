"""`mloop.data`: version datasets and read them back, recording use inside the active run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.errors import extras_named
from mloop.sdk import _open_project, active_run

if TYPE_CHECKING:
    from mloop.domain.dataset import DatasetVersion
    from mloop.services.data.checkout import LocalDataset


def add(
    name: str,
    paths: Sequence[str | Path] | str | Path,
    message: str = "",
    project: str | Path | None = None,
) -> DatasetVersion:
    """Snapshot files or folders as the next version of dataset `name`.

    Example:
        >>> mloop.data.add("sales", ["data/sales.csv"], message="January")  # doctest: +SKIP
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    run = active_run()
    with extras_named():
        data = _open_project(project).data
        result = data.add(name, [Path(p) for p in items], message, run_id=run.id if run else None)
    return result.version


def get(name: str, version: int | None = None, project: str | Path | None = None) -> LocalDataset:
    """A dataset version with local paths and `.to_pandas()`; inside a run, recorded as input.

    Example:
        >>> frame = mloop.data.get("sales").to_pandas()  # doctest: +SKIP
    """
    run = active_run()
    with extras_named():
        dataset = _open_project(project).data.open(name, version)
    if run is not None:
        run.log_input("dataset", dataset.version.ref)
    return dataset
