"""Exporters (layer 4): turn a model version's records into files other tools run.

`docker.py` writes a self-contained container build context; `kubernetes.py` writes the
manifests that run that image on a cluster; this module holds what they share: resolving the
ref, preparing the folder, and a small project holding exactly one model version. Exporters sit
one layer below the CLI (it calls them; they never import it), read through the project's
services and stores, and only write files: nothing here builds an image, starts a process or
talks to a cluster, so an export works on a machine without Docker or kubectl, and its output
can be reviewed as text.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.errors import Conflict, InvalidPath, NotFound

if TYPE_CHECKING:
    from mloop.domain.lineage import Environment
    from mloop.domain.model import ModelVersion
    from mloop.project import Project
    from mloop.store.metadata.sql.store import SqlMetadataStore


def resolve(project: Project, ref: str) -> tuple[ModelVersion, str]:
    """The version `ref` names, and the ref the exported server should serve.

    An alias is kept as written (`churn@champion`): the exported store carries the alias, so the
    server reports which name it answers to. A bare name is pinned to the version it resolves to
    now (`churn` -> `churn:3`), so a later registration does not change what an image serves.

    Example:
        >>> resolve(project, "churn")  # doctest: +SKIP
        (ModelVersion(name='churn', version=3, ...), 'churn:3')
    """
    from mloop.services.registry.models import parse_model_ref

    name, _, alias = parse_model_ref(ref)
    version = project.registry.get(ref)
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


def embed_version(
    project: Project, version: ModelVersion, root: Path, environment: Environment | None
) -> None:
    """Make `root` a new project holding exactly `version`, to ship beside a server.

    The bundle's objects (and the environment's package list) are copied and re-hashed on the
    way; the environment record and the version record follow, with the same number, digest
    and aliases, so `NAME:V` and `NAME@ALIAS` resolve there as here. The run is not copied:
    the event recording the export names it and the project it came from.

    Example:
        >>> embed_version(project, version, Path("build/project"), None)  # doctest: +SKIP
    """
    from mloop.config import STATE_DIR
    from mloop.domain.dataset import FileEntry
    from mloop.domain.event import Event
    from mloop.project import init_project
    from mloop.services.tracking.values import describe_value
    from mloop.store import open_artifact_store
    from mloop.store.artifacts.transfer import transfer
    from mloop.store.metadata.sql.store import SqlMetadataStore

    root, created = init_project(root, name=version.name)
    if not created:  # its own counters and records would clash with the copy
        raise Conflict(f"{root} is a project already", "embed a version into a new folder")
    state = root / STATE_DIR
    # The stores are opened by path, not through settings: MLOOP_STORE_URI in the caller's
    # environment names the team's store, which must not receive the copy.
    artifacts = open_artifact_store(str(state / "objects"))
    manifest = describe_value(project.artifacts, version.digest)
    digests = [version.digest, *manifest["files"].values()]
    if environment is not None:
        digests.append(environment.packages_digest)
    copied = transfer(project.artifacts, artifacts, digests)
    if copied.missing:
        raise NotFound(
            f"{version.ref} refers to {len(copied.missing)} object(s) missing from "
            f"{project.artifacts.uri}, e.g. {copied.missing[0][:12]}",
            "run `mloop fsck` to see what is missing, and `mloop data pull` to fetch it",
        )
    files = [
        FileEntry(rel, digest, artifacts.size(digest) or 0)
        for rel, digest in sorted(manifest["files"].items())
    ]
    store = SqlMetadataStore(f"sqlite:///{state / 'mloop.db'}")
    try:
        if environment is not None:
            store.environments.put(environment)
        _number_next(store, version)
        event = Event(
            time.time(),
            project.actor,
            "model.version_exported",
            f"model/{version.ref}",
            None,
            {"from": project.settings.project, "run": version.run_id, "digest": version.digest},
        )
        # The run is not copied (its lineage stays in the source store, named in the event).
        copy = store.models.create_version(
            dataclasses.replace(version, run_id=None, aliases=()), files, event
        )
        if copy.version != version.version:
            raise Conflict(f"the exported store numbered {version.ref} as {copy.ref}")
        for alias in version.aliases:
            ref = f"model/{version.name}:{version.version}"
            store.models.set_alias(
                version.name,
                alias,
                version.version,
                Event(time.time(), project.actor, "model.alias_set", ref, None, {"alias": alias}),
            )
    finally:
        store.close()


def _number_next(store: SqlMetadataStore, version: ModelVersion) -> None:
    """Make the new store give `version` its own number: versions are numbered by the store
    (one more than its counter), and this store has none yet, so its counter starts one below.
    The store protocol has no call for it, so this writes the counter row of the schema the
    SQL store has just created; nothing else touches the schema directly."""
    store.db.write(
        lambda tx: tx.execute(
            "INSERT INTO models (name, created, latest, description) VALUES (:n, :c, :l, '')",
            {"n": version.name, "c": version.created, "l": version.version - 1},
        )
    )
