"""The error envelope every HTTP answer of mloop uses: `{"error": {"code", "message", "hint"}}`.

Every body is built from an `MloopError` class (`mloop.errors`), which carries the code and the
HTTP status, the errors that exist only at the HTTP level (body too large, wrong content type,
overload, time-out) included: a client meets only codes the registry knows, and the HTTP client
raises the same class again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from mloop.errors import (
    InternalError,
    MloopError,
    ModelNotFound,
    NotFound,
    Overloaded,
    RequestTimeout,
    Unauthorized,
)

if TYPE_CHECKING:
    from mloop.services.serving.settings import ServeSettings


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


INTERNAL = error_body(
    InternalError,
    "the server failed to answer this request",
    "this is a bug in mloop or in the model; the server's log has the traceback",
)


class Refusals:
    """The model server's refusals, made once: their bodies name what is served (`label`)
    and the limits that turned the request away."""

    def __init__(self, label: str, settings: ServeSettings) -> None:
        self.busy = error_body(
            Overloaded,
            f"{label} has {settings.max_concurrency} requests in flight and "
            f"{settings.max_queue} waiting",
            f"retry after {settings.retry_after} s, or start the server with more --workers",
        )
        self.busy_bodies = error_body(
            Overloaded,
            f"{label} holds {settings.max_body_memory} bytes of request bodies already",
            f"retry after {settings.retry_after} s, send smaller bodies, or start the server "
            "with more --workers or a larger --max-body-memory",
        )
        self.slow_body = error_body(
            RequestTimeout,
            f"the body did not arrive within {min(settings.body_timeout, settings.timeout):g} s",
            "send the body at once, or raise the server's --body-timeout",
        )
        self.unauthorized = error_body(
            Unauthorized,
            "this server needs a bearer token",
            "send the header Authorization: Bearer TOKEN (the server's MLOOP_SERVE_TOKEN)",
        )


def not_found(name: str, path: str) -> tuple[int, bytes]:
    """The answer to a path no route takes, on a server whose routes carry `name`: another
    model's path says which model this server serves.

    Example:
        >>> not_found("churn", "/v2/models/fraud/infer")[0]
        404
    """
    if path.startswith("/v2/models/") and not path.startswith(f"/v2/models/{name}/"):
        message = f"this server serves model {name!r}, not {path.split('/')[3]!r}"
        return ModelNotFound.http_status, error_body(
            ModelNotFound, message, f"use /v2/models/{name}/infer"
        )
    if path.startswith("/v1/models/"):
        asked = path.removeprefix("/v1/models/").split(":")[0]
        message = f"this server serves model {name!r}, not {asked!r}"
        return ModelNotFound.http_status, error_body(
            ModelNotFound, message, f"use /v1/models/{name}:predict"
        )
    hint = "see /openapi.json for the routes; predict at /invocations or /v2/models/NAME/infer"
    return NotFound.http_status, error_body(NotFound, f"no route {path}", hint)
