"""The json flavor: None, bool, int, float, str, and lists, tuples and dicts of them, as one file.

Round trip: tuples come back as lists (JSON has no tuple); numpy scalars *inside* a list or dict
come back as Python numbers (a numpy scalar on its own goes to the numpy flavor, which keeps its
dtype). Dict keys must be strings, since JSON would turn `1` into `"1"` silently. Dict order is
kept, so two equal dicts built in different orders have different digests: a cache miss, never a
wrong value. The file is strict JSON (no NaN tokens other tools reject): a non-finite float is
written `{"$float": "nan"}`, and a dict that has a key starting with "$" is wrapped as
`{"$dict": {...}}` so that no user dict is mistaken for an encoded float.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from mloop.errors import InvalidInput
from mloop.flavors.protocol import JSON

FILE = "value.json"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class NotJson(Exception):
    """Why a value is not a JSON value (internal: turned into a message by the registry)."""


def _leaf(obj: object, where: str) -> JSON:
    """A nested number that is a numpy scalar becomes the Python number it holds."""
    if type(obj).__module__ == "numpy" and getattr(obj, "dtype", None) is not None:
        kind = obj.dtype.kind  # type: ignore[attr-defined]
        if kind in "biufU":
            return _encode(obj.item(), where, set())  # type: ignore[attr-defined]
    raise NotJson(f"{where} is a {type(obj).__name__}")


def _encode(obj: object, where: str, seen: set[int]) -> JSON:
    kind = type(obj)  # exact types: a subclass (an IntEnum, a StrEnum) would not come back
    if obj is None or kind in (bool, int, str):
        return cast(JSON, obj)
    if isinstance(obj, float) and kind is float:
        if math.isfinite(obj):
            return obj
        return {"$float": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, list | tuple | dict) and kind in (list, tuple, dict):
        if id(obj) in seen:
            raise NotJson(f"{where} contains itself")
        seen.add(id(obj))
        try:
            if isinstance(obj, dict):
                return _encode_dict(obj, where, seen)
            return [_encode(x, f"{where}[{i}]", seen) for i, x in enumerate(obj)]
        finally:
            seen.discard(id(obj))
    return _leaf(obj, where)


def _encode_dict(obj: dict[Any, Any], where: str, seen: set[int]) -> JSON:
    out: dict[str, JSON] = {}
    for key, item in obj.items():
        if type(key) is not str:
            raise NotJson(f"{where} has the key {key!r}, and JSON keys are strings")
        out[key] = _encode(item, f"{where}[{key!r}]", seen)
    if any(key.startswith("$") for key in out):
        return {"$dict": out}
    return out


def _decode(data: Any) -> Any:
    if isinstance(data, list):
        return [_decode(x) for x in data]
    if isinstance(data, dict):
        if len(data) == 1 and "$float" in data and data["$float"] in _NON_FINITE:
            return _NON_FINITE[data["$float"]]
        if len(data) == 1 and isinstance(data.get("$dict"), dict):
            return {key: _decode(item) for key, item in data["$dict"].items()}
        return {key: _decode(item) for key, item in data.items()}
    return data


def encode(obj: object) -> JSON:
    """The strict-JSON form of `obj`, or NotJson saying which part is not JSON.

    Example:
        >>> encode({"loss": float("nan"), "ok": (1, 2)})
        {'loss': {'$float': 'nan'}, 'ok': [1, 2]}
    """
    return _encode(obj, "the value", set())


def problem(obj: object) -> str | None:
    """Why `obj` is not a JSON value (for error messages), or None when it is."""
    try:
        encode(obj)
    except NotJson as exc:
        return str(exc)
    except RecursionError:
        return "the value is nested too deeply"
    return None


class JsonFlavor:
    """Plain values as one strict-JSON file; see the module docstring for the round trip."""

    name = "json"
    requires_trust = False
    returns_paths = False

    def handles(self, obj: object) -> bool:
        # A numpy scalar on its own belongs to the numpy flavor, which keeps its dtype.
        return type(obj) in (type(None), bool, int, float, str, list, tuple, dict) and (
            problem(obj) is None
        )

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        try:
            data = encode(obj)
        except NotJson as exc:
            raise InvalidInput(
                f"cannot store it as JSON: {exc}", "return plain JSON values"
            ) from exc
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        (folder / FILE).write_text(text, encoding="utf-8")
        return {"kind": type(obj).__name__}

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        return _decode(json.loads((folder / FILE).read_text(encoding="utf-8")))


FLAVOR = JsonFlavor()
