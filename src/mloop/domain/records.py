"""Records to plain data and back: the one converter that JSON, SQL rows and HTTP share.

`to_plain` turns a record into dicts, lists, strings and numbers; `from_plain(Cls, data)` reads
them back, led by the record's type hints (resolved once per class and cached). A new record in
`domain/` needs no mapping of its own: its fields are its shape. What each hint reads:

- a nested record: a dict of its fields (unknown keys are ignored, missing ones take defaults);
- a record marked `@textual` (a `DatasetRef`): its text, read back with `Cls.parse`;
- `tuple[X, ...]`, `list[X]`, `frozenset[X]`, `Mapping[K, V]`: lists and dicts of X, K, V;
- `X | None`: None or X; a union of records: the record whose fields the keys name;
- an enum (`RunStatus`): its value; `datetime`: ISO 8601 text; a `NewType` or `str` subclass:
  what it wraps. Scalars pass through unchecked: the converter trusts the store it reads.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections import abc as _abc
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

R = TypeVar("R")
T = TypeVar("T", bound=type)
Decode = Callable[[Any], Any]
_SCALARS = frozenset({str, int, float, bool, type(None)})
_TEXTUAL: set[type] = set()


def textual(cls: T) -> T:
    """Mark a record written as one string: `str(value)` to plain, `cls.parse(text)` back."""
    if not callable(getattr(cls, "parse", None)):
        raise TypeError(f"{cls.__name__} needs a parse(text) classmethod to be @textual")
    _TEXTUAL.add(cls)
    return cls


def to_plain(value: Any) -> Any:
    """A JSON-ready copy of a record, tuple, mapping or enum, recursively.

    Example:
        >>> from mloop.domain.run import Metric
        >>> to_plain(Metric("loss", 0.5, 1, 0.0))
        {'key': 'loss', 'value': 0.5, 'step': 1, 'timestamp': 0.0}
    """
    kind: Any = type(value)  # a class: hashable, whatever mypy makes of type[...]
    if kind in _SCALARS:
        return value
    if kind in _TEXTUAL:
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_plain(getattr(value, name)) for name in _names(kind)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [to_plain(v) for v in value]
    isoformat = getattr(value, "isoformat", None)  # a datetime, without importing the module
    return value if isoformat is None else isoformat()


def from_plain(cls: type[R], data: Any) -> R:
    """The record `to_plain` made `data` from.

    Example:
        >>> from mloop.domain.run import Metric
        >>> from_plain(Metric, {"key": "loss", "value": 0.5, "step": 1, "timestamp": 0.0})
        Metric(key='loss', value=0.5, step=1, timestamp=0.0)
    """
    hint: Any = cls
    result: R = _decoder(hint)(data)
    return result


def structured_fields(cls: type) -> frozenset[str]:
    """Fields whose plain form is a list or a dict: one SQL column holds them as JSON text."""
    return _structured(cls)


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def _structured(cls: type) -> frozenset[str]:
    return frozenset(name for name, hint in _hints(cls).items() if _is_structured(hint))


def _is_structured(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_structured(a) for a in args)
    if typing.get_origin(hint) is not None:
        return typing.get_origin(hint) is not typing.Literal
    return dataclasses.is_dataclass(hint) and hint not in _TEXTUAL


def _same(value: Any) -> Any:
    return value


def _float(value: Any) -> Any:
    return float(value) if type(value) is int else value


@functools.cache
def _decoder(hint: Any) -> Decode:
    """How to read plain data as `hint`; built once per hint (records lazily, as they nest)."""
    if hint is Any or hint is object or hint in (str, int, bool):
        return _same
    if hint is float:
        return _float
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union(args)
    if origin is typing.Literal:
        return _same
    if origin is tuple:
        return _tuple(args)
    if origin in (list, set, frozenset) or origin in _ABSTRACT_SEQUENCES:
        item = _decoder(args[0]) if args else _same
        made = frozenset if origin in (frozenset, _abc.Set) else list
        return lambda v: made(map(item, v))
    if origin is dict or origin in _ABSTRACT_MAPPINGS:
        key, val = (_decoder(args[0]), _decoder(args[1])) if args else (_same, _same)
        return lambda v: {key(k): val(x) for k, x in v.items()}
    supertype = getattr(hint, "__supertype__", None)  # a NewType such as Digest
    if supertype is not None:
        return _decoder(supertype)
    if hint is type(None):
        return _same
    if isinstance(hint, type):
        return _class(hint)
    raise TypeError(f"from_plain cannot read a {hint!r}")


def _class(cls: type) -> Decode:
    if cls in _TEXTUAL:
        parse: Decode = cls.parse  # type: ignore[attr-defined]
        return parse
    if dataclasses.is_dataclass(cls):
        return _lazy_reader(cls)
    if issubclass(cls, enum.Enum):
        return cls
    if cls.__module__ == "datetime" and hasattr(cls, "fromisoformat"):  # datetime, date, time
        return lambda v: v if isinstance(v, cls) else cls.fromisoformat(v)
    if issubclass(cls, str | int | float):
        return cls  # a str subclass (or int, float) is built from what it wraps
    raise TypeError(f"from_plain cannot read a {cls.__name__}")


@functools.cache
def _reader(cls: type) -> Decode:
    """A function reading `cls` from a mapping, written out field by field the way `dataclasses`
    writes `__init__`: a row of a listing is read several times faster than by a loop over the
    fields. Built at the first read, so records may nest themselves."""
    env: dict[str, Any] = {"cls": cls, "Mapping": Mapping, "refuse": _not_a_mapping}
    lines = [
        "def read(data):",
        "    if not isinstance(data, Mapping):",
        "        refuse(cls, data)",
    ]
    lines.append("    kw = {}")
    for name, hint in _hints(cls).items():
        decode = _decoder(hint)
        value = f"data[{name!r}]"
        if decode is not _same:
            env[f"read_{name}"] = decode
            value = f"read_{name}({value})"
        lines.append(f"    if {name!r} in data:")
        lines.append(f"        kw[{name!r}] = {value}")
    lines.append("    return cls(**kw)")
    exec("\n".join(lines), env)  # noqa: S102 - the source is built from field names only
    read: Decode = env["read"]
    return read


def _not_a_mapping(cls: type, data: Any) -> None:
    raise TypeError(f"a {cls.__name__} is read from a mapping, not {type(data).__name__}")


def _lazy_reader(cls: type) -> Decode:
    """`_reader(cls)`, looked up at the first read: a record may hold records of its own kind."""
    found: list[Decode] = []

    def read(data: Any) -> Any:
        if not found:
            found.append(_reader(cls))
        return found[0](data)

    return read


def _tuple(args: tuple[Any, ...]) -> Decode:
    if not args:
        return tuple
    if len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])
        return lambda v: tuple(map(item, v))
    items = tuple(_decoder(a) for a in args)
    return lambda v: tuple(read(x) for read, x in zip(items, v, strict=True))


def _union(args: tuple[Any, ...]) -> Decode:
    options = tuple(a for a in args if a is not type(None))
    if len(options) < len(args):
        inner = _union(options) if len(options) > 1 else _decoder(options[0])
        return lambda v: None if v is None else inner(v)
    if all(a in _SCALARS for a in options):
        return _same  # e.g. `str | float`: JSON keeps which one it was
    if all(dataclasses.is_dataclass(a) and a not in _TEXTUAL for a in options):
        return _record_union(options)
    raise TypeError(f"from_plain cannot tell the members of {' | '.join(map(str, options))} apart")


def _record_union(options: tuple[type, ...]) -> Decode:
    """Records told apart by their fields: a union whose members share them is refused (once
    a record of it is read), since plain data would not say which member it was."""
    shapes = {frozenset(_names(cls)): cls for cls in options}
    if len(shapes) < len(options):
        names = ", ".join(cls.__name__ for cls in options)
        raise TypeError(f"from_plain cannot tell {names} apart: some have the same fields")

    def read(data: Any) -> Any:
        found = shapes.get(frozenset(data))
        if found is None:
            raise TypeError(f"no member of {', '.join(c.__name__ for c in options)} has {data}")
        return _reader(found)(data)

    return read


_ABSTRACT_SEQUENCES = (_abc.Sequence, _abc.Iterable, _abc.Collection, _abc.Set)
_ABSTRACT_MAPPINGS = (_abc.Mapping, _abc.MutableMapping)


def human_size(n: int) -> str:
    """Bytes as people read them (binary units), for labels and listings alike.

    Example:
        >>> human_size(3_565_158)
        '3.4 MiB'
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
