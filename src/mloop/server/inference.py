"""The model-serving app: one model version behind MLflow's and the Open Inference Protocol's
endpoints, with health checks, Prometheus metrics and an OpenAPI document.

A raw ASGI app on purpose. A one-row predict costs ~110 µs; a routing framework's middleware,
dependency resolution and response classes cost as much again per request. Here the routes are
a dict from path to handlers, request bodies go from orjson straight to one numpy array
(`services/serving/requests.py`), and every answer is two ASGI messages with headers made once.
Each response names the model version that answered in the `mloop-model: NAME:VERSION` header.

Per predict request: content type and declared size are checked from the headers (415, 413;
`media.py` says which bodies each route takes: JSON, CSV, binary tensors); the body is read
before any concurrency slot is taken, under its own time-out (408), so a slow sender holds a
connection and never a slot; then a slot is taken or the request is turned away (503 +
Retry-After), and parse, signature checks and the micro-batched predict follow. The whole
request, body included, runs under one time-out (504). A request holding text values training
never saw is answered as usual, with an `mloop-warning` header naming them and a count in
`mloop_unknown_categories_total`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson

from mloop._version import __version__
from mloop.errors import (
    InternalError,
    MethodNotAllowed,
    MloopError,
    ModelFailed,
    ModelNotFound,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    Timeout,
    Unauthorized,
    UnsupportedMediaType,
)
from mloop.server import oip
from mloop.server.errors import error_body, from_error
from mloop.server.limits import (
    Admission,
    BodyBudget,
    ClientGone,
    OverBudget,
    Receive,
    TooLarge,
    check_headers,
    read_body,
)
from mloop.server.media import CSV, HINTS, INFER, INVOCATIONS, V1, Media, media_type
from mloop.server.openapi import openapi_document
from mloop.services.serving.batcher import MicroBatcher
from mloop.services.serving.metrics import ENDPOINTS, ServingMetrics
from mloop.services.serving.predictor import Predictor, failure
from mloop.services.serving.requests import (
    Batch,
    RequestReader,
    describe_unknown,
    mlflow_response,
    parse_body,
)
from mloop.services.serving.settings import ServeSettings as ServeSettings  # where it is declared
from mloop.services.serving.tables import read_csv

logger = logging.getLogger("mloop.server")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, bytes, Headers]
Handler = Callable[[dict[str, Any], Receive], Coroutine[Any, Any, Reply]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_E = {name: i for i, name in enumerate(ENDPOINTS)}


class InferenceApp:
    """The ASGI app serving one `Predictor`; build it with `create_app`."""

    def __init__(
        self, predictor: Predictor, settings: ServeSettings, metrics: ServingMetrics
    ) -> None:
        self.predictor = predictor
        self.settings = settings
        self.metrics = metrics
        self.ready = True
        self._last_client: Any = None
        self.reader = RequestReader(
            predictor.signature, predictor.wants_frame, predictor.categories
        )
        self.categories = {name: i for i, name in enumerate(self.reader.categories)}
        metrics.watch_categories(list(self.categories))
        self.batcher = MicroBatcher(
            predictor.predict,
            max_batch_size=settings.max_batch_size,
            max_wait=settings.max_wait,
            batching=settings.batching,
            mode=settings.predict_mode,
            observe=metrics.batch,
        )
        self.admission = Admission(settings.max_concurrency, settings.max_queue)
        self.bodies = BodyBudget(settings.max_body_memory)
        name, version = predictor.name, predictor.version
        self.label = f"{name}:{version}"
        model = (b"mloop-model", self.label.encode())
        self.json: Headers = [(b"content-type", b"application/json"), model]
        self.text: Headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"), model]
        self.binary: Headers = [(b"content-type", b"application/octet-stream"), model]
        self.output = oip.output_name(predictor.signature)
        self.inputs_hint = f"GET /v2/models/{name} lists the inputs, their types and nullability"
        self.busy = error_body(
            Overloaded,
            f"{self.label} has {settings.max_concurrency} requests in flight and "
            f"{settings.max_queue} waiting",
            f"retry after {settings.retry_after} s, or start the server with more --workers",
        )
        self.busy_headers = [*self.json, (b"retry-after", str(settings.retry_after).encode())]
        self.busy_bodies = error_body(
            Overloaded,
            f"{self.label} holds {settings.max_body_memory} bytes of request bodies already",
            f"retry after {settings.retry_after} s, send smaller bodies, or start the server "
            "with more --workers or a larger --max-body-memory",
        )
        self.slow_body = error_body(
            RequestTimeout,
            f"the body did not arrive within {min(settings.body_timeout, settings.timeout):g} s",
            "send the body at once, or raise the server's --body-timeout",
        )
        static = {
            "/healthz": {"status": "ok"},
            "/ping": {"status": "ok"},
            "/v2/health/live": {"live": True},
            "/v2": {"name": "mloop", "version": __version__, "extensions": ["binary_tensor_data"]},
            f"/v2/models/{name}": oip.metadata(name, version, predictor.signature),
            f"/v2/models/{name}/versions/{version}": oip.metadata(
                name, version, predictor.signature
            ),
            "/openapi.json": openapi_document(name, version, predictor.signature),
        }
        self.static = {path: orjson.dumps(value) for path, value in static.items()}
        get: dict[str, Handler] = {"GET": self._static, "HEAD": self._static}
        ready: dict[str, Handler] = {"GET": self._ready, "HEAD": self._ready}
        infer: dict[str, Handler] = {"POST": self._infer}
        self.routes: dict[str, tuple[int, dict[str, Handler]]] = {
            "/invocations": (_E["invocations"], {"POST": self._invocations}),
            f"/v1/models/{name}:predict": (_E["invocations"], {"POST": self._predict_v1}),
            f"/v1/models/{name}": (_E["health"], {"GET": self._ready_v1, "HEAD": self._ready_v1}),
            f"/v2/models/{name}/infer": (_E["infer"], infer),
            f"/v2/models/{name}/versions/{version}/infer": (_E["infer"], infer),
            f"/v2/models/{name}": (_E["metadata"], get),
            f"/v2/models/{name}/versions/{version}": (_E["metadata"], get),
            "/v2": (_E["metadata"], get),
            f"/v2/models/{name}/ready": (_E["health"], ready),
            "/v2/health/ready": (_E["health"], ready),
            "/readyz": (_E["health"], ready),
            "/v2/health/live": (_E["health"], get),
            "/healthz": (_E["health"], get),
            "/ping": (_E["health"], get),
            "/health": (_E["health"], get),
            "/metrics": (_E["metrics"], {"GET": self._metrics, "HEAD": self._metrics}),
            "/openapi.json": (_E["openapi"], get),
        }
        self.static["/health"] = self.static["/ping"]
        # Probes (kubelet, load balancers) carry no token: health and readiness stay open.
        self.open_paths = {
            "/healthz",
            "/readyz",
            "/ping",
            "/health",
            "/v2/health/live",
            "/v2/health/ready",
            f"/v2/models/{name}/ready",
            f"/v1/models/{name}",
        }
        self.unauthorized = error_body(
            Unauthorized,
            "this server needs a bearer token",
            "send the header Authorization: Bearer TOKEN (the server's MLOOP_SERVE_TOKEN)",
        )

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        started = time.perf_counter()
        route = self.routes.get(scope["path"])
        if (
            self.settings.token_sha256 is not None
            and scope["path"] not in self.open_paths
            and not self._authorized(scope["headers"])
        ):
            endpoint = route[0] if route is not None else _E["other"]
            status, body = Unauthorized.http_status, self.unauthorized
            headers = [*self.json, (b"www-authenticate", b'Bearer realm="mloop"')]
        elif route is None:
            endpoint, (status, body, headers) = _E["other"], self._not_found(scope["path"])
        else:
            endpoint, methods = route
            handler = methods.get(scope["method"])
            if handler is None:
                allow = ", ".join(methods).encode()
                status = MethodNotAllowed.http_status
                body = error_body(MethodNotAllowed, f"use {allow.decode()}")
                headers = [*self.json, (b"allow", allow)]
            else:
                try:
                    status, body, headers = await handler(scope, receive)
                except ClientGone:
                    self.metrics.request(endpoint, 499, time.perf_counter() - started)
                    return
                except Exception:
                    logger.exception("error answering %s %s", scope["method"], scope["path"])
                    status, body, headers = InternalError.http_status, self._internal, self.json
        if status >= 400 and scope["path"].startswith("/v2"):
            body = oip.error_body(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.request(endpoint, status, time.perf_counter() - started)

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        expected = self.settings.token_sha256
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                presented = hashlib.sha256(token.strip()).digest()
                return expected is not None and hmac.compare_digest(presented, expected)
        return False

    _internal = error_body(
        InternalError,
        "the server failed to answer this request",
        "this is a bug in mloop or in the model; the server's log has the traceback",
    )

    # predict -------------------------------------------------------------------------------
    async def _invocations(self, scope: dict[str, Any], receive: Receive) -> Reply:
        return await self._predict(scope, receive, INVOCATIONS)

    async def _predict_v1(self, scope: dict[str, Any], receive: Receive) -> Reply:
        # KServe's V1 (TensorFlow Serving's REST) protocol: {"instances": [...]} in, MLflow's
        # {"predictions": [...]} shape out; its clients may send no Content-Type.
        return await self._predict(scope, receive, V1)

    async def _ready_v1(self, scope: dict[str, Any], receive: Receive) -> Reply:
        body = {"name": self.predictor.name, "ready": self.ready}
        return (200 if self.ready else 503), orjson.dumps(body), self.json

    async def _infer(self, scope: dict[str, Any], receive: Receive) -> Reply:
        return await self._predict(scope, receive, INFER)

    def _read(self, route: str, media: Media, body: bytes) -> tuple[Batch, Any]:
        """The batch a body holds, and what the answer needs to know of the request."""
        if route == INFER:
            request = oip.read_request(self.reader, body, media.header_length)
            return request.batch, request
        if media.kind == CSV:
            frame = read_csv(body, self.predictor.signature, "the CSV body")
            return self.reader.frame(frame, "the CSV body"), None
        # no true/false in the text: no bool can hide among the numbers, none is looked for
        return self.reader.mlflow(parse_body(body), b"true" in body or b"false" in body), None

    def _write(self, result: Any, request: Any) -> tuple[bytes, Headers]:
        if request is None:
            return mlflow_response(result), self.json
        predictor = self.predictor
        body, length = oip.infer_response(
            result,
            predictor.name,
            predictor.version,
            request.id,
            self.output,
            request.binary_output,
        )
        if length is None:
            return body, self.json
        return body, [*self.binary, (b"inference-header-content-length", b"%d" % length)]

    def _warn(self, batch: Batch, headers: Headers) -> Headers:
        """Count the categories training never saw, and name them in a response header (as
        ASCII: values are shown with repr's escapes, so no client text breaks a header)."""
        for found in batch.unknown:
            self.metrics.unknown_categories(self.categories[found.column], found.count)
        text = describe_unknown(batch.unknown).encode("ascii", "backslashreplace")
        return [*headers, (b"mloop-warning", text[:1024])]

    async def _predict(self, scope: dict[str, Any], receive: Receive, route: str) -> Reply:
        settings = self.settings
        media = media_type(scope["headers"], route)
        problem = check_headers(scope["headers"], settings.max_body_bytes)
        if media.problem is not None or problem is not None:
            error: type[MloopError] = UnsupportedMediaType
            message, hint = media.problem, HINTS[route]
            if problem is not None:
                error, message = PayloadTooLarge, problem
                hint = "send fewer rows per request, or raise --max-body-size"
            # An unread body cannot be skipped safely on a kept-alive connection: close it.
            body = error_body(error, str(message), hint)
            return error.http_status, body, [*self.json, (b"connection", b"close")]
        # One keep-alive connection sends one request at a time: the same client twice in a
        # row means nobody else is sending, and merging has nothing to wait for.
        client = scope.get("client")
        lone = client is not None and client == self._last_client
        self._last_client = client
        admission = self.admission
        if admission.full():  # no slot and no room to wait: not worth reading the body
            return Overloaded.http_status, self.busy, self.busy_headers
        admitted = False
        held = 0  # bytes of this request's body taken from the worker's budget
        self.metrics.enter()
        deadline = asyncio.get_running_loop().time() + settings.timeout
        try:
            # The body first, outside any slot: a client slow to send it holds its own
            # connection, never a slot the clients behind it are waiting for.
            try:
                async with asyncio.timeout(min(settings.body_timeout, settings.timeout)):
                    body = await read_body(receive, settings.max_body_bytes, self.bodies)
            except TimeoutError:
                closing = [*self.json, (b"connection", b"close")]
                return RequestTimeout.http_status, self.slow_body, closing
            except OverBudget:
                closing = [*self.busy_headers, (b"connection", b"close")]
                return Overloaded.http_status, self.busy_bodies, closing
            held = len(body)
            async with asyncio.timeout_at(deadline):
                if not admission.try_enter():
                    if not admission.can_wait():
                        return Overloaded.http_status, self.busy, self.busy_headers
                    await admission.wait()
                admitted = True
                batch, request = self._read(route, media, body)
                try:
                    result = await self.batcher.predict(batch.data, batch.rows, lone)
                except Exception as exc:
                    failed = failure(self.predictor, exc)
                    if isinstance(failed, ModelFailed):
                        logger.error("%s failed to predict", self.label, exc_info=exc)
                    raise failed from exc
                answer, headers = self._write(result, request)
                return 200, answer, self._warn(batch, headers) if batch.unknown else headers
        except TimeoutError:
            message = f"no answer within the time-out of {settings.timeout:g} s"
            hint = "send fewer rows per request, or raise --timeout"
            return Timeout.http_status, error_body(Timeout, message, hint), self.json
        except TooLarge:
            message = f"the body is over the limit of {settings.max_body_bytes} bytes"
            hint = "send fewer rows per request, or raise --max-body-size"
            body = error_body(PayloadTooLarge, message, hint)
            return PayloadTooLarge.http_status, body, [*self.json, (b"connection", b"close")]
        except MloopError as exc:
            status, body = from_error(exc, self.inputs_hint)
            return status, body, self.json
        finally:
            self.bodies.give(held)
            if admitted:
                admission.leave()
            self.metrics.leave()

    # everything else -----------------------------------------------------------------------
    async def _static(self, scope: dict[str, Any], receive: Receive) -> Reply:
        return 200, self.static[scope["path"]], self.json

    async def _ready(self, scope: dict[str, Any], receive: Receive) -> Reply:
        if self.ready:
            body = {"ready": True, "model": self.label}
            return 200, orjson.dumps(body), self.json
        body = {"ready": False, "model": self.label, "reason": "the server is stopping"}
        return 503, orjson.dumps(body), self.json

    async def _metrics(self, scope: dict[str, Any], receive: Receive) -> Reply:
        return 200, self.metrics.render(), self.text

    def _not_found(self, path: str) -> Reply:
        name = self.predictor.name
        if path.startswith("/v2/models/") and not path.startswith(f"/v2/models/{name}/"):
            message = f"this server serves model {name!r}, not {path.split('/')[3]!r}"
            hint = f"use /v2/models/{name}/infer"
            return ModelNotFound.http_status, error_body(ModelNotFound, message, hint), self.json
        if path.startswith("/v1/models/"):
            asked = path.removeprefix("/v1/models/").split(":")[0]
            message = f"this server serves model {name!r}, not {asked!r}"
            hint = f"use /v1/models/{name}:predict"
            return ModelNotFound.http_status, error_body(ModelNotFound, message, hint), self.json
        message = f"no route {path}"
        hint = "see /openapi.json for the routes; predict at /invocations or /v2/models/NAME/infer"
        return NotFound.http_status, error_body(NotFound, message, hint), self.json

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.metrics.ready(True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                self.metrics.ready(False)
                await self.batcher.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    predictor: Predictor,
    settings: ServeSettings | None = None,
    metrics: ServingMetrics | None = None,
) -> InferenceApp:
    """The ASGI app serving `predictor`; run it with uvicorn (`workers.serve` does).

    Example:
        >>> app = create_app(LoadedModel("churn", 3, model, signature))  # doctest: +SKIP
        >>> uvicorn.run(app, loop="uvloop", http="httptools")  # doctest: +SKIP
    """
    metrics = metrics or ServingMetrics(model=predictor.name, version=predictor.version)
    return InferenceApp(predictor, settings or ServeSettings(), metrics)
