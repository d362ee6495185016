"""Exporters (layer 4): turn a model version's records into files other tools run.

`bundle.py` writes a model bundle (the version's record and files, served with no store);
`docker.py` writes a self-contained container build context serving such a bundle;
`kubernetes.py` writes the manifests that run that image on a cluster; this module holds what
they share: resolving the ref and preparing the folder. Exporters sit one layer below the CLI
(it calls them; they never import it), read through the project's services (never a store
directly), and only write files: nothing here builds an image, starts a process or talks to a
cluster, so an export works on a machine without Docker or kubectl, and its output can be
reviewed as text.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.errors import Conflict, InvalidPath

if TYPE_CHECKING:
    from mloop.domain.model import ModelVersion
    from mloop.project import Project


def resolve(project: Project, ref: str) -> tuple[ModelVersion, str]:
    """The version `ref` names, and the ref the exported files are named by.

    An alias is kept as written (`churn@champion`), to say in the files which name was
    exported; a bare name is pinned to the version it resolves to now (`churn` -> `churn:3`).
    Either way the export holds that one version, so a later registration or a moved alias
    does not change what an image serves.

    Example:
        >>> resolve(project, "churn")  # doctest: +SKIP
        (ModelVersion(name='churn', version=3, ...), 'churn:3')
    """
    from mloop.services.registry.models import parse_model_ref

    name, _, alias = parse_model_ref(ref)
    version = project.models.get(ref)
    return version, f"{name}@{alias}" if alias else version.ref


def prepare_folder(dest: Path, force: bool, written: Iterable[str], project_root: Path) -> Path:
    """Make `dest` ready for an export: created if missing, refused if it holds anything.

    With `force`, only the entries the exporter writes (`written`) are removed first, so a
    stray file the user keeps there survives. A folder that contains the project itself is
    refused even with `force`: an export must never overwrite the project's own files.

    Example:
        >>> prepare_folder(Path("build"), False, ["Dockerfile"], Path.cwd())  # doctest: +SKIP
        PosixPath('/home/me/churn/build')
    """
    folder = dest.resolve()
    root = project_root.resolve()
    if folder == root or folder in root.parents:
        raise InvalidPath(
            f"{dest} holds the project itself; an export writes its own files there",
            "export into a new folder, e.g. `build/`",
        )
    if folder.exists() and not folder.is_dir():
        raise InvalidPath(f"{dest} is a file, not a folder", "give a folder to export into")
    if folder.is_dir() and any(folder.iterdir()):
        if not force:
            raise Conflict(
                f"{dest} is not empty",
                "export into an empty folder, or pass --force to replace the files mloop "
                "writes there",
            )
        for name in written:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
