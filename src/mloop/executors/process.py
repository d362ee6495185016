"""Run independent steps at once, each in a worker process (forkserver: clean, fork-safe)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from mloop.executors.protocol import StepExecutor

T = TypeVar("T")


class ProcessExecutor(StepExecutor):
    name = "process"
    parallel = True

    def __init__(
        self,
        max_workers: int | None = None,
        preload: Sequence[str] = (),
        paths: Sequence[str] = (),
    ) -> None:
        workers = max_workers or os.cpu_count() or 2
        self.max_workers = workers
        context = multiprocessing.get_context("forkserver")
        if paths:
            # The fork server is a fresh interpreter that ignores our sys.path (Python 3.11
            # passes it but does not apply it), so the project's folder goes in PYTHONPATH for
            # it to import the pipeline's modules.
            known = os.environ.get("PYTHONPATH", "").split(os.pathsep)
            extra = [p for p in paths if p not in known]
            if extra:
                os.environ["PYTHONPATH"] = os.pathsep.join([*extra, *filter(None, known)])
        if preload:  # imported once in the fork server, so each worker starts warm
            context.set_forkserver_preload(list(preload))
            # Start the server now: it imports those modules (seconds, for pandas and
            # scikit-learn) while the caller does its own work, not when the first step waits.
            from multiprocessing import forkserver

            forkserver.ensure_running()
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
