"""Adaptive micro-batching: concurrent requests merged into one predict call.

Why: a scikit-learn predict costs about the same for 1 row as for 100 (~110 µs for a logistic
regression on 30 features: per-call input checks dominate), so under concurrency, merging
requests multiplies throughput. Adaptive: a request that finds nothing else waiting is predicted
on the next turn of the event loop, with no timer and no added latency at concurrency 1. When
several are waiting, the batch loop keeps collecting for as long as new ones keep arriving, up
to `max_wait` seconds and `max_batch_size` rows. A client batch larger than `max_batch_size` is
cut into several predict calls, so the limit holds whatever clients send.

Fast models run inline on the event loop (a thread hop costs more than their predict); a model
whose calls take longer than `inline_below` runs in one worker thread, so the server keeps
answering health checks, time-outs and other requests meanwhile. `mode="auto"` decides from a
moving average of measured predict times; the first call, whose cost is unknown, runs in the
thread. One batch runs at a time: a second predict in parallel would only fight the first for
the GIL, and the queue behind it grows into a larger batch instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

Observer = Callable[[int, int, float], None]  # (rows, requests merged, seconds) per predict call
# Per predict call with a tagged request: (each request's tag or None, the row of its request
# each one starts at, its rows, the call's inputs, its answers), before the answers go out.
CallLog = Callable[[list[Any], list[int], list[int], Any, Any], None]


@dataclass(slots=True)
class _Item:
    data: Any
    rows: int
    future: asyncio.Future[Any]
    tag: Any = None
    first: int = 0


def take(data: Any, start: int, stop: int) -> Any:
    """Rows `start:stop` of an ndarray, a DataFrame (by position) or a list."""
    iloc = getattr(data, "iloc", None)
    return iloc[start:stop] if iloc is not None else data[start:stop]


def join(parts: Sequence[Any]) -> Any:
    """Concatenate batches (or predictions) row-wise, keeping their type.

    Example:
        >>> join([np.zeros((1, 2)), np.ones((2, 2))]).shape
        (3, 2)
    """
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if hasattr(first, "iloc"):
        import pandas as pd

        return pd.concat(parts, ignore_index=True)
    if isinstance(first, list):
        return [value for part in parts for value in part]
    return np.concatenate([np.asarray(p) for p in parts])


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class MicroBatcher:
    """Queues predict requests and runs them in merged batches, one batch at a time."""

    def __init__(
        self,
        predict: Callable[[Any], Any],
        *,
        max_batch_size: int = 64,
        max_wait: float = 0.002,
        batching: bool = True,
        mode: str = "auto",
        inline_below: float = 0.002,
        observe: Observer | None = None,
        log: CallLog | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if mode not in ("auto", "inline", "thread"):
            raise ValueError("mode is one of auto, inline, thread")
        self.predict_fn = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.batching = batching
        self.mode = mode
        self.inline_below = inline_below
        self.observe = observe
        self.log = log
        self.average = math.inf  # moving average of predict seconds; unknown until measured
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running = False  # a batch is being predicted (in the thread, the loop is free)

    async def predict(self, data: Any, rows: int, lone: bool = False, tag: Any = None) -> Any:
        """Predictions for `rows` rows of `data`, computed in a batch with other requests.

        `lone` says the caller is the only client sending lately (the server sees one
        connection in a row): with nothing queued or running and a fast model, its predict
        runs right here, sparing the two event-loop turns of a hand-over to the batch loop.
        A `tag` (not None) hands the request to `log` with the batch it was predicted in:
        the batch is stacked already, so a log takes whole calls, not request by request.

        Example:
            >>> await batcher.predict(np.zeros((1, 30)), 1)  # doctest: +SKIP
            array([0])
        """
        size = self.max_batch_size
        if lone and rows <= size and not self._queue and not self._running and self._inline():
            result, seconds = self._timed(data)
            self._learn(seconds)
            if self.observe is not None:
                self.observe(rows, 1, seconds)
            if tag is not None and self.log is not None:
                self.log([tag], [0], [rows], data, result)
            return result
        if rows <= size:
            return await self._submit(data, rows, tag)
        parts = [
            self._submit(
                take(data, start, min(start + size, rows)), min(size, rows - start), tag, start
            )
            for start in range(0, rows, size)
        ]
        return join(await asyncio.gather(*parts))

    def _submit(self, data: Any, rows: int, tag: Any = None, first: int = 0) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(data, rows, future, tag, first))
        self._queued_rows += rows
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return future

    async def aclose(self) -> None:
        """Stop the batch loop; requests still queued fail (the server drains them first)."""
        await cancel(self._task)
        self._task = None
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the model server is shutting down"))
        self._queued_rows = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # the batch loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
            if self.batching and self.max_wait > 0 and len(self._queue) > 1:
                await self._collect(loop)
            items = self._take()
            if items:
                await self._run_batch(items)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Others are waiting, so more are likely on their way: let the event loop read them
        while each pass brings new requests, within `max_wait` and the batch size. Two yields
        per pass: one for the sockets to be read, one for their handlers to queue here."""
        deadline = loop.time() + self.max_wait
        while self._queued_rows < self.max_batch_size and loop.time() < deadline:
            before = len(self._queue)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if len(self._queue) == before:
                return

    def _take(self) -> list[_Item]:
        items: list[_Item] = []
        rows = 0
        queue = self._queue
        while queue:
            item = queue[0]
            if item.future.done():  # timed out or the client went away: skip its rows
                queue.popleft()
                self._queued_rows -= item.rows
                continue
            if items and (not self.batching or rows + item.rows > self.max_batch_size):
                break
            queue.popleft()
            self._queued_rows -= item.rows
            items.append(item)
            rows += item.rows
        return items

    async def _run_batch(self, items: list[_Item]) -> None:
        rows = sum(item.rows for item in items)
        try:
            data = items[0].data if len(items) == 1 else join([item.data for item in items])
            result, seconds = await self._call(data)
            count = len(result)
            if count != rows:
                raise RuntimeError(f"the model returned {count} predictions for {rows} rows")
        except Exception as exc:
            if len(items) > 1:  # one bad request must not fail the others merged with it
                for item in items:
                    await self._run_batch([item])
                return
            if not items[0].future.done():
                items[0].future.set_exception(exc)
            return
        if self.observe is not None:
            self.observe(rows, len(items), seconds)
        if self.log is not None:
            tags = [item.tag for item in items]
            if tags.count(None) != len(tags):
                firsts = [item.first for item in items]
                self.log(tags, firsts, [item.rows for item in items], data, result)
        if len(items) == 1:
            if not items[0].future.done():
                items[0].future.set_result(result)
            return
        start = 0
        for item in items:
            if not item.future.done():
                item.future.set_result(take(result, start, start + item.rows))
            start += item.rows

    def _inline(self) -> bool:
        return self.mode == "inline" or (self.mode == "auto" and self.average < self.inline_below)

    def _learn(self, seconds: float) -> None:
        average = self.average
        self.average = seconds if average == math.inf else 0.8 * average + 0.2 * seconds

    async def _call(self, data: Any) -> tuple[Any, float]:
        if self._inline():
            result, seconds = self._timed(data)
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="mloop-predict")
            loop = asyncio.get_running_loop()
            self._running = True
            try:
                result, seconds = await loop.run_in_executor(self._executor, self._timed, data)
            finally:
                self._running = False
        self._learn(seconds)
        return result, seconds

    def _timed(self, data: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        result = self.predict_fn(data)
        return result, time.perf_counter() - started
