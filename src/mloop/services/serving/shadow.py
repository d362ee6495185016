"""Shadow traffic: a challenger predicts on copies of live requests and never answers anyone.

A copy is offered once the primary has its answer; it goes on a bounded queue, and one
background task predicts the copies with the shadow, so the client never waits for the shadow,
however slow it is. When the queue is full the copy is dropped and counted: the shadow sees a
sample then, never a backlog that grows without bound. Each shadow prediction is compared with
the primary's (labels equal, numbers `np.isclose`), and both predict times are recorded, in
the shared Prometheus counters (`versions.py`), in the shadow's interval counts (reported to
the store, where `endpoints status` reads its agreement and latency) and in a plain summary.

The work is done per group of copies, not per copy: nobody waits for a shadow's answer, so a
copy may wait up to `linger` seconds for others (or until `GROUP` are queued), and the group is
concatenated into one predict call, compared by one `np.isclose` and counted once. Per copy,
the client's path pays only an append to the queue. At one connection this turns a predict per
answer (scikit-learn's fixed cost, ~100 µs, the size of the answer's own) into a few µs.

The copy is the batch the primary's request reader made: the server never changes a batch in
place, and the primary is done with it, so it is shared rather than copied (no cost on the
client's path). The shadow is taken to read the primary's inputs (a challenger trained on the
same signature); a shadow that fails on them counts as failed, never as a client's error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mloop.services.serving.batcher import cancel, join, take
from mloop.services.serving.intervals import IntervalCounts
from mloop.services.serving.versions import (
    AGREED,
    DROPPED,
    MIRROR_FAILED,
    MIRRORED,
    VersionMetrics,
)

if TYPE_CHECKING:
    from mloop.services.predictions.log import Source

logger = logging.getLogger("mloop.server")
QUEUE_SIZE = 1000
GROUP = 64  # copies predicted together at most
GROUP_ROWS = 4096  # rows concatenated into one group at most (memory, not speed)
LINGER = 0.02  # seconds the first copy of a group waits for others to join it


class Target(Protocol):
    """What the mirror needs of the shadow's slot."""

    in_flight: int
    label: str
    metrics: VersionMetrics
    counts: IntervalCounts
    source: Source  # what the prediction log files its copies under (its role: shadow)

    async def predict_rows(self, data: Any, rows: int) -> Any: ...


@dataclass(slots=True)
class Copy:
    """A request mirrored to the shadow, with the primary's prediction to compare against."""

    target: Target
    primary: VersionMetrics
    data: Any
    rows: int
    expected: Any
    primary_seconds: float
    request_id: str | None = None  # the primary's answer's: the prediction log pairs them


def _array(value: Any) -> np.ndarray[Any, Any]:
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value)


