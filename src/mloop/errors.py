"""Every error a user can meet, as one tree with stable codes.

An `MloopError` carries a one-line `message` (what is wrong, naming the object) and a `hint` (how
to fix it, ideally a command to paste). Each class has a stable `code` and an `http_status`, so the
REST server can answer with `{"error": {"code", "message", "hint"}}` and the HTTP store client can
raise the very same class again from the code. The CLI prints `error: …` and `hint: …` and exits 1.

    MloopError                      mloop_error             500
    ├── InvalidInput                invalid_input           400
    │   ├── InvalidName             invalid_name            400
    │   ├── InvalidAddress          invalid_address         400
    │   ├── InvalidPath             invalid_path            400
    │   ├── FilterSyntaxError       invalid_filter          400
    │   ├── PipelineError           invalid_pipeline        400
    │   ├── NeedsTrust              needs_trust             400
    │   ├── MethodNotAllowed        method_not_allowed      405   *
    │   ├── PayloadTooLarge         payload_too_large       413   *
    │   ├── UnsupportedMediaType    unsupported_media_type  415   *
    │   └── HeadersTooLarge         headers_too_large       431   *
    ├── ConfigError                 config_error            400
    ├── Unauthorized                unauthorized            401   *
    ├── NotFound                    not_found               404
    │   ├── ProjectNotFound         project_not_found       404
    │   └── ModelNotFound           model_not_found         404   *
    ├── RequestTimeout              request_timeout         408   *
    ├── AlreadyExists               already_exists          409
    ├── Conflict                    conflict                409
    │   └── GateFailed              gate_failed             409
    ├── CorruptArtifact             corrupt_artifact        422
    ├── StepFailed                  step_failed             422
    ├── ValidationFailed            validation_failed       422
    ├── InternalError               internal_error          500   *
    ├── ModelFailed                 model_failed            500
    ├── MissingDependency           missing_dependency      501
    ├── Overloaded                  overloaded              503   *
    │   └── TooManyConnections      too_many_connections    503   *
    ├── StoreUnavailable            store_unavailable       503
    └── Timeout                     timeout                 504   *

    * met only over HTTP: the model server answers with them (its error bodies are built from
      these classes, so a code it sends is always one the HTTP client can raise again).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

ERRORS_BY_CODE: dict[str, type[MloopError]] = {}


class MloopError(Exception):
    """Root of every error mloop raises on purpose; anything else is a bug."""

    code: ClassVar[str] = "mloop_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The only use of __init_subclass__ in mloop: the code -> class map for the HTTP client.
        if cls.code in ERRORS_BY_CODE:
            raise TypeError(f"error code {cls.code!r} is used twice")
        ERRORS_BY_CODE[cls.code] = cls

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return self.message


ERRORS_BY_CODE[MloopError.code] = MloopError


class InvalidInput(MloopError):
    code = "invalid_input"
    http_status = 400


class MethodNotAllowed(InvalidInput):
    code = "method_not_allowed"
    http_status = 405


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"
    http_status = 415


class HeadersTooLarge(InvalidInput):
    code = "headers_too_large"
    http_status = 431


class InvalidName(InvalidInput):
    code = "invalid_name"


class InvalidAddress(InvalidInput):
    code = "invalid_address"


class InvalidPath(InvalidInput):
    code = "invalid_path"


class FilterSyntaxError(InvalidInput):
    code = "invalid_filter"


class PipelineError(InvalidInput):
    """A pipeline or step definition mloop cannot run: found before anything runs."""

    code = "invalid_pipeline"


class NeedsTrust(InvalidInput):
    """Loading a model would need the caller's trust: it is a pickle or Python model (loading
    runs code from the file), or a skops file with types off mloop's audited list.

    `subject` names what did not load ("churn:3", "the champion churn:2") and `reason` why.
    The hint names the way to give trust where the caller is, which only the caller knows:
    `needing()` gives the same error for another place (`CLI` on the command line, `STEP` in a
    pipeline step; `SDK` is the default).
    """

    code = "needs_trust"
    SDK: ClassVar[str] = "pass trust=True"
    CLI: ClassVar[str] = "add --trust"
    STEP: ClassVar[str] = "mark the step @mloop.step(trust=True)"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        reason: str | None = None,
        subject: str = "the model",
        option: str = SDK,
    ) -> None:
        super().__init__(message, hint)
        self.reason = reason or message
        self.subject = subject
        self.option = option

    @classmethod
    def of(cls, reason: str, subject: str = "the model", option: str = SDK) -> NeedsTrust:
        """The error for `subject`, which cannot load without trust because of `reason`.

        Example:
            >>> NeedsTrust.of("it is a pickle", "churn:3", NeedsTrust.CLI).hint
            'if you trust where churn:3 came from, add --trust'
        """
        return cls(
            f"{subject} needs trust to load: {reason}",
            f"if you trust where {subject} came from, {option}",
            reason=reason,
            subject=subject,
            option=option,
        )

    def needing(self, option: str | None = None, subject: str | None = None) -> NeedsTrust:
        """The same refusal, for another subject or with the option of another place."""
        return NeedsTrust.of(self.reason, subject or self.subject, option or self.option)


class ConfigError(MloopError):
    code = "config_error"
    http_status = 400


class Unauthorized(MloopError):
    """A request without the bearer token the server asks for (or with a wrong one)."""

    code = "unauthorized"
    http_status = 401


class NotFound(MloopError):
    code = "not_found"
    http_status = 404


class ProjectNotFound(NotFound):
    code = "project_not_found"


class ModelNotFound(NotFound):
    """A model server asked for a model other than the one it serves."""

    code = "model_not_found"


class RequestTimeout(MloopError):
    """The client was too slow to send its request (408); `Timeout` is the server too slow."""

    code = "request_timeout"
    http_status = 408


class AlreadyExists(MloopError):
    code = "already_exists"
    http_status = 409


class Conflict(MloopError):
    code = "conflict"
    http_status = 409


class GateFailed(Conflict):
    """A model version did not pass its promotion gates; the message gives the numbers."""

    code = "gate_failed"


class CorruptArtifact(MloopError):
    code = "corrupt_artifact"
    http_status = 422


class StepFailed(MloopError):
    """A step's own code raised (after its retries); the run records the traceback."""

    code = "step_failed"
    http_status = 422


