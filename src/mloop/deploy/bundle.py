"""A model bundle of one version: `mloop export bundle NAME:V DIR`.

The folder serves with `mloop serve DIR` on a machine with no project and no store (the format
and its checks: `mloop.services.registry.bundle`). The container build context of
`mloop export docker` carries one, and so the image serves without a store too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.deploy import prepare_folder

if TYPE_CHECKING:
    from mloop.project import Project
    from mloop.services.registry.bundle import Bundle


def export_bundle(project: Project, ref: str, dest: Path, *, force: bool = False) -> Bundle:
    """Write the version `ref` names into `dest` (empty, or emptied of ours with `force`).

    Example:
        >>> export_bundle(project, "churn@champion", Path("out")).version.ref  # doctest: +SKIP
        'churn:2'
    """
    from mloop.services.registry.bundle import WRITTEN, write_bundle

    version = project.models.get(ref)
    existed = dest.exists()
    folder = prepare_folder(dest, force, WRITTEN, project.root)
    try:
        return write_bundle(project.models, version, folder)
    except BaseException:  # e.g. an object missing from the store: leave no half a bundle
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
