"""Model bundles: one model version in a folder that serves without a project or a store.

`mloop export bundle churn:3 DIR` writes, and `mloop serve ./DIR` (or
`mloop.load_model("./DIR")`) reads:

    DIR/bundle.json     the ModelVersion record (name, number, flavor, signature, lineage,
                        metrics) and what the server checks requests against, as JSON
    DIR/manifest.json   the model's value manifest, byte for byte: the digest the record
                        names is this file's, and it names every file's digest
    DIR/files/...       the model's files, under the names its flavor wrote them
    DIR/environment.txt the packages of the environment the model was made in, one
                        `name==version` a line (when the version records one; its digest is
                        the environment record's, in bundle.json), for whoever installs it

A folder, not an archive: Docker's COPY and a Kubernetes volume take it as it is, a reviewer
can read it, nothing is unpacked before it is checked (an archive's member names are where
path tricks live), and `tar czf` makes one file of it for whoever wants one.

Nothing in a bundle is trusted: the record must decode, `manifest.json` must hash to the digest
the record names, each file name must stay inside `files/` (no `..`, no link), and each file is
copied into a private folder and hashed there before the flavor reads it, so the model loaded is
exactly the one registered. Models that run code (pickle, Python models, skops types off the
safe list) load only with `trust`, as from the registry.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.domain.digests import digest_bytes, is_digest
from mloop.domain.lineage import Environment
from mloop.domain.model import ModelVersion
from mloop.domain.names import check_name
from mloop.domain.records import from_plain, to_plain
from mloop.errors import CorruptArtifact, InvalidInput, InvalidPath, NeedsTrust, NotFound
from mloop.services.registry.loaded import LoadedModel, training_categories
from mloop.services.registry.models import ModelService, trust_reason_of
from mloop.services.tracking.values import check_manifest, describe_value, load_files
from mloop.store.artifacts.hashing import hash_file

RECORD = "bundle.json"
MANIFEST = "manifest.json"
FILES = "files"
ENVIRONMENT = "environment.txt"
WRITTEN = (RECORD, MANIFEST, FILES, ENVIRONMENT)
FORMAT = 1
KIND = "mloop.model-bundle"
_MAX_JSON_BYTES = 64 << 20  # a record or manifest is kilobytes; this only bounds a bad file
_REWRITE = "write the bundle again: mloop export bundle {ref} DIR"
_AGAIN = _REWRITE.format(ref="NAME:V")


def names_a_bundle(text: str) -> bool:
    """Whether `text`, given where a model ref or a bundle may go, is a bundle's path.

    A path is written as one: it holds a `/` (or `\\`), or starts with `.` or `~`. A ref never
    does (model names are DNS labels), except for the kind prefix `model/NAME...`, which stays
    a ref: a folder called `model` is `./model/...`.

    Example:
        >>> [names_a_bundle(t) for t in ("churn@champion", "model/churn:3", "./churn", "a/b")]
        [False, False, True, True]
    """
    if text.startswith((".", "~", "/")) or "\\" in text:
        return True
    kind, slash, rest = text.partition("/")
    return bool(slash) and not (kind == "model" and "/" not in rest)


@dataclass(frozen=True)
class Bundle:
    """An opened bundle: its record and manifest read and checked, its files not yet read."""

    folder: Path
    version: ModelVersion
    manifest: dict[str, Any]
    categories: Mapping[str, frozenset[str]]
    environment: Environment | None = None

    @property
    def packages(self) -> list[str]:
        """`name==version` of every package the model was made with (none without a record)."""
        if self.environment is None:
            return []
        return listing(_read_bytes(self.folder, ENVIRONMENT))

    @property
    def trust_reason(self) -> str | None:
        """Why loading needs trust, or None (as `ModelService.trust_reason` says it)."""
        return trust_reason_of(self.version, lambda: self.manifest)

    def load(self, trust: bool = False) -> Any:
        """The model, from files each verified against its digest; refused before any is read
        when it needs trust and `trust` is False.

        Example:
            >>> open_bundle(Path("churn-bundle")).load().predict(rows)  # doctest: +SKIP
        """
        subject = f"{self.version.ref} (bundle {self.folder})"
        reason = self.trust_reason
        if reason is not None and not trust:
            raise NeedsTrust.of(reason, subject)
        try:
            return load_files(self.manifest, self._copy_verified, trust=trust, what=subject)
        except NeedsTrust as exc:  # the file needs more than its manifest said
            raise exc.needing(subject=subject) from None

    def predictor(self, trust: bool = False) -> LoadedModel:
        """What the model server serves: the model, its signature, its training categories."""
        return LoadedModel.of(self.version, self.load(trust), self.categories)

    def _copy_verified(self, into: Path) -> None:
        """Copy each manifest file from `files/` into `into`, then hash the copy: the flavor
        reads only bytes that match their digest, and no file the manifest does not name."""
        root = (self.folder / FILES).resolve()
        for name, digest in self.manifest["files"].items():
            source = root / name
            if source.resolve() != source:  # a link, here or in a folder above it
                raise InvalidPath(
                    f"bundle {self.folder}: {FILES}/{name} is a link; a bundle holds plain files",
                    _REWRITE.format(ref=self.version.ref),
                )
            if not source.is_file():
                raise CorruptArtifact(
                    f"bundle {self.folder} lacks {FILES}/{name}, a file of {self.version.ref}",
                    _REWRITE.format(ref=self.version.ref),
                )
            copy = into / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
            if hash_file(copy) != digest:
                raise CorruptArtifact(
                    f"bundle {self.folder}: {FILES}/{name} does not match its digest "
                    f"{digest[:12]}; it changed after {self.version.ref} was bundled",
                    _REWRITE.format(ref=self.version.ref),
                )


def write_bundle(models: ModelService, version: ModelVersion, folder: Path) -> Bundle:
    """Write `version` as a bundle into `folder` (created if missing; the caller makes sure it
    holds nothing of value). Files are exported verified from the artifact store; the record
    goes last, so a folder without `bundle.json` is a bundle that was never finished.

    Example:
        >>> version = registry.get("churn@champion")  # doctest: +SKIP
        >>> write_bundle(registry, version, Path("build/model")).version.ref  # doctest: +SKIP
        'churn:2'
    """
    manifest = describe_value(models.artifacts, version.digest)
    environment = _environment_record(models, version)
    folder.mkdir(parents=True, exist_ok=True)
    for name, digest in manifest["files"].items():
        models.artifacts.require(digest)
        models.artifacts.export(digest, folder / FILES / name)
    _write_atomic(folder / MANIFEST, models.artifacts.read_bytes(version.digest))
    if environment is not None:
        packages = models.artifacts.read_bytes(environment.packages_digest)
        _write_atomic(folder / ENVIRONMENT, packages)
    categories = training_categories(version.signature, models.training_tables(version))
    record = {
        "kind": KIND,
        "format": FORMAT,
        "model": to_plain(version),
        "categories": {column: sorted(values) for column, values in sorted(categories.items())},
        "environment": to_plain(environment),
    }
    text = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    _write_atomic(folder / RECORD, (text + "\n").encode())
    return Bundle(folder, version, manifest, categories, environment)


def environment_of(
    models: ModelService, version: ModelVersion
) -> tuple[Environment | None, list[str]]:
    """The environment `version` was made in and its packages (`name==version` lines), or
    (None, []) when the version records none.

    Example:
        >>> environment_of(registry, registry.get("churn:3"))[1][:1]  # doctest: +SKIP
        ['scikit-learn==1.5.2']
    """
    environment = _environment_record(models, version)
    if environment is None:
        return None, []
    return environment, listing(models.artifacts.read_bytes(environment.packages_digest))


def listing(packages: bytes) -> list[str]:
    """The `name==version` lines of an environment's package list."""
    return [line.strip() for line in packages.decode().splitlines() if "==" in line]


