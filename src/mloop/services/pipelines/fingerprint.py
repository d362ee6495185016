"""A step's code, digested: its own source and everything of the project it reads.

Walks the names a function's bytecode uses, resolves them in its globals, and digests what it
finds, the same way for every project function it calls (recursively):

- functions, classes and modules defined inside the project (not in site-packages): their
  source, then what *they* read; a class also its attribute values;
- module globals (`NUMERIC = [...]`), imported project constants (`from config import FEATURES`,
  `import settings; settings.X`), default argument values and closure cells: their *value*,
  digested canonically by `constants.py` (containers, dataclasses, enums, paths, arrays, …);
- library functions, classes and modules: their qualified name (the environment digest
  covers their code).

A value that cannot be digested by value (an object of a library class, say a random number
generator) falls back to its type's name plus the digest of every project file that binds it as
a module global: editing the line that builds it re-runs the step, at the price of re-running it
for any other edit of that file too (Metaflow digests a flow's whole code package this way).
Hamilton's cache keys cover only a node's own source, which is how a changed constant goes
unseen. Nothing here depends on id(), hash() or set order: a key is the same in every
interpreter.
"""

from __future__ import annotations

import dis
import importlib
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3

from mloop.services.pipelines.constants import Encoder, frame, layers

_MISSING = object()


def _imports(code: types.CodeType) -> Iterator[tuple[str, int]]:
    """(module, level) of every import statement in a function's body (`from config import X`
    inside a step): IMPORT_NAME follows LOAD_CONST level, LOAD_CONST fromlist."""
    consts: list[Any] = []
    for instruction in dis.get_instructions(code):
        if instruction.opname == "IMPORT_NAME":
            level = consts[-2] if len(consts) >= 2 and isinstance(consts[-2], int) else 0
            yield str(instruction.argval), level
        consts.append(instruction.argval if instruction.opname == "LOAD_CONST" else None)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _imports(const)


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


