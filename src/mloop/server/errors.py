"""The error envelope every HTTP answer of mloop uses: `{"error": {"code", "message", "hint"}}`.

`MloopError` carries its own code and HTTP status (`mloop.errors`); the few errors that exist
only at the HTTP level (body too large, wrong content type, overload, time-out) are made here
with the same shape, so a client handles one format.
"""

from __future__ import annotations

import orjson

from mloop.errors import MloopError


def error_body(code: str, message: str, hint: str | None = None) -> bytes:
    """The JSON body of an error answer.

    Example:
        >>> error_body("not_found", "no route /x")
        b'{"error":{"code":"not_found","message":"no route /x","hint":null}}'
    """
    return orjson.dumps({"error": {"code": code, "message": message, "hint": hint}})


def from_error(exc: MloopError, hint: str | None = None) -> tuple[int, bytes]:
    """The status and body for an `MloopError` (its own code and status); `hint` stands in
    when the error has none of its own.

    Example:
        >>> from mloop.errors import NotFound
        >>> from_error(NotFound("no model 'x'"))[0]
        404
    """
    return exc.http_status, error_body(exc.code, exc.message, exc.hint or hint)
