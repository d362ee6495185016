"""Run each step in the calling process, one after another: the cheapest, and debuggable."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from mloop.executors.protocol import StepExecutor

T = TypeVar("T")


class LocalExecutor(StepExecutor):
    name = "local"
    in_process = True

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the future carries it, as a pool's would
            future.set_exception(exc)
        return future