class _Walker:
    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve()) + os.sep
        self.site = tuple(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
        self.seen: set[int] = set()  # code already walked (to stop; never part of a digest)
        self.followed: set[tuple[int, str]] = set()  # module attributes already digested
        self.hasher = blake3.blake3()
        self.values = Encoder(Path(self.root), self)

    # where things come from ---------------------------------------------------------------
    def local_path(self, path: str | None) -> str | None:
        """`path` relative to the project root when it is project code, else None."""
        if not path:
            return None
        path = os.path.abspath(path)
        if not path.startswith(self.root) or any(path.startswith(s) for s in self.site):
            return None
        if f"{os.sep}.venv{os.sep}" in path:
            return None
        return path[len(self.root) :]

    def local(self, obj: Any) -> bool:
        try:
            path = inspect.getsourcefile(obj)
        except Exception:  # built-ins, and objects whose module cannot be told
            return False
        return self.local_path(path) is not None

    def add(self, data: bytes) -> None:
        self.hasher.update(data)

    def add_source(self, obj: Any) -> None:
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = repr(getattr(obj, "__qualname__", obj))
        self.add(frame(b"S", getattr(obj, "__qualname__", "").encode()))
        self.add(frame(b"s", source.encode("utf-8", "surrogatepass")))

    # code -----------------------------------------------------------------------------------
    def function(self, fn: Any) -> None:
        """Digest a project function: its source, and every global, default and closure cell
        it reads (its decorators' closures too: `@retry(times=N)` keeps N in one)."""
        chain = layers(fn)
        inner = chain[-1]
        if id(inner) in self.seen:
            return
        self.seen.add(id(inner))
        self.add_source(inner)
        for layer in chain:
            if isinstance(layer, types.FunctionType):
                # A library's wrapper: its closure holds the decorator's arguments; its
                # globals are the library's own business (the environment digest).
                self._reads(layer, inside=layer is inner or self.local(layer))

    def _reads(self, fn: types.FunctionType, inside: bool) -> None:
        code = fn.__code__
        home = fn.__globals__.get("__file__")
        names = sorted(set(_code_names(code)))
        for name in names if inside else ():
            value = fn.__globals__.get(name, _MISSING)
            if value is not _MISSING:
                self.reference(f"global {name}", value, names, home)
        for module, level in sorted(set(_imports(code))) if inside else ():
            self.imported(module, level, fn.__globals__.get("__package__"), names, home)
        for index, default in enumerate(fn.__defaults__ or ()):
            self.reference(f"default {index}", default, names, home)
        for key, default in sorted((fn.__kwdefaults__ or {}).items()):
            self.reference(f"default {key}", default, names, home)
        for var, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
            try:
                content = cell.cell_contents
            except ValueError:  # a cell not filled yet
                continue
            self.reference(f"closure {var}", content, names, home)

    def imported(
        self, name: str, level: int, package: str | None, names: list[str], home: str | None
    ) -> None:
        """A module imported inside the function: followed like a global one if it is the
        project's (imported now if the step has not run yet: it would import it too)."""
        try:
            absolute = importlib.util.resolve_name("." * level + name, package) if level else name
            loaded = sys.modules.get(absolute)
            if loaded is None:
                spec = importlib.util.find_spec(absolute)
                if spec is None or self.local_path(spec.origin) is None:
                    return  # a library's: the environment digest covers it
                loaded = importlib.import_module(absolute)
        except Exception:  # it does not import here: its file, if there is one, stands in
            origin = _spec_origin(name, level, package)
            rel = self.local_path(origin)
            found = f"{rel}={_file_digest(origin)}" if origin and rel else ""
            self.add(frame(b"I", f"{name}:{level}:{found}".encode()))
            return
        self.reference(f"import {absolute}", loaded, names, home)

    def module(self, module: types.ModuleType, names: list[str]) -> None:
        """A project module the code reads from (`settings.X`): follow the attributes the code
        names, as if they were globals."""
        home = getattr(module, "__file__", None)
        for attr in names:
            if (id(module), attr) in self.followed:  # each helper names its own attributes
                continue
            self.followed.add((id(module), attr))
            try:
                member = getattr(module, attr, _MISSING)
            except Exception:  # a module __getattr__ that fails: the code cannot read it either
                member = _MISSING
            if member is not _MISSING:
                self.reference(f"{module.__name__}.{attr}", member, names, home)

    def klass(self, cls: type) -> None:
        """A project class: its source, its methods' reads and its attribute values."""
        if id(cls) in self.seen:
            return
        self.seen.add(id(cls))
        self.add_source(cls)
        home = getattr(sys.modules.get(cls.__module__), "__file__", None)
        for attr, member in sorted(vars(cls).items()):
            label = f"{cls.__qualname__}.{attr}"
            if attr.startswith("__") and attr.endswith("__"):
                continue
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if isinstance(member, property):
                for part in (member.fget, member.fset, member.fdel):
                    if part is not None:
                        self.reference(label, part, [], home)
            elif not attr.startswith("_"):
                self.reference(label, member, [], home)
            else:  # machinery an ABC, an Enum or Generic sets (`_abc_impl`): only if readable
                encoded = self.values.encode(member)
                if encoded is not None:
                    self.add(frame(b"G", label.encode()) + encoded)

    def reference(self, label: str, value: Any, names: list[str], home: str | None) -> None:
        """Digest one thing the code reads, under `label`; `home` is the file it was found in
        (the fallback for a value that cannot be digested by value)."""
        if isinstance(value, types.ModuleType):
            self.add(frame(b"M", f"{label}={value.__name__}".encode()))
            if self.local(value):
                self.module(value, names)
            return
        encoded = self.values.encode(value)
        if encoded is None:
            encoded = self.values.fallback(value, home)
        self.add(frame(b"G", label.encode()) + encoded)

    def files_binding(self, value: Any, home: str | None) -> list[tuple[str, str]]:
        """(relative path, content digest) of the project modules that bind `value` as a
        global, and of `home`: where the code that builds it can change."""
        found: dict[str, str] = {}
        home_rel = self.local_path(home)
        if home and home_rel is not None:
            found[home_rel] = home
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            rel = self.local_path(path)
            if rel is None or rel in found or not path:
                continue
            try:
                bound = any(v is value for v in vars(module).values())
            except TypeError:
                continue
            if bound:
                found[rel] = path
        return [(rel, _file_digest(found[rel])) for rel in sorted(found)]


def _spec_origin(name: str, level: int, package: str | None) -> str | None:
    try:
        absolute = importlib.util.resolve_name("." * level + name, package) if level else name
        spec = importlib.util.find_spec(absolute)
    except Exception:
        return None
    return spec.origin if spec is not None else None


def _file_digest(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return blake3.blake3(fh.read()).hexdigest()
    except OSError:
        return "unreadable"


def source_digest(fn: Callable[..., Any], root: Path) -> str:
    """The digest of `fn`'s source and of everything of the project (under `root`) it reads.

    Example:
        >>> source_digest(train, Path("."))[:12]  # doctest: +SKIP
        '3f9a0c1d2e4b'
    """
    walker = _Walker(root)
    walker.function(fn)
    return walker.hasher.hexdigest()
