"""What keeps one model server healthy under any client: connections, heads, admission, bodies.

- `GuardedHttpTools`: uvicorn's httptools protocol with the bounds it lacks, enforced where the
  bytes arrive, before a request reaches the app (and so before authentication): at most
  `max_connections` open connections per worker (past it a new connection gets a 503 and is
  closed at once, established ones are untouched); a request line and headers of at most
  `max_head_bytes` (431, then closed, counted before httptools buffers them); at most
  `head_timeout` seconds from the first byte of a request (or the connection) to the end of
  its headers (408, or closed if nothing came). A connection whose request body is still
  unread when its answer is sent is closed, so nobody keeps one open by trickling a body the
  app will never read.
- `Admission`: at most `max_concurrency` predict requests are worked on; up to `max_queue` more
  wait for a slot; past that a request is turned away at once (503 with `Retry-After`) rather
  than queued into a time-out, so a load balancer can send it elsewhere. A slot is taken only
  once the body is in: a slow sender holds a connection, never a slot.
- `check_headers`: a declared Content-Length over the limit (413) is answered from the headers
  alone, before a byte of the body is read (as a wrong Content-Type is, by `media.py`).
- `read_body`: bodies without a Content-Length (chunked) are counted while read, and stopped
  at the limit.
- `BodyBudget`: bodies are read before a slot is taken, so without a bound every open
  connection could hold a body of the maximum size at once (1,024 × 16 MiB); a worker holds at
  most `max_body_memory` bytes of bodies, and a body that would pass it is turned away (503
  with `Retry-After`, then closed) instead of being read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mloop.errors import HeadersTooLarge, RequestTimeout, TooManyConnections
from mloop.server.errors import error_body

Receive = Callable[[], Awaitable[dict[str, Any]]]


class TooLarge(Exception):
    """The body passed the size limit while being read."""


class ClientGone(Exception):
    """The client closed the connection before its request was read: nobody to answer."""


class OverBudget(Exception):
    """Reading this body would pass the worker's budget for bodies in memory."""


class BodyBudget:
    """Bytes of request bodies one worker holds at once (read, or being read), bounded.

    Example:
        >>> budget = BodyBudget(100)
        >>> budget.take(60), budget.take(60)
        (True, False)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class Admission:
    """A counting semaphore with a bounded queue that refuses rather than waits when full.

    Example:
        >>> admission = Admission(max_concurrency=1, max_queue=0)
        >>> admission.try_enter(), admission.try_enter()
        (True, False)
    """

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.active = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def try_enter(self) -> bool:
        """Take a slot if one is free (the common case: no await, no allocation)."""
        if self.active < self.max_concurrency:
            self.active += 1
            return True
        return False

    def can_wait(self) -> bool:
        return len(self._waiting) < self.max_queue

    def full(self) -> bool:
        """No free slot and no room to wait: a request can be turned away before its body."""
        return self.active >= self.max_concurrency and len(self._waiting) >= self.max_queue

    async def wait(self) -> None:
        """Queue for a slot; `leave` hands its slot straight to the first waiter."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.leave()  # the slot arrived together with the cancellation: pass it on
            else:
                self._waiting.remove(future)
            raise

    def leave(self) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes on; `active` stays the same
                return
        self.active -= 1


def authorized(headers: list[tuple[bytes, bytes]], expected: bytes | None) -> bool:
    """Whether the request carries `Authorization: Bearer TOKEN` whose SHA-256 is `expected`
    (compared in constant time; only the digest is ever held).

    Example:
        >>> authorized([(b"authorization", b"Bearer x")], hashlib.sha256(b"x").digest())
        True
    """
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"bearer":
                return False
            presented = hashlib.sha256(token.strip()).digest()
            return expected is not None and hmac.compare_digest(presented, expected)
    return False


def check_headers(headers: list[tuple[bytes, bytes]], max_body: int) -> str | None:
    """What is wrong when the declared Content-Length is over the limit (the app answers it
    with `PayloadTooLarge`, a 413), else None. (Which content types a route takes is
    `media.media_type`'s job.)

    Example:
        >>> check_headers([(b"content-length", b"2048")], 1024)
        'the body is 2048 bytes; the limit is 1024'
    """
    length = -1
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = -1
    if length > max_body:
        return f"the body is {length} bytes; the limit is {max_body}"
    return None


