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
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    Timeout,
    Unauthorized,
    UnsupportedMediaType,
)
from mloop.server import feedback, oip, routing
from mloop.server.errors import INTERNAL, Refusals, error_body, from_error, not_found
from mloop.server.limits import (
    Admission,
    BodyBudget,
    ClientGone,
    OverBudget,
    Receive,
    TooLarge,
    authorized,
    check_headers,
    read_body,
)
from mloop.server.media import HINTS, INFER, INVOCATIONS, V1, media_type
from mloop.server.slots import (
    SHADOW,
    BatchLog,
    ServedVersion,
    ServingPlan,
    Slot,
    Table,
    loaded_versions,
    make_table,
)
from mloop.services.serving.batcher import cancel
from mloop.services.serving.intervals import Intervals
from mloop.services.serving.metrics import ENDPOINTS, ServingMetrics
from mloop.services.serving.predictor import Predictor, failure
from mloop.services.serving.requests import (
    Batch,
    describe_unknown,
)
from mloop.services.serving.settings import ServeSettings as ServeSettings  # where it is declared
from mloop.services.serving.shadow import Copy, Mirror

logger = logging.getLogger("mloop.server")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, bytes, Headers]
Handler = Callable[[dict[str, Any], Receive], Coroutine[Any, Any, Reply]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_E = {name: i for i, name in enumerate(ENDPOINTS)}
CLOSE = (b"connection", b"close")


class InferenceApp:
    """The ASGI app serving a routing `Table` of model versions; build it with `create_app`
    (one version) or `endpoint_app` (a deployment, followed by `follower.DeploymentFollower`).

    `table` is replaced whole by `swap`, one assignment: a request reads it once, with no
    await between choosing its slot and counting itself in flight there.
    """

    def __init__(
        self,
        table: Table,
        settings: ServeSettings,
        metrics: ServingMetrics,
        intervals: Intervals | None = None,
        batch_log: BatchLog | None = None,
    ) -> None:
        self.table = table
        self.settings = settings
        self.metrics = metrics
        self.intervals = intervals or Intervals(table.name)
        self.mirror = Mirror(settings.shadow_queue)
        self.follower: Any = None  # a DeploymentFollower, started and stopped with the app
        # The prediction log's writer (`services/predictions/log.PredictionLog`), or None:
        # given by `workers.run_worker` after the fork; closed when the app stops.
        self.recorder: Any = None  # set with `log_to`
        # what the batchers hand their logged calls to (the recorder, once there is one)
        self.batch_log = batch_log or BatchLog()
        self._publisher: asyncio.Task[None] | None = None
        self._log_base = metrics.logging()  # a restarted worker's counts go on from here
        self.ready = True
        self._last_client: Any = None
        self.admission = Admission(settings.max_concurrency, settings.max_queue)
        self.bodies = BodyBudget(settings.max_body_memory)
        self.name = name = table.name
        primary = table.primary
        self.categories = {n: i for i, n in enumerate(primary.reader.categories)}
        metrics.watch_categories(list(self.categories))
        self.label = primary.label if table.fixed else f"endpoint {name}"
        self.json: Headers = table.json  # the same for every table of this app
        self.text: Headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        self.text += self.json[1:]
        self.inputs_hint = f"GET /v2/models/{name} lists the inputs, their types and nullability"
        refusals = Refusals(self.label, settings)
        self.busy, self.busy_bodies = refusals.busy, refusals.busy_bodies
        self.slow_body, self.unauthorized = refusals.slow_body, refusals.unauthorized
        self.busy_headers = [*self.json, (b"retry-after", str(settings.retry_after).encode())]
        static = {
            "/healthz": {"status": "ok"},
            "/ping": {"status": "ok"},
            "/v2/health/live": {"live": True},
            "/v2": {"name": "mloop", "version": __version__, "extensions": ["binary_tensor_data"]},
        }
        self.static = {path: orjson.dumps(value) for path, value in static.items()}
        self.static["/health"] = self.static["/ping"]
        get: dict[str, Handler] = {"GET": self._static, "HEAD": self._static}
        ready: dict[str, Handler] = {"GET": self._ready, "HEAD": self._ready}
        infer: dict[str, Handler] = {"POST": self._infer}
        self.routes: dict[str, tuple[int, dict[str, Handler]]] = {
            "/invocations": (_E["invocations"], {"POST": self._invocations}),
            f"/v1/models/{name}:predict": (_E["invocations"], {"POST": self._predict_v1}),
            f"/v1/models/{name}": (_E["health"], {"GET": self._ready_v1, "HEAD": self._ready_v1}),
            f"/v2/models/{name}/infer": (_E["infer"], infer),
            f"/v2/models/{name}": (_E["metadata"], get),
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
            "/feedback": (_E["feedback"], {"POST": self._feedback}),
        }
        # an endpoint's versions by number, past the split (as KServe's versioned routes)
        self.versions_prefix = "\0" if table.fixed else f"/v2/models/{name}/versions/"
        if table.fixed:  # one version, named by its ref: its version routes too
            version = primary.predictor.version
            self.routes[f"/v2/models/{name}/versions/{version}/infer"] = (_E["infer"], infer)
            self.routes[f"/v2/models/{name}/versions/{version}"] = (_E["metadata"], get)
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

    def log_to(self, recorder: Any) -> None:
        """Log every answer, and every shadow's copy beside it, with `recorder` (a
        `PredictionLog`; made in the worker, after the fork)."""
        self.recorder = self.mirror.recorder = self.batch_log.recorder = recorder

    def swap(self, table: Table) -> list[Slot]:
        """Serve `table` from now on; returns the slots it no longer holds (to drain)."""
        old = self.table
        self.table = table
        kept = set(map(id, table.by_index))
        return [slot for slot in old.by_index if id(slot) not in kept]

    def take_interval(self) -> dict[str, Any]:
        """Per-version counts since the last call (this worker's), for the rollout analysis."""
        return self.intervals.take()

    def shadow_summary(self) -> dict[str, Any] | None:
        """This worker's shadow numbers (agreement, drops, predict times), or None: no shadow."""
        shadow = self.table.shadow
        if shadow is None:
            return None
        return {"model": shadow.label, "primary": self.table.primary.label, **self.mirror.summary()}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        started = time.perf_counter()
        route = self.routes.get(scope["path"])
        if route is None and scope["path"].startswith(self.versions_prefix):
            route = self._version_route(scope)
        if (
            self.settings.token_sha256 is not None
            and scope["path"] not in self.open_paths
            and not authorized(scope["headers"], self.settings.token_sha256)
        ):
            endpoint = route[0] if route is not None else _E["other"]
            status, body = Unauthorized.http_status, self.unauthorized
            headers = [*self.json, (b"www-authenticate", b'Bearer realm="mloop"')]
        elif route is None:
            endpoint, headers = _E["other"], self.json
            status, body = not_found(self.name, scope["path"])
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
                    status, body, headers = InternalError.http_status, INTERNAL, self.json
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
        seconds = time.perf_counter() - started
        self.metrics.request(endpoint, status, seconds)
        slot = scope.get("mloop.slot")
        if slot is not None:
            slot.record(status, seconds)
            copy = scope.get("mloop.mirror")
            if copy is not None:  # the answer is out: now the shadow may have its copy
                self.mirror.offer(copy)

    def _version_route(self, scope: dict[str, Any]) -> tuple[int, dict[str, Handler]] | None:
        """`/v2/models/ENDPOINT/versions/V[/infer]`: that version's metadata, or a predict it
        answers whatever the split says (`Table.version` finds it when the request runs)."""
        rest = scope["path"][len(self.versions_prefix) :]
        version, _, tail = rest.partition("/")
        if not version or tail not in ("", "infer"):
            return None
        scope["mloop.version"] = version
        if tail == "infer":
            return _E["infer"], {"POST": self._infer}
        return _E["metadata"], {"GET": self._version_metadata, "HEAD": self._version_metadata}

    async def _version_metadata(self, scope: dict[str, Any], receive: Receive) -> Reply:
        try:
            slot = self.table.version(scope["mloop.version"])
        except MloopError as exc:
            status, body = from_error(exc)
            return status, body, self.json
        predictor = slot.predictor
        found = oip.metadata(self.name, predictor.version, predictor.signature)
        return 200, orjson.dumps(found), slot.json

    # predict -------------------------------------------------------------------------------
    async def _invocations(self, scope: dict[str, Any], receive: Receive) -> Reply:
        return await self._predict(scope, receive, INVOCATIONS)

    async def _predict_v1(self, scope: dict[str, Any], receive: Receive) -> Reply:
        # KServe's V1 (TensorFlow Serving's REST) protocol: {"instances": [...]} in, MLflow's
        # {"predictions": [...]} shape out; its clients may send no Content-Type.
        return await self._predict(scope, receive, V1)

    async def _ready_v1(self, scope: dict[str, Any], receive: Receive) -> Reply:
        body = {"name": self.name, "ready": self.ready}
        return (200 if self.ready else 503), orjson.dumps(body), self.json

    async def _infer(self, scope: dict[str, Any], receive: Receive) -> Reply:
        return await self._predict(scope, receive, INFER)

    def _warn(self, batch: Batch, headers: Headers) -> Headers:
        """Count the categories training never saw, and name them in a response header (as
        ASCII: values are shown with repr's escapes, so no client text breaks a header)."""
        last = len(self.categories) - 1
        for found in batch.unknown:
            self.metrics.unknown_categories(self.categories.get(found.column, last), found.count)
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
        slot: Slot | None = None
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
                # From reading the table to counting in flight there: no await.
                table = self.table
                pinned = scope.get("mloop.version")
                if pinned is not None:  # a request naming its version
                    slot = table.version(pinned)
                    slot.in_flight += 1
                    scope["mloop.slot"] = slot
                    batch, request = routing.read(slot, route, media, body)
                elif table.only is not None:
                    slot = table.only
                    slot.in_flight += 1
                    scope["mloop.slot"] = slot
                    batch, request = routing.read(slot, route, media, body)
                else:
                    slot, batch, request = routing.routed(table, scope, route, media, body)
                    slot.in_flight += 1
                    scope["mloop.slot"] = slot
                shadow = table.shadow
                began = time.perf_counter() if shadow is not None else 0.0
                rid = scope.get("mloop.request_id")
                recorder = self.recorder
                if rid is None and recorder is not None:
                    rid = routing.request_id(scope["headers"])
                text = None if rid is None else rid.decode("latin-1")
                tag = None  # logged by the batcher, with the call it is in
                if text is not None and recorder is not None and recorder.keeps(text):
                    tag = (slot.source, text)
                try:
                    result = await slot.batcher.predict(batch.data, batch.rows, lone, tag)
                except Exception as exc:
                    failed = failure(slot.predictor, exc)
                    if isinstance(failed, ModelFailed):
                        slot.loaded.failures.failed(exc)
                    raise failed from exc
                if shadow is not None and table.mirror_this():
                    seconds = time.perf_counter() - began
                    copy = Copy(shadow, slot.metrics, batch.data, batch.rows, result, seconds, text)
                    scope["mloop.mirror"] = copy
                answer, headers = routing.write(slot, result, request)
                if rid is not None:
                    headers = [*headers, (routing.REQUEST_ID, rid)]
                return 200, answer, self._warn(batch, headers) if batch.unknown else headers
        except TimeoutError:
            message = f"no answer within the time-out of {settings.timeout:g} s"
            hint = "send fewer rows per request, or raise --timeout"
            headers = slot.json if slot is not None else self.json
            return Timeout.http_status, error_body(Timeout, message, hint), headers
        except TooLarge:
            message = f"the body is over the limit of {settings.max_body_bytes} bytes"
            hint = "send fewer rows per request, or raise --max-body-size"
            body = error_body(PayloadTooLarge, message, hint)
            return PayloadTooLarge.http_status, body, [*self.json, (b"connection", b"close")]
        except MloopError as exc:
            status, body = from_error(exc, self.inputs_hint)
            return status, body, slot.json if slot is not None else self.json
        finally:
            self.bodies.give(held)
            if admitted:
                admission.leave()
            if slot is not None:
                slot.in_flight -= 1
            self.metrics.leave()

    async def _feedback(self, scope: dict[str, Any], receive: Receive) -> Reply:
        """Outcomes for earlier answers, counted for the versions that gave them, and labels,
        stored for monitoring (`feedback.py`): the whole batch, or none of it with the first bad
        item named. Labels are written in a thread: the store never blocks the event loop."""
        settings = self.settings
        held = 0
        try:
            async with asyncio.timeout(min(settings.body_timeout, settings.timeout)):
                body = await read_body(receive, settings.max_body_bytes, self.bodies)
            held = len(body)
            table = self.table
            parsed = feedback.parse(body, table, time.time())
            stored = None
            if parsed.labels:
                write = feedback.store
                stored = await asyncio.to_thread(write, self.recorder, self.name, parsed.labels)
            counted = feedback.count(table, parsed, stored)
            return 200, orjson.dumps(counted.plain()), self.json
        except TimeoutError:
            return RequestTimeout.http_status, self.slow_body, [*self.json, CLOSE]
        except TooLarge:
            message = f"the body is over the limit of {settings.max_body_bytes} bytes"
            body = error_body(PayloadTooLarge, message, "send fewer outcomes per request")
            return PayloadTooLarge.http_status, body, [*self.json, CLOSE]
        except OverBudget:
            return Overloaded.http_status, self.busy_bodies, [*self.busy_headers, CLOSE]
        except MloopError as exc:
            status, body = from_error(exc)
            return status, body, self.json
        finally:
            self.bodies.give(held)

    # everything else -----------------------------------------------------------------------
    async def _static(self, scope: dict[str, Any], receive: Receive) -> Reply:
        path = scope["path"]
        body = self.table.bodies.get(path)
        return 200, body if body is not None else self.static[path], self.json

    async def _ready(self, scope: dict[str, Any], receive: Receive) -> Reply:
        table = self.table
        if table.fixed:
            body: dict[str, Any] = {"ready": self.ready, "model": self.label}
        else:
            body = {
                "ready": self.ready,
                "endpoint": self.name,
                "versions": [{"model": s.label, "role": s.role} for s in table.by_index],
            }
        if self.follower is not None:
            body.update(self.follower.detail())
        if self.ready:
            return 200, orjson.dumps(body), self.json
        body["reason"] = "the server is stopping"
        return 503, orjson.dumps(body), self.json

    async def _metrics(self, scope: dict[str, Any], receive: Receive) -> Reply:
        if self.recorder is not None:
            self._publish_counts()
        return 200, self.metrics.render(), self.text

    async def _publish(self) -> None:
        """Every second, this worker's prediction-log counts into the shared metrics (so the
        worker answering a scrape shows every worker's)."""
        while True:
            self._publish_counts()
            await asyncio.sleep(1.0)

    def _publish_counts(self) -> None:
        recorder = self.recorder
        written, dropped, unscored = self._log_base
        self.metrics.logged(
            written + recorder.written, dropped + recorder.dropped, unscored + recorder.unscored
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.follower is not None:
                    self.follower.start()
                if self.recorder is not None:
                    self._publisher = asyncio.get_running_loop().create_task(self._publish())
                self.metrics.ready(True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # uvicorn sends this once the requests in flight are answered
                self.ready = False
                self.metrics.ready(False)
                if self.follower is not None:
                    await self.follower.stop()
                await self.mirror.aclose()
                for batcher in {loaded.batcher for loaded in self.table.loaded()}:
                    await batcher.aclose()
                if self.recorder is not None:  # every answer is out: store what it logged
                    await cancel(self._publisher)
                    await asyncio.to_thread(self.recorder.close)
                    self._publish_counts()
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
    settings = settings or ServeSettings()
    metrics = metrics or ServingMetrics(model=predictor.name, version=predictor.version)
    model = f"{predictor.name}:{predictor.version}"
    plan = ServingPlan(predictor.name, (ServedVersion(model),))
    return endpoint_app(plan, {model: predictor}, settings, metrics, fixed=True)


def endpoint_app(
    plan: ServingPlan,
    predictors: dict[str, Predictor],
    settings: ServeSettings | None = None,
    metrics: ServingMetrics | None = None,
    fixed: bool = False,
) -> InferenceApp:
    """The ASGI app serving `plan` with the `predictors` of its versions (by NAME:V), loaded
    and warmed already; `DeploymentFollower` keeps it serving what the deployment says.

    Example:
        >>> plan = ServingPlan("churn", (ServedVersion("churn:3"),))  # doctest: +SKIP
        >>> app = endpoint_app(plan, {"churn:3": predictor})  # doctest: +SKIP
    """
    settings = settings or ServeSettings()
    metrics = metrics or ServingMetrics()
    intervals = Intervals(plan.endpoint)
    alone = {v.model for v in plan.versions if v.role == SHADOW}
    batch_log = BatchLog()
    loaded = loaded_versions(predictors, settings, metrics.batch, alone=alone, log=batch_log)
    table = make_table(plan, loaded, metrics.versions, intervals, fixed=fixed)
    return InferenceApp(table, settings, metrics, intervals, batch_log)
