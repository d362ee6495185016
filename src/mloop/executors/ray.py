"""Run steps as Ray tasks, locally (`ray.init()`) or on a cluster (`MLOOP_RAY_ADDRESS`).

Each step asks for its own resources (`cpus`, `gpus`, `memory`). Inputs and outputs travel
through the artifact store by digest, not through Ray's object store or the driver, so a
cluster needs an artifact store every node can reach (S3, say).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from mloop.errors import MissingDependency, StoreUnavailable
from mloop.executors.protocol import StepExecutor

T = TypeVar("T")
CONNECT_TIMEOUT = 3.0


def _check_reachable(address: str) -> None:
    """Fail in seconds, before anything runs, when a cluster address does not answer."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StoreUnavailable(
            f"invalid Ray address {address!r}", "give HOST:PORT or ray://HOST:PORT"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise StoreUnavailable(
            f"the Ray cluster at {address} does not answer: {exc}",
            "check MLOOP_RAY_ADDRESS (or unset it to run Ray on this machine)",
        ) from None


class RayExecutor(StepExecutor):
    name = "ray"
    parallel = True

    def __init__(self, address: str | None = None, max_workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise MissingDependency(
                "the Ray executor needs Ray", "pip install 'mloop[ray]'"
            ) from None
        self._ray: Any = ray
        self._owns = False
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
            ray.init(
                address=address or None,
                num_cpus=None if address else max_workers,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=True,
                configure_logging=False,
            )
            self._owns = True

    def submit_step(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        cpus: float = 1.0,
        gpus: float = 0.0,
        memory: int | None = None,
    ) -> Future[T]:
        options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 0}
        if memory:
            options["memory"] = memory
        remote = self._ray.remote(**options)(fn)
        future: Future[T] = remote.remote(*args).future()
        return future

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self.submit_step(fn, *args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._owns:
            self._ray.shutdown()
            self._owns = False
