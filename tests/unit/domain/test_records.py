"""Every record in `domain/` goes to plain data and back unchanged, through JSON too.

The records are discovered, not listed, so a new record is covered the day it lands; instances
are generated from the same type hints the converter reads (seeded, so a failure repeats).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import pkgutil
import random
import types
import typing
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, NewType

import pytest

import mloop.domain
from mloop.domain import feature_summary, query
from mloop.domain.model import ModelVersion
from mloop.domain.names import DatasetRef, ModelRef
from mloop.domain.records import _TEXTUAL, from_plain, structured_fields, to_plain
from mloop.domain.run import Run, RunStatus
from mloop.errors import MloopError

INSTANCES = 40
MAX_DEPTH = 3
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
TEXT = ("", "sales", "ünïcode ✓", "a:b@c/d", "line\nbreak", "0", "null")
# The filter tree is a parse tree, not a record that travels: its And and Or have the same
# fields, so plain data would not say which one it was. The converter refuses it loudly.
REFUSED = {query.And, query.Or, query.Not}


def domain_records() -> list[type]:
    found: list[type] = []
    for module in pkgutil.iter_modules(mloop.domain.__path__, "mloop.domain."):
        loaded = importlib.import_module(module.name)
        found.extend(
            value
            for value in vars(loaded).values()
            if isinstance(value, type)
            and dataclasses.is_dataclass(value)
            and value.__module__ == module.name
        )
    return sorted(set(found), key=lambda c: (c.__module__, c.__name__))


# Drift's per-feature summary holds numpy arrays (1,000 bins) and converts itself
# (`FeatureSummary.to_plain`/`from_plain`, round-tripped in tests/unit/domain/test_drift.py):
# a cache of numbers, not a record the stores keep.
SELF_CONVERTING = {feature_summary.FeatureSummary}
RECORDS = [c for c in domain_records() if c not in REFUSED | SELF_CONVERTING]


def _name(rng: random.Random) -> str:
    first = rng.choice(NAME_CHARS)
    return first + "".join(rng.choice(NAME_CHARS + "-") for _ in range(rng.randint(0, 8))) + "z"


def _json_value(rng: random.Random, depth: int) -> Any:
    choices: list[Any] = [None, rng.random(), rng.randint(-5, 5), rng.choice(TEXT), True]
    if depth < MAX_DEPTH:
        choices.append([_json_value(rng, depth + 1) for _ in range(rng.randint(0, 2))])
        choices.append({rng.choice(TEXT): _json_value(rng, depth + 1)})
    return rng.choice(choices)


def generate(hint: Any, rng: random.Random, depth: int = 0, *, named: bool = False) -> Any:
    """A value of type `hint`; `named` gives strings that follow the naming rule (for refs)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _json_value(rng, depth)
    if hint is str:
        return _name(rng) if named else rng.choice((*TEXT, _name(rng)))
    if hint is bool:
        return rng.random() < 0.5
    if hint is int:
        return rng.randint(1, 2**63 - 1) if named else rng.choice((0, -1, 2**63 - 1, 7))
    if hint is float:
        return rng.choice((0.0, -1.5, 1e300, 5e-324, rng.uniform(-1e6, 1e6)))
    if hint is type(None):
        return None
    if origin in (typing.Union, types.UnionType):
        return generate(rng.choice(args), rng, depth, named=named)
    if origin is typing.Literal:
        return rng.choice(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            count = 0 if depth >= MAX_DEPTH else rng.randint(0, 3)
            return tuple(generate(args[0], rng, depth + 1) for _ in range(count))
        return tuple(generate(a, rng, depth + 1) for a in args)
    if origin is frozenset:
        return frozenset(generate(args[0], rng, depth + 1) for _ in range(rng.randint(0, 3)))
    if origin in (dict, Mapping):
        count = 0 if depth >= MAX_DEPTH else rng.randint(0, 3)
        return {
            generate(args[0], rng, depth + 1): generate(args[1], rng, depth + 1)
            for _ in range(count)
        }
    if hint is datetime:
        return datetime.fromtimestamp(rng.uniform(0, 2e9), tz=UTC)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return rng.choice(list(hint))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return generate_record(hint, rng, depth + 1)
    raise AssertionError(f"the generator does not know {hint!r}: teach it, as from_plain was")


def generate_record(cls: type, rng: random.Random, depth: int = 0) -> Any:
    """A record with generated fields; a record that checks its fields (a ref naming both a
    version and an alias) refuses some, and another is drawn."""
    hints = typing.get_type_hints(cls)
    named = cls in _TEXTUAL
    for _ in range(100):
        values = {
            f.name: generate(hints[f.name], rng, depth, named=named)
            for f in dataclasses.fields(cls)
        }
        try:
            return cls(**values)
        except MloopError:
            continue
    raise AssertionError(f"no valid {cls.__name__} in 100 draws")


Sha = NewType("Sha", str)


class Upper(str):
    __slots__ = ()


@dataclasses.dataclass(frozen=True)
class Stamped:
    """What no domain record holds yet, but the converter reads: times, NewTypes, str kinds."""

    at: datetime
    sha: Sha
    label: Upper
    day: date | None = None


def test_times_newtypes_and_str_kinds_round_trip() -> None:
    at = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    record = Stamped(at, Sha("ab" * 32), Upper("X"), date(2026, 1, 31))
    plain = to_plain(record)
    assert plain == {"at": at.isoformat(), "sha": "ab" * 32, "label": "X", "day": "2026-01-31"}
    back = from_plain(Stamped, json.loads(json.dumps(plain)))
    assert back == record and type(back.label) is Upper and type(back.at) is datetime


def test_records_are_discovered() -> None:
    names = {c.__name__ for c in RECORDS}
    assert {"Run", "ModelVersion", "DatasetVersion", "Event", "LineageNode"} <= names


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_round_trip(cls: type) -> None:
    rng = random.Random(f"{cls.__module__}.{cls.__name__}")
    for _ in range(INSTANCES):
        record = generate_record(cls, rng)
        plain = to_plain(record)
        assert from_plain(cls, plain) == record
        text = json.dumps(plain, allow_nan=False)
        assert from_plain(cls, json.loads(text)) == record


@pytest.mark.parametrize("cls", sorted(REFUSED, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_a_union_of_records_with_the_same_fields_is_refused(cls: type) -> None:
    record = generate_record(cls, random.Random(0))
    with pytest.raises(TypeError, match=r"cannot tell .*And, Or, Not apart"):
        from_plain(cls, to_plain(record))


def test_plain_data_is_read_by_name_with_defaults_and_extra_keys() -> None:
    plain = {"id": "ab12", "name": "r", "status": "lost", "started": 1, "column_added_later": 3}
    run = from_plain(Run, plain)
    assert run == Run("ab12", "r", RunStatus.LOST, 1.0)
    assert isinstance(run.started, float) and run.status is RunStatus.LOST


@pytest.mark.parametrize(
    ("cls", "text"),
    [
        (DatasetRef, "sales:3"),
        (DatasetRef, "sales"),
        (ModelRef, "churn@champion"),
        (ModelRef, "churn:12"),
        (ModelRef, "churn"),
    ],
)
def test_a_ref_is_its_text_in_plain_data(cls: type, text: str) -> None:
    ref = cls.parse(text)  # type: ignore[attr-defined]
    assert to_plain(ref) == str(ref) == text
    assert from_plain(cls, text) == ref
    assert to_plain(
        ModelVersion("m", 1, 0.0, "ana", "sklearn", "d", 1, datasets=(DatasetRef("sales", 3),))
    )["datasets"] == ["sales:3"]


def test_structured_fields_are_the_lists_and_dicts() -> None:
    assert structured_fields(Run) == {
        "code",
        "params",
        "metrics",
        "tags",
        "inputs",
        "outputs",
    }
