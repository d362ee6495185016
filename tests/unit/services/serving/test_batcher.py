"""Micro-batching: concurrent requests merge, the batch size holds, a bad request fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from mloop.services.serving.batcher import MicroBatcher, join, take


class Model:
    """Predicts each row's first value; records the rows and thread of every call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.sizes: list[int] = []
        self.threads: list[str] = []

    def __call__(self, batch: Any) -> Any:
        self.sizes.append(len(batch))
        self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if (np.asarray(batch) < 0).any():
            raise ValueError("negative values are not allowed")
        return np.asarray(batch)[:, 0].copy()


def rows(*values: float) -> np.ndarray:
    return np.array([[v, 0.0] for v in values])


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_concurrent_requests_merge_into_one_call() -> None:
    model = Model()

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(model, mode="inline")
        results = await asyncio.gather(*(batcher.predict(rows(i), 1) for i in range(10)))
        await batcher.aclose()
        return results

    results = run(scenario())
    assert model.sizes == [10]
    assert [r.tolist() for r in results] == [[float(i)] for i in range(10)]


def test_a_client_batch_is_cut_to_the_max_batch_size() -> None:
    model = Model()

    async def scenario() -> Any:
        batcher = MicroBatcher(model, max_batch_size=100, mode="inline")
        result = await batcher.predict(rows(*range(1000)), 1000)
        await batcher.aclose()
        return result

    result = run(scenario())
    assert max(model.sizes) <= 100 and sum(model.sizes) == 1000
    assert result.tolist() == [float(i) for i in range(1000)]


def test_merging_stops_at_the_max_batch_size() -> None:
    model = Model()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=5, mode="inline")
        await asyncio.gather(*(batcher.predict(rows(i, i), 2) for i in range(6)))
        await batcher.aclose()

    run(scenario())
    assert model.sizes == [4, 4, 4]


def test_a_lone_request_does_not_wait_for_company() -> None:
    model = Model()

    async def scenario() -> Any:
        batcher = MicroBatcher(model, max_wait=30.0, mode="inline")
        result = await asyncio.wait_for(batcher.predict(rows(7), 1), timeout=10)
        await batcher.aclose()
        return result

    assert run(scenario()).tolist() == [7.0]


def test_a_lone_clients_request_is_predicted_before_any_other_task_runs() -> None:
    model = Model()

    async def scenario() -> tuple[list[str], list[str]]:
        batcher = MicroBatcher(model, mode="inline")
        order: list[str] = []

        async def other() -> None:
            order.append("other task")

        async def client(lone: bool) -> None:
            task = asyncio.get_running_loop().create_task(other())
            await batcher.predict(rows(1), 1, lone=lone)
            order.append("predicted")
            await task

        await client(lone=True)  # no hand-over: the prediction comes first
        first = list(order)
        order.clear()
        await client(lone=False)  # queued for the batch loop: the other task gets a turn
        await batcher.aclose()
        return first, order

    lone, queued = run(scenario())
    assert lone == ["predicted", "other task"]
    assert queued == ["other task", "predicted"]


def test_a_lone_client_still_waits_for_a_batch_in_the_thread() -> None:
    model = Model(delay=0.2)
    overlaps: list[int] = []
    active = [0]

    def predict(batch: Any) -> Any:
        active[0] += 1
        overlaps.append(active[0])
        try:
            return model(batch)
        finally:
            active[0] -= 1

    async def scenario() -> None:
        batcher = MicroBatcher(predict, mode="auto")  # the first call's cost is unknown: thread
        first = asyncio.ensure_future(batcher.predict(rows(1), 1))
        while not batcher._running:  # the batch loop hands it to the thread
            await asyncio.sleep(0.001)
        batcher.average = 0.0  # as if measured fast: a lone client would now go inline
        await batcher.predict(rows(2), 1, lone=True)  # but not beside the thread's call
        await first
        await batcher.aclose()

    run(scenario())
    assert model.sizes == [1, 1]
    assert overlaps == [1, 1]


