"""What the pipeline runner needs from an executor: concurrent.futures, plus resources."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")


class StepExecutor(Executor):
    """A concurrent.futures Executor that also takes a step's resource request.

    `in_process` tells the runner that submitted work runs in its own process, so the work can
    share the runner's open stores instead of opening its own.
    """

    name = "executor"
    in_process = False
    parallel = False

    def submit_step(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        cpus: float = 1.0,
        gpus: float = 0.0,
        memory: int | None = None,
    ) -> Future[T]:
        """Submit one step's work; executors that cannot place work by resources ignore them."""
        return self.submit(fn, *args)