async def read_body(receive: Receive, max_body: int, budget: BodyBudget) -> bytes:
    """The whole request body, stopped with `TooLarge` as soon as it passes `max_body`, and
    with `OverBudget` when the worker cannot hold more bodies. The body's bytes stay taken
    from `budget` until the caller gives `len(body)` back; on an exception they are given back
    here.

    Example:
        >>> body = await read_body(receive, 16 * 2**20, BodyBudget(256 * 2**20))  # doctest: +SKIP
    """
    taken = 0

    def count(chunk: bytes) -> None:
        nonlocal taken
        if taken + len(chunk) > max_body:
            raise TooLarge
        if not budget.take(len(chunk)):
            raise OverBudget
        taken += len(chunk)

    try:
        parts: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            count(chunk)
            parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)
    except BaseException:
        budget.give(taken)
        raise


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded in connections, head size and head time.

    httptools has no limit of its own: it joins the pieces of a header value with `+=` (a
    256 MiB header took 89 s and 500 MB), and uvicorn starts no clock before a request's first
    answer (connections that never finish their headers stayed open until the file descriptors
    ran out). Made by uvicorn for every accepted connection, with the limits bound by
    `functools.partial` (`workers.uvicorn_config`).

    Example:
        >>> http = partial(GuardedHttpTools, max_connections=1024, max_head_bytes=65536,
        ...                head_timeout=10.0)  # doctest: +SKIP
        >>> uvicorn.Config(app, http=http)  # doctest: +SKIP
    """

    def __init__(
        self,
        *args: Any,
        max_connections: int,
        max_head_bytes: int,
        head_timeout: float,
        on_refused: Callable[[int], None] = lambda status: None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.on_refused = on_refused  # counts each refusal made here (by status) in /metrics
        self.max_connections = max_connections
        self.max_head_bytes = max_head_bytes
        self.head_timeout = head_timeout
        self._head: int | None = 0  # bytes of the request head so far; None while in a body
        self._heads = 0  # request heads completed on this connection
        self._messages = 0  # requests received whole (head and body)
        self._answered = 0  # responses sent
        self._head_clock: asyncio.TimerHandle | None = None
        self._refused = False
        self._watched: Any = None  # the last request whose answer may come before its body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            # Refused before it counts: established connections keep their place.
            self._refused = True
            self.transport = transport
            self.on_refused(TooManyConnections.http_status)
            transport.write(_answer(TooManyConnections.http_status, _TOO_MANY, retry_after=True))
            transport.close()
            return
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        while self._head is not None and data:  # in a request head (or between requests)
            room = self.max_head_bytes - self._head
            if len(data) <= room:
                self._head += len(data)
                break
            heads = self._heads
            if room > 0:
                super().data_received(data[:room])
                if self.transport.is_closing():
                    return
            if self._heads == heads:  # the limit is reached and the head still goes on
                limit = b"%d" % self.max_head_bytes
                self._refuse(HeadersTooLarge.http_status, _HEAD_TOO_LARGE.replace(b"LIMIT", limit))
                return
            data = data[room:]  # the head ended within the limit: the rest is body or more
        if data:
            super().data_received(data)
        if self._heads > self._messages and self.cycle is not self._watched:
            self._say_close_if_answered_early(self.cycle)  # a head ended, its body has not
        if self._head and self._head_clock is None and not self.transport.is_closing():
            self._start_head_clock()  # a head began and did not end in this read

    def on_headers_complete(self) -> None:
        self._stop_head_clock()
        self._head = None
        self._heads += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._messages += 1
        self._head = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._answered += 1
        if self._answered > self._messages and not self.transport.is_closing():
            # Answered before its body was read (401, 413, 503...): reading on would let a
            # client hold the connection with a body nobody reads.
            self.transport.close()

    def _say_close_if_answered_early(self, cycle: Any) -> None:
        """An answer that starts before its request's body is whole (404, 401, 503 decided on the
        head) says `connection: close`: the connection closes after it (`on_response_complete`),
        and a client told nothing would send its next request on it and find it gone (httpx:
        "Server disconnected without sending a response"). Only requests whose body was still
        to come when a read ended pay for the check."""
        self._watched = cycle
        send, heads = cycle.send, self._heads

        async def send_saying_close(message: Any) -> None:
            if not cycle.response_started and self._messages < heads:
                cycle.keep_alive = False  # uvicorn writes `connection: close` and closes after
            await send(message)

        cycle.send = send_saying_close

    def _start_head_clock(self) -> None:
        self._head_clock = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _stop_head_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def _head_too_slow(self) -> None:
        self._head_clock = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined head: close once the answer is out
            return
        if self._head:
            limit = b"%g" % self.head_timeout
            self._refuse(RequestTimeout.http_status, _HEAD_TOO_SLOW.replace(b"LIMIT", limit))
        else:
            self.transport.close()  # nothing came: nobody to answer

    def _refuse(self, status: int, body: bytes) -> None:
        self._stop_head_clock()
        if self.cycle is None or self.cycle.response_complete:  # else an answer is on its way
            self.on_refused(status)
            self.transport.write(_answer(status, body))
        self.transport.close()


def _answer(status: int, body: bytes, retry_after: bool = False) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for refusals made below the app."""
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode()),
        b"content-type: application/json\r\n",
        b"retry-after: 1\r\n" if retry_after else b"",
        b"connection: close\r\n",
        b"content-length: %d\r\n\r\n" % len(body),
    ]
    return b"".join(head) + body


_TOO_MANY = error_body(
    TooManyConnections,
    "this server has as many open connections as it takes",
    "retry after 1 s; the server's --max-connections (per worker) sets how many",
)
_HEAD_TOO_LARGE = error_body(
    HeadersTooLarge,
    "the request line and headers are over the limit of LIMIT bytes",
    "send shorter headers (and URL), or raise the server's --max-header-size",
)
_HEAD_TOO_SLOW = error_body(
    RequestTimeout,
    "the request line and headers did not arrive within LIMIT s",
    "send the whole head at once, or raise the server's --header-timeout",
)
