"""The monitor of a model server: one thread that measures and publishes, so a scrape never does.

`workers.run_worker` starts it in worker 0 only, after the fork: with `--workers N` that is one
monitor per server, not N doing the same work; a worker 0 started again after a crash starts it
again (the shared region keeps its counts). The parent stays free of threads, since it forks
replacement workers and a fork copies whatever lock another thread held.

Every `interval` seconds the thread calls what `factory` made (in this thread: its own store
connections) with the endpoint's name and publishes the families it returns into the shared
region every worker reads on /metrics. A pass that fails, whatever the reason (no request in
the window, the stores unreachable, the log's folder gone), keeps the last result and counts
the failure; serving goes on untouched. Its reason goes to the server's log once until another
comes, except an empty window: every server starts with one, and the counter says it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mloop.errors import MissingDependency, MloopError, NotFound
from mloop.services.serving.shared_gauges import SharedGauges

log = logging.getLogger("mloop.monitor")
# Made in worker 0's monitor thread: endpoint -> an object with `families` and `problems`
# (`services/monitoring/gauges.GaugeMonitor.measure`); its `close()`, if it has one, is
# called in that thread when the monitor stops (the stores it opened).
MonitorFactory = Callable[[], Callable[[str], Any]]


@dataclass(frozen=True, slots=True)
class Monitoring:
    """What `workers.serve` needs to run a server's monitor: how to make its measure (called
    in the monitor's thread) and how often to call it."""

    factory: MonitorFactory
    interval: float


class MonitorThread:
    """Measures `endpoint` every `interval` seconds into `gauges` until `stop`.

    Example:
        >>> thread = MonitorThread(factory, "web", counters.gauges, 60.0)  # doctest: +SKIP
        >>> thread.start()  # doctest: +SKIP
    """

    def __init__(
        self, factory: MonitorFactory, endpoint: str, gauges: SharedGauges, interval: float
    ) -> None:
        self.factory = factory
        self.endpoint = endpoint
        self.gauges = gauges
        self.interval = interval
        self._measure: Callable[[str], Any] | None = None
        self._said = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mloop-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def run_once(self) -> bool:
        """One pass: True when it published. Never raises."""
        started = time.perf_counter()
        try:
            if self._measure is None:
                self._measure = self.factory()
            measured = self._measure(self.endpoint)
        except NotFound:  # nothing logged in the window yet (or ever): counted, not said
            self.gauges.failed()
            return False
        except Exception as exc:  # any other failure is said, and keeps the server serving
            if isinstance(exc, ImportError):  # an optional library: say which extra brings it
                exc = MissingDependency.for_import(exc) or exc
            self.gauges.failed()
            self._say(_reason(exc), _kind(exc))
            return False
        problems = "; ".join(measured.problems)
        self.gauges.publish(measured.families, time.perf_counter() - started, bool(problems))
        self._say(problems, problems)
        return True

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(self.interval)
        finally:  # the connections this thread opened are closed by it, once it is done
            close = getattr(self._measure, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception(
                        "monitor of endpoint %s: closing its stores failed", self.endpoint
                    )

    def _say(self, reason: str, kind: str) -> None:
        """Log a pass's problem once, and once more when it is gone or another kind comes
        (a message naming the window's start differs every pass; its kind does not)."""
        if kind == self._said:
            return
        if reason:
            log.warning("monitor of endpoint %s: %s", self.endpoint, reason)
        else:
            log.warning("monitor of endpoint %s: measuring again", self.endpoint)
        self._said = kind


def _kind(exc: Exception) -> str:
    """What tells one failure from another, whatever times its message names."""
    return f"{type(exc).__name__}: {exc.hint if isinstance(exc, MloopError) else exc}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, MloopError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"