def _environment_record(models: ModelService, version: ModelVersion) -> Environment | None:
    if version.environment is None:
        return None
    return models.metadata.environments.get(version.environment)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def open_bundle(path: Path) -> Bundle:
    """The bundle in the folder `path`, its record and manifest checked against each other.

    Example:
        >>> open_bundle(Path("churn-bundle")).version.ref  # doctest: +SKIP
        'churn:3'
    """
    folder = path.expanduser()
    hint = "make one with: mloop export bundle NAME:V DIR"
    if not folder.exists():
        raise NotFound(f"no model bundle at {path}", hint)
    if not folder.is_dir():
        raise InvalidPath(f"{path} is a file; a model bundle is a folder", hint)
    if not (folder / RECORD).is_file():
        raise NotFound(f"{path} is not a model bundle: it has no {RECORD}", hint)
    record = _read_json(folder, RECORD)
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise InvalidInput(f"{path}/{RECORD} is not a model bundle's record", hint)
    if record.get("format") != FORMAT:
        raise InvalidInput(
            f"{path} is a bundle of format {record.get('format')!r}; this mloop reads {FORMAT}",
            "upgrade mloop with `pip install -U mloop`",
        )
    version = _version_from_plain(record.get("model"), folder)
    rewrite = _REWRITE.format(ref=version.ref)
    raw = _read_bytes(folder, MANIFEST)
    if digest_bytes(raw) != version.digest:
        raise CorruptArtifact(
            f"bundle {path}: {MANIFEST} does not match the digest {version.digest[:12]} its "
            f"record names for {version.ref}",
            rewrite,
        )
    manifest = check_manifest(json.loads(raw), version.digest)
    categories = _categories(record.get("categories"), folder)
    environment = _environment_from_plain(record.get("environment"), folder)
    if environment is not None and (
        digest_bytes(_read_bytes(folder, ENVIRONMENT)) != environment.packages_digest
    ):
        raise CorruptArtifact(
            f"bundle {path}: {ENVIRONMENT} does not match the digest "
            f"{environment.packages_digest[:12]} its record names",
            rewrite,
        )
    return Bundle(folder, version, manifest, categories, environment)


