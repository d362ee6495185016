"""A step's code, digested: its own source and the project code it reaches.

Walks the names a function's bytecode uses, resolves them in its globals, and follows functions,
classes and modules defined inside the project (not in site-packages), adding their source; plain
constants (numbers, strings, tuples of them) add their value. Library code is covered by the
environment digest instead, so a step's key changes when you edit it, a helper it calls, or a
constant it reads, and not when you edit an unrelated file.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3

_CONSTANTS = (int, float, str, bytes, bool, type(None))


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _is_constant(value: Any) -> bool:
    if isinstance(value, _CONSTANTS):
        return True
    return isinstance(value, tuple | frozenset) and all(_is_constant(v) for v in value)


class _Walker:
    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve()) + os.sep
        self.site = tuple(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
        self.seen: set[int] = set()
        self.hasher = blake3.blake3()

    def local(self, obj: Any) -> bool:
        try:
            path = inspect.getsourcefile(obj) or ""
        except TypeError:
            return False
        path = os.path.abspath(path)
        return path.startswith(self.root) and not any(path.startswith(s) for s in self.site)

    def add_source(self, obj: Any) -> None:
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = repr(getattr(obj, "__qualname__", obj))
        self.hasher.update(f"\0{getattr(obj, '__qualname__', '')}\0".encode())
        self.hasher.update(source.encode())

    def function(self, fn: Any) -> None:
        fn = inspect.unwrap(fn)
        if id(fn) in self.seen:
            return
        self.seen.add(id(fn))
        self.add_source(fn)
        code = getattr(fn, "__code__", None)
        if code is None:
            return
        names = sorted(set(_code_names(code)))
        for name in names:
            self.reference(name, fn.__globals__.get(name, None), names)

    def reference(self, name: str, value: Any, names: list[str]) -> None:
        if value is None:
            return
        wrapped = getattr(value, "__wrapped__", None)
        if callable(wrapped) and not isinstance(value, type):
            value = wrapped
        if isinstance(value, types.ModuleType):
            if id(value) in self.seen or not self.local(value):
                return
            self.seen.add(id(value))
            for attr in names:  # module.helper: follow the attributes the code names
                member = getattr(value, attr, None)
                if member is not None and not isinstance(member, types.ModuleType):
                    self.reference(attr, member, [])
            return
        if isinstance(value, types.FunctionType):
            if self.local(value):
                self.function(value)
            return
        if isinstance(value, type):
            if id(value) not in self.seen and self.local(value):
                self.seen.add(id(value))
                self.add_source(value)
                for member in vars(value).values():
                    if isinstance(member, types.FunctionType):
                        self.function(member)
            return
        if _is_constant(value):
            self.hasher.update(f"\0const {name}={value!r}".encode())


def source_digest(fn: Callable[..., Any], root: Path) -> str:
    """The digest of `fn`'s source and of the project code (under `root`) it calls.

    Example:
        >>> source_digest(train, Path("."))[:12]  # doctest: +SKIP
        '3f9a0c1d2e4b'
    """
    walker = _Walker(root)
    walker.function(fn)
    return walker.hasher.hexdigest()
