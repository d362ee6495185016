"""What keeps one model server healthy under any client: admission, body size, content type.

- `Admission`: at most `max_concurrency` predict requests are worked on; up to `max_queue` more
  wait for a slot; past that a request is turned away at once (503 with `Retry-After`) rather
  than queued into a time-out, so a load balancer can send it elsewhere.
- `check_headers`: a declared Content-Length over the limit (413) is answered from the headers
  alone, before a byte of the body is read (as a wrong Content-Type is, by `media.py`).
- `read_body`: bodies without a Content-Length (chunked) are counted while read, and stopped
  at the limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]


class TooLarge(Exception):
    """The body passed the size limit while being read."""


class ClientGone(Exception):
    """The client closed the connection before its request was read: nobody to answer."""


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


def check_headers(headers: list[tuple[bytes, bytes]], max_body: int) -> tuple[int, str, str] | None:
    """(413, code, message) when the declared Content-Length is over the limit, else None.
    (Which content types a route takes is `media.media_type`'s job.)

    Example:
        >>> check_headers([(b"content-length", b"2048")], 1024)[0]
        413
    """
    length = -1
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = -1
    if length > max_body:
        return 413, "payload_too_large", f"the body is {length} bytes; the limit is {max_body}"
    return None


async def read_body(receive: Receive, max_body: int) -> bytes:
    """The whole request body, stopped with `TooLarge` as soon as it passes `max_body`.

    Example:
        >>> body = await read_body(receive, 16 * 2**20)  # doctest: +SKIP
    """
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > max_body:
            raise TooLarge
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise TooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
