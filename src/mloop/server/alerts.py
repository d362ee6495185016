"""Alertmanager's webhook receiver: `POST /alerts` with Alertmanager's payload (version 4), so a
team's existing alerting can start the loop through `alertmanager` triggers.

Authenticated with a bearer token (Alertmanager's `http_config: {authorization: {credentials:
TOKEN}}`), compared in constant time with the SHA-256 of the token each trigger's `token_env`
holds: the receiver never keeps a token, and refuses to start without one. A post is checked
whole before anything of it is recorded (a malformed one is a 400 naming what is wrong); each
alert a trigger matches becomes an Event (`trigger.alert_received`), and the controller's
`alertmanager` check reads those. A 200 means recorded: Alertmanager retries a 5xx, so a store
that is down loses nothing.

```yaml
# alertmanager.yml
receivers:
  - name: mloop
    webhook_configs:
      - url: http://127.0.0.1:9095/alerts
        http_config: {authorization: {credentials: <the value of MLOOP_ALERTMANAGER_TOKEN>}}
```
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from mloop.domain.signal import ALERTS_HINT, parse_alerts
from mloop.errors import (
    InvalidInput,
    MethodNotAllowed,
    MloopError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
)
from mloop.server.errors import INTERNAL, error_body, from_error
from mloop.server.limits import (
    BodyBudget,
    ClientGone,
    OverBudget,
    TooLarge,
    authorized,
    check_headers,
)

if TYPE_CHECKING:
    from mloop.domain.trigger import Trigger
    from mloop.project import Project
    from mloop.services.automation.alerts import AlertInbox

logger = logging.getLogger(__name__)
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
PATH = "/alerts"
DEFAULT_PORT = 9095
MAX_BODY = 4 * 2**20  # a group of 1,000 alerts with their labels and annotations fits
STARTUP_TIMEOUT = 30.0
_JSON = [(b"content-type", b"application/json")]


class AlertReceiver:
    """The ASGI app: `POST /alerts` (Alertmanager's webhook) and `GET /-/ready`."""

    def __init__(
        self,
        inbox: AlertInbox,
        tokens: Mapping[bytes, Sequence[Trigger]],
        max_body: int = MAX_BODY,
    ) -> None:
        """`tokens`: `AlertInbox.tokens()`, a token's digest -> the triggers it opens."""
        self.inbox = inbox
        self.tokens = dict(tokens)
        self.max_body = max_body
        self.bodies = BodyBudget(4 * max_body)
        self.unauthorized = error_body(
            Unauthorized,
            "this receiver needs Alertmanager's bearer token",
            "set http_config: {authorization: {credentials: TOKEN}} in the webhook_config, "
            "TOKEN being the value of the trigger's token_env",
        )

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers: list[tuple[bytes, bytes]] = list(_JSON)
        if scope["path"] == "/-/ready":
            status, body = 200, b'{"ready":true}'
        elif scope["path"] != PATH:
            status, body = 404, error_body(NotFound, f"no route {scope['path']}", f"POST {PATH}")
        elif scope["method"] != "POST":
            status, body = 405, error_body(MethodNotAllowed, f"use POST on {PATH}")
            headers.append((b"allow", b"POST"))
        else:
            triggers = self._opened(scope["headers"])
            if triggers is None:
                status, body = Unauthorized.http_status, self.unauthorized
                headers.append((b"www-authenticate", b'Bearer realm="mloop"'))
            else:
                try:
                    status, body = await self._post(scope, receive, triggers)
                except ClientGone:
                    return
                except Exception:
                    logger.exception("error receiving alerts")
                    status, body = 500, INTERNAL
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _opened(self, headers: list[tuple[bytes, bytes]]) -> Sequence[Trigger] | None:
        """The triggers the request's token opens, or None (no token, or no trigger's)."""
        for digest, triggers in self.tokens.items():
            if authorized(headers, digest):
                return triggers
        return None

    async def _post(
        self, scope: dict[str, Any], receive: Receive, triggers: Sequence[Trigger]
    ) -> tuple[int, bytes]:
        from mloop.server.limits import read_body

        problem = check_headers(scope["headers"], self.max_body)
        if problem is not None:
            return 413, error_body(PayloadTooLarge, problem, "set max_alerts in webhook_config")
        try:
            body = await read_body(receive, self.max_body, self.bodies)
        except TooLarge:
            message = f"the body is over the limit of {self.max_body} bytes"
            return 413, error_body(PayloadTooLarge, message, "set max_alerts in webhook_config")
        except OverBudget:
            return 503, error_body(Overloaded, "too many alert posts at once", "it retries")
        try:
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"the body is not JSON: {exc}", ALERTS_HINT) from None
            alerts = parse_alerts(payload)
            received = await asyncio.to_thread(self.inbox.receive, alerts, triggers)
        except MloopError as exc:  # a bad payload (400) or a store that is down (503)
            return from_error(exc)
        finally:
            self.bodies.give(len(body))
        return 200, orjson.dumps(received.plain())


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@dataclass
class RunningReceiver:
    """A receiver serving in a thread of this process; `stop()` ends it."""

    url: str
    server: Any  # uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def receiver(project: Project, environ: Mapping[str, str] | None = None) -> AlertReceiver:
    """The receiver of `project`'s alertmanager triggers.

    Raises:
        ConfigError: no alertmanager trigger, or a trigger's token variable unset.
    """
    inbox = project.signals.alerts
    return AlertReceiver(inbox, inbox.tokens(environ))


def start(
    project: Project,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    environ: Mapping[str, str] | None = None,
) -> RunningReceiver:
    """Serve `project`'s receiver on HOST:PORT in a thread (port 0: a free one, which the
    URL shows); returns once it answers. The caller stops it with `.stop()`.

    Example:
        >>> running = start(project, port=9095)  # doctest: +SKIP
        >>> running.url  # doctest: +SKIP
        'http://127.0.0.1:9095/alerts'

    Raises:
        ConfigError: no token to check posts with (refused before anything listens).
    """
    import uvicorn

    from mloop.server.workers import bind_socket, uvicorn_config
    from mloop.services.serving.settings import ServeSettings

    app = receiver(project, environ)  # a missing token fails before the port is taken
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn_config(app, ServeSettings())
    config.loop = "asyncio"  # a thread of a process that may run its own loop elsewhere
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="mloop-alerts", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)  # the poll of a wait-for-condition
    if not server.started:
        server.should_exit = True
        sock.close()
        raise MloopError(f"the alert receiver on {host}:{bound} did not start")
    shown = f"[{host}]" if ":" in host else host
    return RunningReceiver(f"http://{shown}:{bound}{PATH}", server, thread)
