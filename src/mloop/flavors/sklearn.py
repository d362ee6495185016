"""The sklearn flavor: any scikit-learn estimator or pipeline, saved with skops, never pickled.

skops writes a zip of a JSON schema and `.npy` files and, on load, builds only the types it is
told to trust: a crafted file cannot run code by naming a function. `load_skops` trusts skops'
defaults plus mloop's audited list (`safe_types.py`: what everyday models need, such as
`numpy.dtype` and tree storage, with the content of tree-like objects checked before the model
is handed out) plus the caller's explicit `trusted_types`, and refuses any other type by name
with `NeedsTrust`; `trust=True` (the caller trusts the source enough to unpickle it) trusts
every type. `save` records the types skops does not trust by default, so a caller can say
before anyone loads the model whether loading will need trust (`needs_trust`).

skops' zip is not reproducible as written: members carry the time of saving, and array files
and `__id__` fields are named after `id()` of objects in the saving process. `_normalise`
renumbers ids and files in schema order and writes the zip with fixed timestamps, so equal
models give equal bytes and the pipeline cache can key on them.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mloop.errors import InvalidInput, NeedsTrust
from mloop.flavors.protocol import JSON, missing, type_name
from mloop.flavors.safe_types import check_content, needs_trust

FILE = "model.skops"
SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _skops_io() -> Any:
    try:
        import sklearn  # noqa: F401  (skops imports it too; this names the right package)
        import skops.io
    except ImportError as exc:
        raise missing("sklearn", "scikit-learn and skops", "sklearn") from exc
    return skops.io


def _renumber(node: Any, ids: dict[Any, int], files: dict[str, str], members: set[str]) -> Any:
    """The schema with `__id__`s numbered in order of appearance and member names renamed."""
    if isinstance(node, list):
        return [_renumber(x, ids, files, members) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int | str):
            out[key] = ids.setdefault(value, len(ids))
        elif key == "file" and isinstance(value, str) and value in members:
            suffix = value[value.rfind(".") :] if "." in value else ""
            out[key] = files.setdefault(value, f"{len(files)}{suffix}")
        else:
            out[key] = _renumber(value, ids, files, members)
    return out


def _normalise(data: bytes) -> bytes:
    """skops' zip rewritten without save times and `id()`-based names (see module docstring)."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        members = {name: src.read(name) for name in src.namelist()}
    schema = json.loads(members.pop(SCHEMA))
    files: dict[str, str] = {}
    schema = _renumber(schema, {}, files, set(members))
    for name in sorted(set(members) - set(files)):  # never referenced: keep, in a stable order
        files[name] = f"x{len(files)}-{name}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dest:
        entries = [(SCHEMA, json.dumps(schema, indent=1).encode())]
        entries += sorted((files[name], content) for name, content in members.items())
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # the same bytes whichever system saved it
            info.external_attr = 0o644 << 16
            dest.writestr(info, content)
    return out.getvalue()


class SklearnFlavor:
    """scikit-learn estimators through skops; see the module docstring."""

    name = "sklearn"
    requires_trust = False
    returns_paths = False

    def handles(self, obj: object) -> bool:
        base = sys.modules.get("sklearn.base")  # an estimator exists only if sklearn is imported
        return base is not None and isinstance(obj, base.BaseEstimator)

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        sio = _skops_io()
        import sklearn

        data = _normalise(sio.dumps(obj))
        (folder / FILE).write_bytes(data)
        untrusted: list[JSON] = list(sio.get_untrusted_types(data=data))
        return {
            "class": type_name(obj),
            "untrusted_types": untrusted,
            "sklearn_version": sklearn.__version__,
        }

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        return load_skops((folder / FILE).read_bytes(), trust=trust, trusted_types=trusted_types)


def is_skops(data: bytes) -> bool:
    """Whether `data` looks like a skops file: a zip holding skops' schema."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return False
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        return SCHEMA in zipped.namelist()


def load_skops(
    data: bytes, *, trust: bool = False, trusted_types: Sequence[str] = (), what: str = "the model"
) -> Any:
    """The estimator in the skops file `data`, built from trusted types only (module docstring).

    Raises `NeedsTrust` naming the types off the lists (or what is wrong with a checked type's
    content) unless `trust`; `InvalidInput` when `data` is not a skops file at all.

    Example:
        >>> load_skops(Path("model.skops").read_bytes()).predict(rows)  # doctest: +SKIP
    """
    sio = _skops_io()
    if not is_skops(data):
        raise InvalidInput(f"{what} is not a skops file (a zip holding {SCHEMA})")
    # Ask the file, not a manifest: a manifest could understate what the file needs.
    found = list(sio.get_untrusted_types(data=data))
    refused = [t for t in needs_trust(found) if t not in trusted_types]
    if refused and not trust:
        raise NeedsTrust.of(f"it holds types off mloop's safe list: {', '.join(refused)}", what)
    model = sio.loads(data, trusted=found)
    if not trust:
        problem = check_content(model)
        if problem is not None:
            raise NeedsTrust.of(f"{problem}; the file is damaged or crafted", what)
    return model


def recorded_needs(meta: dict[str, JSON]) -> list[str]:
    """The types a saved model needs beyond skops' and mloop's lists, from what `save` recorded.

    Example:
        >>> recorded_needs({"untrusted_types": ["numpy.dtype", "posix.system"]})
        ['posix.system']
    """
    recorded = meta.get("untrusted_types")
    return needs_trust(str(t) for t in recorded) if isinstance(recorded, list) else []


FLAVOR = SklearnFlavor()
