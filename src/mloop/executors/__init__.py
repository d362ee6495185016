"""Where step code runs (layer 1): every executor is a `concurrent.futures.Executor`.

`local` runs each step in the calling process, one at a time; `process` runs independent steps
at once in worker processes; `ray` runs them as Ray tasks, on this machine or a cluster. They
differ only in the executor `open_executor` hands out (Kedro's runner shape).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from mloop.executors.protocol import StepExecutor

EXECUTORS = ("local", "process", "ray")


def open_executor(
    name: str,
    *,
    max_workers: int | None = None,
    ray_address: str | None = None,
    preload: tuple[str, ...] = (),
    paths: tuple[str, ...] = (),
) -> StepExecutor:
    """The executor called `name`.

    Example:
        >>> with open_executor("process", max_workers=2) as pool:  # doctest: +SKIP
        ...     pool.submit_step(work, task, cpus=1).result()
    """
    if name == "local":
        from mloop.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "process":
        from mloop.executors.process import ProcessExecutor

        return ProcessExecutor(max_workers, preload, paths)
    if name == "ray":
        from mloop.executors.ray import RayExecutor

        return RayExecutor(ray_address, max_workers)
    raise InvalidInput(f"unknown executor {name!r}", f"use one of: {', '.join(EXECUTORS)}")