class ValidationFailed(MloopError):
    """Data did not pass validation against its reference; the message says which checks."""

    code = "validation_failed"
    http_status = 422


class InternalError(MloopError):
    """Anything raised that is not an MloopError: a bug, with its traceback in the server's log."""

    code = "internal_error"
    http_status = 500


class ModelFailed(MloopError):
    """The model's own code raised on an input that passed every check of the request: a bug
    in the model (or the code it ships with), not the client's mistake, so a 5xx; the server
    logs the traceback."""

    code = "model_failed"
    http_status = 500


# The optional libraries, by the name they are imported as: (distribution, mloop extra). A core
# install (`pip install mloop`) tracks runs and keeps the registry; each extra adds a part.
EXTRAS: dict[str, tuple[str, str]] = {
    "pandas": ("pandas", "data"),
    "pyarrow": ("pyarrow", "data"),
    "pandera": ("pandera", "data"),
    "scipy": ("scipy", "data"),
    "uvicorn": ("uvicorn", "serve"),
    "httptools": ("httptools", "serve"),
    "uvloop": ("uvloop", "serve"),
    "sklearn": ("scikit-learn", "sklearn"),
    "skops": ("skops", "sklearn"),
    "psycopg": ("psycopg", "postgres"),
    "s3fs": ("s3fs", "s3"),
    "ray": ("ray", "ray"),
    "nbclient": ("nbclient", "notebooks"),
    "nbformat": ("nbformat", "notebooks"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "plotly": ("plotly", "report"),
}


class MissingDependency(MloopError):
    """A part of mloop whose library is not installed; the hint is the pip command."""

    code = "missing_dependency"
    http_status = 501

    @classmethod
    def for_import(cls, exc: ImportError) -> MissingDependency | None:
        """The error for an import of an optional library that failed, naming its extra;
        None when the missing module is none of mloop's optional libraries (a bug, or the
        user's own code).

        Example:
            >>> MissingDependency.for_import(ModuleNotFoundError(name="pandas")).hint
            "pip install 'mloop[data]'"
        """
        top = (exc.name or "").partition(".")[0]
        if not isinstance(exc, ModuleNotFoundError) or top not in EXTRAS:
            return None
        package, extra = EXTRAS[top]
        return cls(
            f"this needs {package} (mloop's {extra} extra), which is not installed",
            f"pip install 'mloop[{extra}]'",
        )


@contextmanager
def extras_named() -> Iterator[None]:
    """Turn a failed import of an optional library into `MissingDependency` with its pip
    command; any other error passes unchanged. Used where people call in: the CLI, the SDK.

    Example:
        >>> with extras_named():  # doctest: +SKIP
        ...     import pandas
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        known = MissingDependency.for_import(exc)
        if known is None:
            raise
        raise known from exc


class Overloaded(MloopError):
    """The server turned a request away rather than queue it into a time-out (retry later)."""

    code = "overloaded"
    http_status = 503


class TooManyConnections(Overloaded):
    code = "too_many_connections"


class StoreUnavailable(MloopError):
    code = "store_unavailable"
    http_status = 503


class Timeout(MloopError):
    """No answer within the server's time-out for a whole request (504)."""

    code = "timeout"
    http_status = 504


def error_from_dict(body: dict[str, str | None]) -> MloopError:
    """Rebuild the error a server sent, as the same class, so callers can catch it by type."""
    cls = ERRORS_BY_CODE.get(str(body.get("code")), MloopError)
    return cls(str(body.get("message") or "unknown error"), body.get("hint"))
