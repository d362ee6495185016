"""Values as artifacts: a step output is a bundle of files plus a manifest, named by its digest.

A flavor writes the value into a temporary folder; every file goes into the content-addressed
store; then a small JSON manifest is stored:

    {"files": {relpath: digest}, "flavor": "pandas", "format": 1, "meta": {...},
     "type": "pandas.DataFrame"}

The manifest's digest is the value's digest. It is written with sorted keys and no spaces, and
the flavors write reproducible bytes (Parquet without timestamps, skops zips renumbered, `.npy`,
canonical JSON), so an equal value gives the same digest on any machine with the same library
versions: that is what lets the pipeline cache key on input digests. Loading trusts nothing in
the manifest: the flavor must be known, every path relative and inside the bundle, every digest
well formed, and each file is verified against its digest as it is fetched.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from mloop.domain.digests import is_digest
from mloop.domain.names import check_relative_path
from mloop.errors import CorruptArtifact, InvalidInput, InvalidPath, NeedsTrust
from mloop.flavors.protocol import JSON, Flavor, type_name
from mloop.flavors.registry import flavor_for, get_flavor
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.walk import Boundary, walk_files

FORMAT = 1
_KEYS = {"files", "flavor", "format", "meta", "type"}


@dataclass(frozen=True)
class StoredValue:
    """A value stored as a bundle: its digest (the manifest's), flavor, type and payload size;
    `manifest_size` is the size of the object `digest` names, what a reference records."""

    digest: str
    flavor: str
    type_name: str
    size: int
    manifest_size: int


def _canonical(manifest: dict[str, JSON]) -> bytes:
    return json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _value_type(obj: object) -> str:
    # PosixPath and WindowsPath are one value type; naming the platform's class would give the
    # same folder a different digest on each system.
    return "pathlib.Path" if isinstance(obj, PurePath) else type_name(obj)


def store_value(
    artifacts: ArtifactStore,
    obj: Any,
    *,
    declared: Any = None,
    trust: bool = False,
    what: str = "the step",
) -> StoredValue:
    """Store `obj` in `artifacts` as a bundle and return its digest.

    The objects are written but not synced: a caller that records the digest in metadata calls
    `artifacts.sync()` first, once for all the values of a command.

    Args:
        artifacts: the content-addressed store to write to.
        obj: the value (DataFrame, Series, ndarray, estimator, Path, JSON value, …).
        declared: the annotation the value was declared with; a mismatch is refused.
        trust: allow pickle for a value no safe flavor can store.
        what: who produced the value, for error messages (`"step 'train'"`).

    Example:
        >>> stored = store_value(artifacts, {"rows": 3})  # doctest: +SKIP
        >>> stored.flavor
        'json'
    """
    flavor = flavor_for(obj, declared, trust, what=what)
    files: dict[str, JSON] = {}
    size = 0
    with tempfile.TemporaryDirectory(prefix="mloop-value-") as tmp:
        bundle = Path(tmp)
        meta = flavor.save(obj, bundle, trust=trust)
        # Flavors copy folders with their links as links; the walk applies mloop's one rule.
        top = str(bundle.resolve())
        within = Boundary.of([top], what=f"the folder {what} gave")
        for path in sorted(walk_files(top, within)):
            relpath = check_relative_path(path[len(top) + 1 :], "file name")
            digest, length, _ = artifacts.put_path(path)
            files[relpath] = digest
            size += length
    manifest: dict[str, JSON] = {
        "files": files,
        "flavor": flavor.name,
        "format": FORMAT,
        "meta": meta,
        "type": _value_type(obj),
    }
    encoded = _canonical(manifest)
    digest = artifacts.put_bytes(encoded)
    return StoredValue(digest, flavor.name, _value_type(obj), size, len(encoded))


def _not_a_value(digest: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"object {digest[:12]} is not a stored value: {why}",
        "pass the digest a step output or `store_value` gave",
    )


def describe_value(artifacts: ArtifactStore, digest: str) -> dict[str, Any]:
    """The checked manifest of a stored value: flavor, metadata, files and type.

    Example:
        >>> describe_value(artifacts, stored.digest)["flavor"]  # doctest: +SKIP
        'pandas'
    """
    if not is_digest(digest):
        raise InvalidInput(f"{digest!r} is not a digest", "a digest is 64 lowercase hex digits")
    artifacts.require(digest)
    try:
        manifest = json.loads(artifacts.read_bytes(digest))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_a_value(digest, "it is not JSON") from exc
    return check_manifest(manifest, digest)


def check_manifest(manifest: Any, digest: str) -> dict[str, Any]:
    """`manifest`, read from wherever it was kept (the store, a model bundle), if it is one
    mloop can load: exactly its keys, a known flavor and format, file names that stay inside
    the bundle and well-formed digests; `digest` names it in errors.

    Example:
        >>> check_manifest(json.loads(bundle_manifest_bytes), version.digest)  # doctest: +SKIP
        {'files': {'model.skops': '9f2c…'}, 'flavor': 'sklearn', 'format': 1, ...}
    """
    if not isinstance(manifest, dict) or set(manifest) != _KEYS:
        raise _not_a_value(digest, f"a manifest has exactly the keys {sorted(_KEYS)}")
    if manifest["format"] != FORMAT:
        raise InvalidInput(
            f"value {digest[:12]} has manifest format {manifest['format']!r}; this mloop reads "
            f"{FORMAT}",
            "upgrade mloop with `pip install -U mloop`",
        )
    if not isinstance(manifest["flavor"], str) or not isinstance(manifest["meta"], dict):
        raise _not_a_value(digest, "its flavor or meta has the wrong type")
    get_flavor(manifest["flavor"])  # an unknown flavor is refused here, by name
    files = manifest["files"]
    if not isinstance(files, dict):
        raise _not_a_value(digest, "its files are not a mapping")
    for relpath, file_digest in files.items():
        if check_relative_path(relpath, "bundle file name") != relpath:
            raise InvalidPath(f"bundle file name {relpath!r} is not in canonical form")
        if not isinstance(file_digest, str) or not is_digest(file_digest):
            raise _not_a_value(digest, f"the digest of {relpath!r} is malformed")
        parts = relpath.split("/")
        for cut in range(1, len(parts)):
            if "/".join(parts[:cut]) in files:
                raise InvalidPath(
                    f"bundle file {relpath!r} lies inside the bundle file {parts[0]!r}"
                )
    return manifest


def _fetch(artifacts: ArtifactStore, files: dict[str, str], folder: Path) -> None:
    """Export every bundle file under `folder`, each verified against its digest."""
    for relpath, digest in files.items():
        artifacts.require(digest)
        artifacts.export(digest, folder / relpath)


def load_value(
    artifacts: ArtifactStore,
    digest: str,
    *,
    trust: bool = False,
    trusted_types: Sequence[str] = (),
    workdir: Path | None = None,
) -> Any:
    """Load the value stored under `digest`, fetching and verifying its files.

    Files are fetched into `workdir` (created if missing) or a temporary folder. Flavors that
    read everything into memory leave nothing behind in a temporary folder; the files flavor
    returns a Path inside the folder, so a caller that wants to control its cleanup passes
    `workdir`.

    Args:
        artifacts: the store the value was written to.
        digest: the value's digest, as `store_value` returned it.
        trust: allow unpickling (and every type in a skops file); only for trusted sources.
        trusted_types: types skops does not trust by default that the caller accepts.
        workdir: where to put the fetched files.

    Example:
        >>> frame = load_value(artifacts, stored.digest)  # doctest: +SKIP
    """
    manifest = describe_value(artifacts, digest)
    return load_files(
        manifest,
        lambda folder: _fetch(artifacts, manifest["files"], folder),
        trust=trust,
        trusted_types=trusted_types,
        workdir=workdir,
        what=f"value {digest[:12]}",
    )


def load_files(
    manifest: dict[str, Any],
    fetch: Callable[[Path], None],
    *,
    trust: bool = False,
    trusted_types: Sequence[str] = (),
    workdir: Path | None = None,
    what: str,
) -> Any:
    """Load a value from its checked `manifest`: `fetch` puts its files, each verified against
    its digest, into the folder it is given; the flavor then reads them there.

    The store (`load_value`) and a model bundle fetch differently and share the rest: trust is
    asked before a byte is fetched, and a temporary folder is removed unless the value is a path
    inside it. `what` names the value in errors (`"value 9f2c…"`, `"churn:3"`).

    Example:
        >>> load_files(manifest, copy_verified, what="churn:3")  # doctest: +SKIP
    """
    flavor: Flavor = get_flavor(manifest["flavor"])
    if flavor.requires_trust and not trust:  # refused before a byte is fetched
        raise NeedsTrust.of(
            f"it is a {flavor.name}, and loading it runs any code whoever stored it chose", what
        )
    temporary = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="mloop-value-")) if workdir is None else workdir
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fetch(folder)
        value = flavor.load(folder, manifest["meta"], trust=trust, trusted_types=trusted_types)
    except FileNotFoundError as exc:
        raise CorruptArtifact(
            f"{what} lacks a file its {flavor.name} flavor needs: {exc.filename}",
            "store the value again",
        ) from exc
    except BaseException:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if temporary and not flavor.returns_paths:
        shutil.rmtree(folder, ignore_errors=True)
    return value
