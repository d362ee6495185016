"""The shadow's mirror: copies are predicted by group (one predict call, one comparison, one
count per group), a copy the shadow cannot read fails alone, and the queue stays bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloop.services.predictions.log import Source
from mloop.services.serving.batcher import MicroBatcher
from mloop.services.serving.intervals import IntervalCounts
from mloop.services.serving.shadow import Copy, Mirror, agreements
from mloop.services.serving.versions import (
    AGREED,
    DROPPED,
    MIRROR_FAILED,
    MIRROR_LATENCY,
    MIRRORED,
    SECONDS,
    Labels,
    VersionBlocks,
    VersionCounters,
    VersionMetrics,
)

COUNT = MIRROR_LATENCY + len(SECONDS) + 2  # the mirrored-seconds histogram's count


class Shadow:
    """The shadow's slot as the mirror sees it, over a real micro-batcher: predicts each row's
    first value, refuses rows holding a negative value, and records its calls."""

    def __init__(self, metrics: VersionMetrics) -> None:
        self.in_flight = 0
        self.label = "churn:2"
        self.metrics = metrics
        self.counts = IntervalCounts("churn:2", "shadow")
        self.source = Source("churn", "churn:2", "shadow", ["x", "y"])  # no class scores
        self.calls: list[int] = []
        self.batcher = MicroBatcher(self._predict, mode="inline")

    def _predict(self, batch: Any) -> Any:
        values = np.asarray(batch, dtype=float)
        self.calls.append(len(values))
        if (values < 0).any():
            raise ValueError("negative values are not allowed")
        return values[:, 0].copy()

    async def predict_rows(self, data: Any, rows: int) -> Any:
        return await self.batcher.predict(data, rows)


def metrics(role: str) -> VersionMetrics:
    blocks = VersionBlocks(VersionCounters(1), 0)
    return blocks.take(Labels("churn", f"churn:{role}", role))


def copy(shadow: Shadow, primary: VersionMetrics, values: list[float], said: list[float]) -> Copy:
    data = np.array([[v, 1.0] for v in values])
    return Copy(shadow, primary, data, len(values), np.array(said), 0.001)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def until(condition: Any, what: str) -> None:
    """Wait (on the event loop) for `condition`, up to 5 s."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)  # polls the mirror's counters between loop turns


def test_copies_are_predicted_compared_and_counted_by_group() -> None:
    shadow, primary = Shadow(metrics("shadow")), metrics("stable")

    async def scenario() -> Mirror:
        mirror = Mirror(size=100, linger=0.05)
        for i in range(10):  # the primary said i; the shadow says i too, but for copies 3 and 7
            said = [float(i), float(i)] if i not in (3, 7) else [float(i), -1.0]
            mirror.offer(copy(shadow, primary, [float(i), float(i)], said))
        assert shadow.in_flight == 10  # a copy is in flight until predicted (a drain waits)
        await until(lambda: mirror.mirrored == 10, "ten copies predicted")
        await mirror.aclose()
        await shadow.batcher.aclose()
        return mirror

    mirror = run(scenario())
    assert shadow.calls == [20]  # ten copies of two rows: one predict call
    assert (mirror.agreed, mirror.failed, shadow.in_flight) == (8, 0, 0)
    block = shadow.metrics.block
    assert (block[MIRRORED], block[AGREED], block[COUNT]) == (10, 8, 10)
    assert primary.block[COUNT] == 10  # the primary's predict seconds, per copy
    assert mirror.summary()["agreement_rate"] == 0.8
    counts = shadow.counts  # the interval's: copies predicted, agreed, each with its seconds
    assert (counts.requests, counts.agreed, counts.errors, sum(counts.buckets)) == (10, 8, 0, 10)


def test_copies_offered_one_by_one_wait_for_each_other_and_are_predicted_together() -> None:
    shadow, primary = Shadow(metrics("shadow")), metrics("stable")

    async def scenario() -> Mirror:
        mirror = Mirror(size=5, linger=30.0)  # the group waits until the queue is full
        for i in range(5):  # one answer at a time, as at one connection
            mirror.offer(copy(shadow, primary, [float(i)], [float(i)]))
            await asyncio.sleep(0.002)  # the loop turns between answers
        await until(lambda: mirror.mirrored == 5, "the five copies")
        await shadow.batcher.aclose()
        return mirror

    mirror = run(scenario())
    assert shadow.calls == [5]  # one predict call, not one per answer
    assert mirror.agreed == 5


def test_a_copy_the_shadow_fails_on_fails_alone() -> None:
    shadow, primary = Shadow(metrics("shadow")), metrics("stable")

    async def scenario() -> Mirror:
        mirror = Mirror(size=100, linger=0.05)
        for values in ([1.0], [-2.0], [3.0]):
            mirror.offer(copy(shadow, primary, values, values))
        await until(lambda: mirror.mirrored + mirror.failed == 3, "three copies done")
        await shadow.batcher.aclose()
        return mirror

    mirror = run(scenario())
    assert shadow.calls[0] == 3  # the group first, then each copy alone
    assert (mirror.mirrored, mirror.agreed, mirror.failed) == (2, 2, 1)
    assert shadow.metrics.block[MIRROR_FAILED] == 1 and shadow.in_flight == 0
    assert (shadow.counts.requests, shadow.counts.errors, shadow.counts.agreed) == (3, 1, 2)


def test_a_full_queue_drops_and_counts_and_a_full_group_does_not_wait() -> None:
    shadow, primary = Shadow(metrics("shadow")), metrics("stable")

    async def scenario() -> Mirror:
        mirror = Mirror(size=4, linger=60.0)  # a group waits at most until the queue is full
        for i in range(6):
            mirror.offer(copy(shadow, primary, [float(i)], [float(i)]))
        assert (mirror.queued, mirror.dropped) == (4, 2)
        await until(lambda: mirror.mirrored == 4, "the four queued copies")
        await shadow.batcher.aclose()
        return mirror

    mirror = run(scenario())
    assert shadow.calls == [4]
    assert mirror.summary()["dropped"] == shadow.metrics.block[DROPPED] == 2
    assert shadow.counts.dropped == 2


@pytest.mark.parametrize(
    ("expected", "predicted", "rows", "agreed"),
    [
        (
            [np.array([1.0, 2.0]), np.array([3.0])],
            np.array([1.0, 2.0 + 1e-12, 3.5]),
            [2, 1],
            [True, False],
        ),
        ([np.array(["a"]), np.array(["b", "c"])], np.array(["a", "b", "x"]), [1, 2], [True, False]),
        (
            [np.zeros((1, 2)), np.ones((1, 2))],
            np.array([[0.0, 0.0], [1.0, 0.0]]),
            [1, 1],
            [True, False],
        ),
        (
            [np.array([1]), np.zeros(0), np.array([2])],
            np.array([1, 5]),
            [1, 0, 1],
            [True, True, False],
        ),
        ([np.array([1.0]), np.array([2.0])], np.array([[1.0], [2.0]]), [1, 1], [False, False]),
        ([pd.Series([1.0]), pd.Series([2.0])], np.array([1.0, 2.0]), [1, 1], [True, True]),
    ],
    ids=["numbers", "labels", "2-d", "an empty copy", "other shape", "series"],
)
def test_agreements_are_found_per_copy_from_one_comparison(
    expected: list[Any], predicted: Any, rows: list[int], agreed: list[bool]
) -> None:
    assert agreements(expected, predicted, rows) == agreed