def _environment_from_plain(plain: Any, folder: Path) -> Environment | None:
    """The Environment `to_plain` wrote, or None; decoded as `_version_from_plain` says."""
    if plain is None:
        return None
    try:
        environment = from_plain(Environment, plain)
        if not is_digest(environment.packages_digest):
            raise TypeError("a packages digest")
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"bundle {folder}: its environment record is malformed ({exc})", _AGAIN
        ) from None
    return environment


def _read_bytes(folder: Path, name: str) -> bytes:
    path = folder / name
    if not path.is_file():
        raise CorruptArtifact(f"bundle {folder} lacks {name}", _AGAIN)
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise InvalidInput(f"bundle {folder}: {name} is too large to be mloop's", _AGAIN)
    return path.read_bytes()


def _read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads(_read_bytes(folder, name))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"bundle {folder}: {name} is not JSON ({exc})", _AGAIN) from None


def _categories(plain: Any, folder: Path) -> dict[str, frozenset[str]]:
    if plain is None:  # optional: without it, unseen text values go unnoticed
        return {}
    if not isinstance(plain, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in plain.values()
    ):
        raise InvalidInput(f"bundle {folder}: its categories are not lists of text", _AGAIN)
    return {str(column): frozenset(values) for column, values in plain.items()}


def _version_from_plain(plain: Any, folder: Path) -> ModelVersion:
    """The ModelVersion `to_plain` wrote. `from_plain` trusts the types of what it reads (it
    reads our own stores); a bundle comes from anywhere, so what the loader relies on is
    checked after, and a record that does not decode is refused whole."""
    try:
        if not isinstance(plain, dict):
            raise TypeError("an object")
        version = from_plain(ModelVersion, plain)
        check_name(version.name, "model name")
        if not isinstance(version.version, int) or not is_digest(version.digest):
            raise TypeError("a version number and a digest")
    except (TypeError, ValueError, KeyError, AttributeError, InvalidInput) as exc:
        raise InvalidInput(
            f"bundle {folder}: {RECORD} holds no model version mloop reads ({exc})",
            f"it was written by another mloop, or edited: {_AGAIN}",
        ) from None
    return version
