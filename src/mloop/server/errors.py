"""The error envelope every HTTP answer of mloop uses: `{"error": {"code", "message", "hint"}}`.

Every body is built from an `MloopError` class (`mloop.errors`), which carries the code and the
HTTP status, the errors that exist only at the HTTP level (body too large, wrong content type,
overload, time-out) included: a client meets only codes the registry knows, and the HTTP client
raises the same class again.
"""

from __future__ import annotations

import orjson

from mloop.errors import MloopError


def error_body(error: type[MloopError], message: str, hint: str | None = None) -> bytes:
    """The JSON body of an answer with `error`'s code (its status is `error.http_status`).

    Example:
        >>> from mloop.errors import NotFound
        >>> error_body(NotFound, "no route /x")
        b'{"error":{"code":"not_found","message":"no route /x","hint":null}}'
    """
    return orjson.dumps({"error": {"code": error.code, "message": message, "hint": hint}})


def from_error(exc: MloopError, hint: str | None = None) -> tuple[int, bytes]:
    """The status and body for an `MloopError` (its own code and status); `hint` stands in
    when the error has none of its own.

    Example:
        >>> from mloop.errors import NotFound
        >>> from_error(NotFound("no model 'x'"))[0]
        404
    """
    return exc.http_status, error_body(type(exc), exc.message, exc.hint or hint)
