"""Shadow traffic: a challenger predicts on copies of live requests and never answers anyone.

A copy is offered once the primary has its answer; it goes on a bounded queue, and one
background task predicts the copies with the shadow, so the client never waits for the shadow,
however slow it is. When the queue is full the copy is dropped and counted: the shadow sees a
sample then, never a backlog that grows without bound. Each shadow prediction is compared with
the primary's (labels equal, numbers `np.isclose`), and both predict times are recorded, in
the shared Prometheus counters (`versions.py`), in the shadow's interval counts (reported to
the store, where `endpoints status` reads its agreement and latency) and in a plain summary.

The copy is the batch the primary's request reader made: the server never changes a batch in
place, and the primary is done with it, so it is shared rather than copied (no cost on the
client's path). The shadow is taken to read the primary's inputs (a challenger trained on the
same signature); a shadow that fails on them counts as failed, never as a client's error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mloop.services.serving.batcher import cancel
from mloop.services.serving.intervals import IntervalCounts
from mloop.services.serving.versions import (
    AGREED,
    DROPPED,
    MIRROR_FAILED,
    MIRRORED,
    VersionMetrics,
)

logger = logging.getLogger("mloop.server")
QUEUE_SIZE = 1000
GROUP = 64  # copies handed to the shadow's batcher at once


class Target(Protocol):
    """What the mirror needs of the shadow's slot."""

    in_flight: int
    label: str
    endpoint: str
    metrics: VersionMetrics
    counts: IntervalCounts

    @property
    def inputs(self) -> list[str]: ...

    async def predict_rows(self, data: Any, rows: int) -> Any: ...


@dataclass(frozen=True, slots=True)
class Copy:
    """A request mirrored to the shadow, with the primary's prediction to compare against."""

    target: Target
    primary: VersionMetrics
    data: Any
    rows: int
    expected: Any
    primary_seconds: float
    request_id: str | None = None  # the primary's answer's: the prediction log pairs them


def agree(primary: Any, shadow: Any) -> bool:
    """Whether two predictions of the same rows match: labels equal, numbers `np.isclose`.

    Example:
        >>> agree(np.array([0.5, 1.0]), np.array([0.5 + 1e-12, 1.0]))
        True
        >>> agree(np.array(["yes"]), np.array(["no"]))
        False
    """
    a = np.asarray(primary.to_numpy() if hasattr(primary, "to_numpy") else primary)
    b = np.asarray(shadow.to_numpy() if hasattr(shadow, "to_numpy") else shadow)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        try:
            return bool(np.isclose(a.astype(float), b.astype(float), equal_nan=True).all())
        except (TypeError, ValueError):
            return False
    return bool((a == b).all())


class Mirror:
    """The bounded queue of copies and the task that predicts them with the shadow.

    Example:
        >>> mirror = Mirror(size=1000)
        >>> copy = Copy(shadow, primary, batch.data, batch.rows, result, 0.001)  # doctest: +SKIP
        >>> mirror.offer(copy)  # doctest: +SKIP
    """

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.size = size
        self._queue: asyncio.Queue[Copy] = asyncio.Queue(size)
        self._task: asyncio.Task[None] | None = None
        self.mirrored = self.dropped = self.agreed = self.failed = 0
        self.seconds = {"primary": 0.0, "shadow": 0.0}
        self.busy = False  # the shadow is predicting a copy right now
        self.recorder: Any = None  # the prediction log (`PredictionLog`), where one is kept

    def offer(self, copy: Copy) -> bool:
        """Queue `copy` for the shadow, or drop and count it when the queue is full."""
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.dropped += 1
            copy.target.metrics.count(DROPPED)
            copy.target.counts.dropped += 1
            return False
        copy.target.in_flight += 1  # a retired shadow drains its copies too
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        """Predict the copies waiting, all at once: the shadow's batcher merges them into few
        predict calls, as it does for clients, so a busy primary makes a batching shadow."""
        queue = self._queue
        while True:
            group = [await queue.get()]
            while not queue.empty() and len(group) < GROUP:
                group.append(queue.get_nowait())
            self.busy = True
            try:
                await asyncio.gather(*(self._predict(copy) for copy in group))
            finally:
                self.busy = False

    async def _predict(self, copy: Copy) -> None:
        target = copy.target
        started = time.perf_counter()
        try:
            result = await target.predict_rows(copy.data, copy.rows)
        except Exception as exc:  # the shadow's failure is counted, never a client's
            self.failed += 1
            target.metrics.count(MIRROR_FAILED)
            target.counts.add(500, time.perf_counter() - started)
            logger.warning("shadow %s failed to predict: %s", target.label, exc)
        else:
            seconds = time.perf_counter() - started
            self.mirrored += 1
            self.seconds["primary"] += copy.primary_seconds
            self.seconds["shadow"] += seconds
            target.metrics.count(MIRRORED)
            target.metrics.mirrored(seconds)
            copy.primary.mirrored(copy.primary_seconds)
            if self.recorder is not None and copy.request_id is not None:
                self.recorder.record(
                    target.endpoint,
                    target.label,
                    "shadow",
                    copy.request_id,
                    copy.data,
                    result,
                    time.time(),
                    target.inputs,
                )
            agreed = agree(copy.expected, result)
            target.counts.mirrored(seconds, agreed)
            if agreed:
                self.agreed += 1
                target.metrics.count(AGREED)
        finally:
            target.in_flight -= 1

    async def aclose(self) -> None:
        """Stop predicting; copies still queued are dropped (they never reach a client)."""
        await cancel(self._task)
        self._task = None
        while not self._queue.empty():
            self._queue.get_nowait().target.in_flight -= 1

    def summary(self) -> dict[str, Any]:
        """This worker's shadow numbers as plain data (the stats writer adds workers up)."""
        done = self.mirrored
        return {
            "mirrored": done,
            "dropped": self.dropped,
            "failed": self.failed,
            "agreed": self.agreed,
            "agreement_rate": self.agreed / done if done else None,
            "queued": self.queued,
            "mean_seconds": {
                role: (total / done if done else None) for role, total in self.seconds.items()
            },
        }
