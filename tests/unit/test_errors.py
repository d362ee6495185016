"""The error tree: stable, unique codes, and a round trip through the wire format by code."""

from __future__ import annotations

import gc
import re

import pytest

import mloop.errors
from mloop.errors import (
    ERRORS_BY_CODE,
    FilterSyntaxError,
    InvalidInput,
    MloopError,
    NotFound,
    error_from_dict,
)


def every_error_class() -> list[type[MloopError]]:
    found: list[type[MloopError]] = [MloopError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


ERRORS = every_error_class()


def test_every_code_is_unique_and_maps_back_to_its_class() -> None:
    codes = [cls.code for cls in ERRORS]

    assert len(codes) == len(set(codes))
    assert {code: ERRORS_BY_CODE[code] for code in codes} == {cls.code: cls for cls in ERRORS}
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", code) for code in codes)


def test_a_reused_code_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="'not_found' is used twice"):

        class Again(MloopError):
            code = "not_found"

    assert ERRORS_BY_CODE["not_found"] is NotFound
    gc.collect()  # the half-made class lingers in __subclasses__() until collected
    assert [c.__name__ for c in MloopError.__subclasses__() if c.__name__ == "Again"] == []


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.code)
def test_error_from_dict_rebuilds_the_same_class(cls: type[MloopError]) -> None:
    sent = cls("run 3f2a is gone", "see `mloop runs list`")

    rebuilt = error_from_dict(sent.to_dict())

    assert type(rebuilt) is cls
    assert (rebuilt.message, rebuilt.hint, str(rebuilt)) == (
        "run 3f2a is gone",
        "see `mloop runs list`",
        "run 3f2a is gone",
    )
    assert rebuilt.to_dict() == {"code": cls.code, "message": sent.message, "hint": sent.hint}


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.code)
def test_each_class_is_drawn_in_the_module_tree_with_its_status(cls: type[MloopError]) -> None:
    assert 400 <= cls.http_status <= 599
    line = rf"\b{cls.__name__}\s+{cls.code}\s+{cls.http_status}\b"
    assert re.search(line, mloop.errors.__doc__ or ""), f"{cls.__name__} is missing from the tree"


def test_subclasses_inherit_their_parents_status() -> None:
    assert FilterSyntaxError.http_status == InvalidInput.http_status == 400
    assert issubclass(FilterSyntaxError, InvalidInput)


@pytest.mark.parametrize(
    ("body", "cls", "message"),
    [
        ({"code": "no_such_code", "message": "odd", "hint": None}, MloopError, "odd"),
        ({"code": "not_found", "message": None, "hint": None}, NotFound, "unknown error"),
        ({}, MloopError, "unknown error"),
    ],
    ids=["unknown-code", "no-message", "empty-body"],
)
def test_error_from_dict_copes_with_what_it_does_not_know(
    body: dict[str, str | None], cls: type[MloopError], message: str
) -> None:
    rebuilt = error_from_dict(body)

    assert (type(rebuilt), rebuilt.message, rebuilt.hint) == (cls, message, None)