def test_a_bad_request_fails_alone_when_merged() -> None:
    model = Model()

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(model, mode="inline")
        calls = [batcher.predict(rows(v), 1) for v in (1.0, -1.0, 3.0)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        await batcher.aclose()
        return results

    good, bad, other = run(scenario())
    assert good.tolist() == [1.0] and other.tolist() == [3.0]
    assert isinstance(bad, ValueError)
    assert model.sizes[0] == 3  # tried together first, then one by one


def test_a_cancelled_request_is_not_predicted() -> None:
    model = Model(delay=0.2)

    async def scenario() -> None:
        batcher = MicroBatcher(model, mode="thread")
        first = asyncio.ensure_future(batcher.predict(rows(1), 1))
        await asyncio.sleep(0.05)  # the first batch is running in the thread
        second = asyncio.ensure_future(batcher.predict(rows(2, 2, 2), 3))
        await asyncio.sleep(0)
        second.cancel()
        third = await batcher.predict(rows(3), 1)
        assert third.tolist() == [3.0]
        assert (await first).tolist() == [1.0]
        await batcher.aclose()

    run(scenario())
    assert model.sizes == [1, 1]


def test_auto_mode_measures_first_in_a_thread_then_runs_fast_models_inline() -> None:
    model = Model()

    async def scenario() -> None:
        batcher = MicroBatcher(model, mode="auto", inline_below=0.5)
        for i in range(3):
            await batcher.predict(rows(i), 1)
        await batcher.aclose()

    run(scenario())
    assert model.threads[0].startswith("mloop-predict")
    assert model.threads[1:] == ["MainThread", "MainThread"]


def test_slow_models_stay_in_the_thread() -> None:
    model = Model(delay=0.05)

    async def scenario() -> None:
        batcher = MicroBatcher(model, mode="auto", inline_below=0.01)
        for i in range(3):
            await batcher.predict(rows(i), 1)
        await batcher.aclose()

    run(scenario())
    assert all(name.startswith("mloop-predict") for name in model.threads)


def test_a_model_returning_the_wrong_count_is_an_error() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(lambda batch: np.zeros(1), mode="inline")
        with pytest.raises(RuntimeError, match="returned 1 predictions for 2 rows"):
            await batcher.predict(rows(1, 2), 2)
        await batcher.aclose()

    run(scenario())


def test_without_batching_each_request_is_its_own_call() -> None:
    model = Model()

    async def scenario() -> None:
        batcher = MicroBatcher(model, batching=False, mode="inline")
        await asyncio.gather(*(batcher.predict(rows(i), 1) for i in range(4)))
        await batcher.aclose()

    run(scenario())
    assert model.sizes == [1, 1, 1, 1]


def test_take_and_join_keep_the_type() -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": [1, 2, 3]}, index=[7, 8, 9])
    assert take(frame, 1, 3)["x"].tolist() == [2, 3]
    assert join([take(frame, 0, 1), take(frame, 1, 3)])["x"].tolist() == [1, 2, 3]
    assert join([[1], [2, 3]]) == [1, 2, 3]


class Calls:
    """A batcher's `log`: every predict call it handed over, as it came."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], list[int], list[int], list[float], list[float]]] = []

    def __call__(self, tags: Any, firsts: Any, rows: Any, data: Any, result: Any) -> None:
        self.calls.append((tags, firsts, rows, data[:, 0].tolist(), result.tolist()))


def test_a_merged_call_is_handed_to_the_log_once_with_each_requests_tag_and_rows() -> None:
    model, calls = Model(), Calls()

    async def scenario() -> None:
        batcher = MicroBatcher(model, mode="inline", log=calls)
        tagged = [batcher.predict(rows(i, i + 0.5), 2, tag=f"t{i}") for i in range(3)]
        await asyncio.gather(*tagged, batcher.predict(rows(9), 1))  # the last: not logged
        await batcher.predict(rows(7), 1, lone=True, tag="lone")
        await batcher.predict(rows(8), 1, lone=True)  # untagged: no call logged
        await batcher.aclose()

    run(scenario())
    assert model.sizes == [7, 1, 1]
    assert calls.calls == [
        (
            ["t0", "t1", "t2", None],
            [0, 0, 0, 0],
            [2, 2, 2, 1],
            [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 9.0],
            [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 9.0],
        ),
        (["lone"], [0], [1], [7.0], [7.0]),
    ]


def test_a_request_cut_into_calls_is_logged_with_the_first_row_of_each_part() -> None:
    model, calls = Model(), Calls()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=4, mode="inline", log=calls)
        await batcher.predict(rows(*range(10)), 10, tag="big")
        await batcher.aclose()

    run(scenario())
    assert [(tags, firsts, n) for tags, firsts, n, _, _ in calls.calls] == [
        (["big"], [0], [4]),
        (["big"], [4], [4]),
        (["big"], [8], [2]),
    ]
    assert [value for call in calls.calls for value in call[3]] == [float(i) for i in range(10)]
