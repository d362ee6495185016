"""Values a step reads (module constants, defaults, closure cells), digested by value.

The encoding is canonical: equal values give equal bytes in every interpreter. Every part is
tagged and length-prefixed (so `["ab"]` and `["a", "b"]` differ), dict entries and set members
are sorted by their own encoding (never by hash() or insertion order), floats are written with
repr(), paths inside the project relative to it (a clone elsewhere keeps its cache). Like
Hamilton's fingerprinting, containers recurse and anything that cannot be read as a value makes
its whole container unreadable (`None`): a part must never be silently left out, since two
values differing only there would then share a key. The caller then falls back (`fallback`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import re
import sys
import types
from pathlib import Path, PurePath
from typing import Any, Protocol

MAX_DEPTH = 32
_PLAIN = (list, tuple, dict, set, frozenset)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
_BY_REPR = (
    ("datetime", ("date", "time", "timedelta", "timezone")),
    ("decimal", ("Decimal",)),
    ("fractions", ("Fraction",)),
    ("uuid", ("UUID",)),
)


def layers(fn: Any) -> list[Any]:
    """`fn` and every function it wraps (`functools.wraps` chains), outermost first."""
    found = [fn]
    while len(found) < MAX_DEPTH:
        inner = getattr(found[-1], "__wrapped__", None)
        if inner is None or any(inner is seen for seen in found):
            break
        found.append(inner)
    return found


def frame(tag: bytes, payload: bytes) -> bytes:
    """One tagged, length-prefixed part of an encoding."""
    return tag + str(len(payload)).encode() + b":" + payload


def qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _class_of(module: str, name: str) -> Any:
    """A class by name if its module is loaded (a value of it cannot exist otherwise)."""
    loaded = sys.modules.get(module)
    found = getattr(loaded, name, None) if loaded is not None else None
    return found if isinstance(found, type) else None


def _plain_repr(value: Any) -> str | None:
    """repr(value), unless it fails or holds a memory address (which differs every run)."""
    try:
        text = repr(value)
    except Exception:
        return None
    return None if _ADDRESS.search(text) else text


def _all(parts: list[bytes | None]) -> list[bytes] | None:
    """`parts`, or None if any part is unreadable (then so is the whole)."""
    found = [p for p in parts if p is not None]
    return found if len(found) == len(parts) else None


class CodeWalker(Protocol):
    """What the encoder asks of the code walker when a value is code (a function in a list)."""

    def function(self, fn: Any) -> None: ...
    def klass(self, cls: type) -> None: ...
    def local(self, obj: Any) -> bool: ...
    def files_binding(self, value: Any, home: str | None) -> list[tuple[str, str]]: ...


class Encoder:
    def __init__(self, root: Path, code: CodeWalker) -> None:
        self.root = str(root).rstrip(os.sep) + os.sep
        self.code = code
        self._active: set[int] = set()  # containers being encoded: a cycle is unreadable

    def encode(self, value: Any, depth: int = 0) -> bytes | None:
        """The canonical bytes of `value`, or None when it cannot be read as a value."""
        if depth > MAX_DEPTH:
            return None
        scalar = self._scalar(value)
        if scalar is not None:
            return scalar
        if id(value) in self._active:
            return None
        self._active.add(id(value))
        try:
            return self._compound(value, depth + 1)
        except Exception:  # looking into it failed (a property raising): unreadable
            return None
        finally:
            self._active.discard(id(value))

    def fallback(self, value: Any, home: str | None) -> bytes:
        """For a value not readable as one: its type, and the content of every project file
        that binds it (or `home`, where the code found it). Without any such file (code typed
        into a notebook), its repr when that holds no memory address, else only its type."""
        parts = [frame(b"T", _text(qualified(type(value))))]
        files = self.code.files_binding(value, home)
        for rel, digest in files:
            parts.append(frame(b"f", _text(f"{rel}={digest}")))
        text = _plain_repr(value) if not files else None
        if text is not None:
            parts.append(frame(b"r", _text(text)))
        return frame(b"?", b"".join(parts))

    # leaves ---------------------------------------------------------------------------------
    def _scalar(self, value: Any) -> bytes | None:
        kind = type(value)
        if value is None:
            return b"N"
        if isinstance(value, enum.Enum):
            return frame(b"E", _text(f"{qualified(kind)}.{value.name}"))
        if kind is bool:
            return frame(b"b", b"1" if value else b"0")
        if kind is int:
            return frame(b"i", str(value).encode())
        if kind is float:
            return frame(b"d", repr(value).encode())
        if kind is complex:
            return frame(b"c", repr(value).encode())
        if kind is str:  # a path inside the project (`__file__`) is kept relative to it
            if value.startswith(self.root):
                return frame(b"q", _text(value[len(self.root) :]))
            return frame(b"s", _text(value))
        if kind is bytes or kind is bytearray:
            return frame(b"y", bytes(value))
        if isinstance(value, int | float | complex | str | bytes):  # a subclass: type and value
            builtin: Any = kind.__mro__[-2]  # int, float, complex, str or bytes
            return frame(b"v", _text(f"{qualified(kind)}|{builtin.__repr__(value)}"))
        if isinstance(value, PurePath):
            text = str(value)
            if value.is_absolute() and (text + os.sep).startswith(self.root):
                return frame(b"p", _text("<project>/" + text[len(self.root) :]))
            return frame(b"P", _text(text))
        for module, names in _BY_REPR:
            for name in names:
                cls = _class_of(module, name)
                if cls is not None and isinstance(value, cls):
                    return frame(b"r", _text(f"{qualified(kind)}:{value!r}"))
        if isinstance(value, range | slice):
            return frame(b"r", _text(repr(value)))
        if isinstance(value, re.Pattern):
            pattern = value.pattern
            raw = pattern if isinstance(pattern, bytes) else _text(pattern)
            return frame(b"R", raw + b"/" + str(value.flags).encode())
        return None

    # containers, arrays, code and objects ---------------------------------------------------
    def _compound(self, value: Any, depth: int) -> bytes | None:
        kind = type(value)
        name = _text(qualified(kind))
        if kind not in _PLAIN and self.code.local(kind):
            self.code.klass(kind)  # a project class: its code, whatever the value's shape
        head = frame(b"T", name)
        if isinstance(value, list | tuple):
            items = _all([self.encode(v, depth) for v in value])
            return None if items is None else frame(b"L", head + b"".join(items))
        if isinstance(value, dict | types.MappingProxyType):
            pairs = _all([self._pair(k, v, depth) for k, v in value.items()])
            return None if pairs is None else frame(b"D", head + b"".join(sorted(pairs)))
        if isinstance(value, set | frozenset):
            members = _all([self.encode(v, depth) for v in value])
            return None if members is None else frame(b"S", head + b"".join(sorted(members)))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = _all(
                [
                    self._pair(f.name, getattr(value, f.name, None), depth)
                    for f in dataclasses.fields(value)
                ]
            )
            return None if fields is None else frame(b"C", head + b"".join(fields))
        found = self._array(value, depth)
        if found is not None:
            return found
        return self._code(value, depth) or self._object(value, depth)

    def _pair(self, key: Any, value: Any, depth: int) -> bytes | None:
        encoded = _all([self.encode(key, depth), self.encode(value, depth)])
        return None if encoded is None else b"".join(encoded)

    def _array(self, value: Any, depth: int) -> bytes | None:
        """numpy arrays and scalars, pandas frames, series and indexes (only if loaded)."""
        ndarray, generic = _class_of("numpy", "ndarray"), _class_of("numpy", "generic")
        if ndarray is not None and isinstance(value, ndarray):
            if value.dtype.hasobject:
                return self.encode(value.tolist(), depth)
            head = f"{value.dtype.str}{value.shape}".encode()
            contiguous = sys.modules["numpy"].ascontiguousarray(value)
            return frame(b"A", head + b"|" + contiguous.tobytes())
        if generic is not None and isinstance(value, generic):
            return frame(b"a", f"{value.dtype.str}|".encode() + value.tobytes())
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(value, pandas.DataFrame | pandas.Series | pandas.Index):
            return None
        try:
            rows = pandas.util.hash_pandas_object(value).to_numpy().tobytes()
        except TypeError:  # cells pandas cannot hash (lists, dicts): not readable
            return None
        columns = getattr(value, "columns", None)
        schema = self.encode(
            [
                [str(c) for c in columns] if columns is not None else str(value.name),
                [str(d) for d in value.dtypes] if columns is not None else str(value.dtype),
            ],
            depth,
        )
        return frame(b"F", _text(qualified(type(value))) + (schema or b"") + rows)

    def _code(self, value: Any, depth: int) -> bytes | None:
        """Functions, classes and modules: project code is walked (its source and reads go into
        the digest), library code is named."""
        if isinstance(value, functools.partial):
            parts = _all([self.encode(p, depth) for p in (value.func, value.args, value.keywords)])
            return None if parts is None else frame(b"p", b"".join(parts))
        if isinstance(value, types.MethodType):
            parts = _all([self.encode(p, depth) for p in (value.__func__, value.__self__)])
            return None if parts is None else frame(b"m", b"".join(parts))
        if isinstance(value, type):
            if self.code.local(value):
                self.code.klass(value)
            return frame(b"K", _text(qualified(value)))
        if isinstance(value, types.ModuleType):
            return frame(b"M", _text(value.__name__))
        inner = layers(value)[-1] if callable(value) else value
        if isinstance(inner, types.FunctionType) and self.code.local(inner):
            self.code.function(value)
            return frame(b"F", _text(qualified(inner)))
        return self._named(value)

    def _named(self, value: Any) -> bytes | None:
        """A library object importable by its own name (a function, a numpy ufunc)."""
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            return None
        found: Any = sys.modules.get(module)
        if found is None or self.code.local(found):
            return None
        for part in qualname.split("."):
            found = getattr(found, part, None)
        return frame(b"R", _text(f"{module}.{qualname}")) if found is value else None

    def _object(self, value: Any, depth: int) -> bytes | None:
        """An instance of a project class: its class's code and its state, by value. An object
        of the standard library: its repr, when that holds no memory address (a logger)."""
        kind = type(value)
        if self.code.local(kind):
            state: dict[str, Any] = dict(getattr(value, "__dict__", {}))
            for cls in kind.__mro__:
                slots = getattr(cls, "__slots__", ())
                for slot in [slots] if isinstance(slots, str) else slots:
                    if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                        state[slot] = getattr(value, slot)
            encoded = self.encode(state, depth)
            return None if encoded is None else frame(b"O", _text(qualified(kind)) + encoded)
        top = kind.__module__.partition(".")[0]
        text = _plain_repr(value) if top in sys.stdlib_module_names else None
        return None if text is None else frame(b"r", _text(f"{qualified(kind)}:{text}"))