def _matches(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """Per value, whether `a` and `b` (the same shape) match; None: they cannot be compared."""
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        try:
            close: np.ndarray[Any, Any] = np.isclose(
                a.astype(float), b.astype(float), equal_nan=True
            )
            return close
        except (TypeError, ValueError):
            return None
    same = np.asarray(a == b)
    return same if same.shape == a.shape else None


def agree(primary: Any, shadow: Any) -> bool:
    """Whether two predictions of the same rows match: labels equal, numbers `np.isclose`.

    Example:
        >>> agree(np.array([0.5, 1.0]), np.array([0.5 + 1e-12, 1.0]))
        True
        >>> agree(np.array(["yes"]), np.array(["no"]))
        False
    """
    a, b = _array(primary), _array(shadow)
    if a.shape != b.shape:
        return False
    same = _matches(a, b)
    return same is not None and bool(same.all())


def agreements(expected: Sequence[Any], predicted: Any, rows: Sequence[int]) -> list[bool]:
    """Which copies the shadow agreed on: `expected` holds the primary's predictions of each
    copy (`rows` rows each), `predicted` the shadow's of all of them, concatenated. One
    comparison for the whole group; a copy agrees when every value of its rows matches.

    Example:
        >>> agreements([np.array([1, 0]), np.array([1])], np.array([1, 0, 0]), [2, 1])
        [True, False]
    """
    b = _array(predicted)
    try:
        a = _array(join(expected)) if len(expected) > 1 else _array(expected[0])
    except (TypeError, ValueError):  # predictions of differing shapes: compare copy by copy
        a = None
    ends = np.cumsum(rows)
    if a is None or a.ndim == 0 or a.shape != b.shape:
        return [
            agree(e, take(predicted, end - n, end))
            for e, n, end in zip(expected, rows, ends.tolist(), strict=True)
        ]
    same = _matches(a, b)
    if same is None:
        return [False] * len(rows)
    per_row = same.reshape(len(same), -1).all(axis=1) if same.ndim > 1 else same
    wrong = np.concatenate(([0], np.cumsum(~per_row)))  # wrong rows before each row
    agreed: list[bool] = (wrong[ends] == wrong[ends - np.asarray(rows)]).tolist()
    return agreed


class Mirror:
    """The bounded queue of copies and the task that predicts them with the shadow, by group.

    Example:
        >>> mirror = Mirror(size=1000)
        >>> copy = Copy(shadow, primary, batch.data, batch.rows, result, 0.001)  # doctest: +SKIP
        >>> mirror.offer(copy)  # doctest: +SKIP
    """

    def __init__(self, size: int = QUEUE_SIZE, linger: float = LINGER) -> None:
        self.size = size
        self.linger = linger
        self._queue: deque[Copy] = deque()
        self._enough = 1  # queued copies that wake the task (while it waits)
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.mirrored = self.dropped = self.agreed = self.failed = 0
        self.seconds = {"primary": 0.0, "shadow": 0.0}
        self.predicting = 0  # copies the shadow is predicting right now
        self.recorder: Any = None  # the prediction log (`PredictionLog`), where one is kept

    @property
    def busy(self) -> bool:
        """Whether the shadow is predicting copies right now."""
        return self.predicting > 0

    def offer(self, copy: Copy) -> bool:
        """Queue `copy` for the shadow, or drop and count it when the queue is full."""
        queue = self._queue
        if len(queue) >= self.size:
            self.dropped += 1
            copy.target.metrics.count(DROPPED)
            copy.target.counts.dropped += 1
            return False
        queue.append(copy)
        copy.target.in_flight += 1  # a retired shadow drains its copies too
        task = self._task
        if task is None or task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif len(queue) >= self._enough and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                await self._wait(1, None)
            full = min(GROUP, self.size)
            if len(queue) < full and self.linger > 0:  # let a group gather
                await self._wait(full, self.linger)
            groups: dict[tuple[int, int], list[Copy]] = {}
            taken = rows = 0
            while queue and taken < GROUP and rows < GROUP_ROWS:
                copy = queue.popleft()
                taken += 1
                rows += copy.rows
                # one predict call per shadow and per primary (one reader: one kind of batch)
                groups.setdefault((id(copy.target), id(copy.primary)), []).append(copy)
            left = list(groups.values())
            try:
                while left:
                    self.predicting = len(left[-1])
                    try:
                        await self._predict(left[-1])
                    finally:
                        copies = left.pop()
                        copies[0].target.in_flight -= len(copies)
            finally:  # stopped (or a bug): the copies not predicted are not in flight either
                self.predicting = 0
                for copies in left:
                    copies[0].target.in_flight -= len(copies)

    async def _wait(self, enough: int, timeout: float | None) -> None:
        """Until `enough` copies are queued, or `timeout` seconds passed."""
        loop = asyncio.get_running_loop()
        self._enough = enough
        wake = self._wake = loop.create_future()
        timer = loop.call_later(timeout, _settle, wake) if timeout is not None else None
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _predict(self, copies: list[Copy]) -> None:
        """Predict `copies` (of one shadow, one primary) in one call; compare and count."""
        target = copies[0].target
        started = time.perf_counter()
        try:
            if len(copies) == 1:
                data = copies[0].data
                result = await target.predict_rows(data, copies[0].rows)
            else:
                total = sum(copy.rows for copy in copies)
                data = join([copy.data for copy in copies])
                result = await target.predict_rows(data, total)
        except Exception as exc:  # the shadow's failure is counted, never a client's
            if len(copies) > 1:  # one copy the shadow cannot read must not fail the others
                for copy in copies:
                    await self._predict([copy])
                return
            logger.warning("shadow %s failed to predict: %s", target.label, exc)
            seconds = time.perf_counter() - started
            self._record(target, copies, [], failed=True, seconds=seconds)
            return
        seconds = time.perf_counter() - started
        rows = [copy.rows for copy in copies]
        if self.recorder is not None:
            self._log(target, copies, rows, data, result)
        agreed = agreements([copy.expected for copy in copies], result, rows)
        self._record(target, copies, agreed, failed=False, seconds=seconds)

    def _log(
        self, target: Target, copies: list[Copy], rows: list[int], data: Any, result: Any
    ) -> None:
        """The group's shadow predictions into the prediction log, each copy under its
        primary's request id (kept or left out with it, by the same sampling), as one call."""
        recorder = self.recorder
        tags = [
            None
            if copy.request_id is None or not recorder.keeps(copy.request_id)
            else (target.source, copy.request_id)
            for copy in copies
        ]
        if tags.count(None) != len(tags):
            recorder.record_tagged(tags, [0] * len(copies), rows, data, result)

    def _record(
        self,
        target: Target,
        copies: list[Copy],
        agreed: Sequence[bool],
        failed: bool,
        seconds: float,
    ) -> None:
        """The one place a group's outcome is counted: `copies` predicted by `target` (or all
        `failed`), which of them `agreed` with the primary, in `seconds` each (the group's
        predict call), in the Prometheus counters, the interval counts and the summary."""
        metrics, counts, done = target.metrics, target.counts, len(copies)
        if failed:
            self.failed += done
            metrics.count(MIRROR_FAILED, done)
            for _ in copies:
                counts.add(500, seconds)
            return
        matched = sum(agreed)
        self.mirrored += done
        self.agreed += matched
        self.seconds["shadow"] += seconds * done
        metrics.count(MIRRORED, done)
        metrics.count(AGREED, matched)
        metrics.mirrored(seconds, done)
        for copy, same in zip(copies, agreed, strict=True):
            counts.mirrored(seconds, same)
            self.seconds["primary"] += copy.primary_seconds
            copy.primary.mirrored(copy.primary_seconds)

    async def aclose(self) -> None:
        """Stop predicting; copies still queued are dropped (they never reach a client)."""
        await cancel(self._task)
        self._task = None
        while self._queue:
            self._queue.popleft().target.in_flight -= 1

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


def _settle(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
