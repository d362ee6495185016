"""The monitor of a model server: a process of its own that measures and publishes, so a scrape
never does and serving never waits for it.

`workers.serve` forks it before any worker and any thread of ours, once per server:
with `--workers N` that is one monitor, not N doing the same work. Its passes read up to
`monitoring_max_requests` logged rows and compute drift, accuracy and bias; in a serving
worker that work held the GIL while requests waited (the prediction log's bench lost a quarter
of its requests/s to the first pass), so it runs here at a lower priority (`NICENESS`), and
the kernel gives serving the CPU first.

Two processes, both named in `ps`/`top` (Linux): `mloop-monitor` runs the passes and
`mloop-mon-keep`, its parent, keeps it running. A monitor that dies (the kernel's OOM killer,
a crash in a native library) is counted as a failed pass, said in the server's log and started
again after a pause that grows while it keeps dying: the gauges are what alerts read, and a
server that went on with stale ones until restarted would look healthy while blind. The
serving processes never fork it again: the one that could (worker 0 with `--workers 1`) has
threads by then, and a fork copies whatever lock another thread held.

Both stop with the server: SIGTERM (or the terminal's Ctrl+C) ends the keeper, which ends the
monitor after its pass; a server killed outright (SIGKILL) takes them along, by the kernel's
parent-death signal where there is one (Linux) and by checking for a new parent every second
everywhere. Stop signals are blocked and waited for, never handled mid-pass, so a pass is never
cut between its stores' calls; the monitor's stores are closed by it when it stops.

Every `interval` seconds the monitor calls what `factory` made (in the monitor's process: its
own store connections) with the endpoint's name and publishes the families it returns into the
shared region every worker reads on /metrics (`services/serving/shared_gauges.py`, an anonymous
shared map made before the fork). A pass that fails, whatever the reason (no request in the
window, the stores unreachable, the log's folder gone), keeps the last result and counts the
failure; serving goes on untouched. Its reason goes to the server's log once until another
comes, except an empty window: every server starts with one, and the counter says it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mloop.errors import MissingDependency, MloopError, NotFound
from mloop.services.serving.shared_gauges import SharedGauges

log = logging.getLogger("mloop.monitor")
# Made in the monitor's process: endpoint -> an object with `families` and `problems`
# (`services/monitoring/gauges.GaugeMonitor.measure`); its `close()`, if it has one, is
# called there when the monitor stops (the stores it opened).
MonitorFactory = Callable[[], Callable[[str], Any]]
NICENESS = 10  # added to the server's: serving gets the CPU first
STOPS = {signal.SIGTERM, signal.SIGINT}
CHECK_PARENT = 1.0  # seconds between looks for a parent gone without a parent-death signal
STOP_TIMEOUT = 30.0  # how long a pass in flight may finish before the monitor is killed
PAUSE_MAX = 60.0  # the longest pause before a monitor that keeps dying is started again
_PR_SET_PDEATHSIG, _PR_SET_NAME = 1, 15


@dataclass(frozen=True, slots=True)
class Monitoring:
    """What `workers.serve` needs to run a server's monitor: how to make its measure (called
    in the monitor's process), how often to call it, and on which endpoint (the name the
    server's app answers to, so known before any worker loads a model)."""

    factory: MonitorFactory
    interval: float
    endpoint: str


class Monitor:
    """Measures `endpoint` into `gauges`, one pass per `run_once`, in the calling process.

    Example:
        >>> monitor = Monitor(factory, "web", counters.gauges)  # doctest: +SKIP
        >>> monitor.run_once()  # doctest: +SKIP
        True
    """

    def __init__(self, factory: MonitorFactory, endpoint: str, gauges: SharedGauges) -> None:
        self.factory = factory
        self.endpoint = endpoint
        self.gauges = gauges
        self._measure: Callable[[str], Any] | None = None
        self._said = ""

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
            self.say(_reason(exc), _kind(exc))
            return False
        problems = "; ".join(measured.problems)
        self.gauges.publish(measured.families, time.perf_counter() - started, bool(problems))
        self.say(problems, problems)
        return True

    def close(self) -> None:
        """Close the stores the measure opened (it is made again on the next pass)."""
        close = getattr(self._measure, "close", None)
        self._measure = None
        if close is None:
            return
        try:
            close()
        except Exception:
            log.exception("monitor of endpoint %s: closing its stores failed", self.endpoint)

    def say(self, reason: str, kind: str) -> None:
        """Log a pass's problem once, and once more when it is gone or another kind comes
        (a message naming the window's start differs every pass; its kind does not)."""
        if kind == self._said:
            return
        if reason:
            log.warning("monitor of endpoint %s: %s", self.endpoint, reason)
        else:
            log.warning("monitor of endpoint %s: measuring again", self.endpoint)
        self._said = kind


class MonitorProcess:
    """The server's monitor in a process of its own (forked by `start`, before any thread),
    kept running until `stop` or until the process that started it is gone.

    Example:
        >>> monitor = MonitorProcess(monitoring, counters.gauges)  # doctest: +SKIP
        >>> monitor.start()  # doctest: +SKIP
        >>> monitor.stop()  # doctest: +SKIP
    """

    def __init__(self, monitoring: Monitoring, gauges: SharedGauges) -> None:
        self.monitoring = monitoring
        self.gauges = gauges
        self.pid: int | None = None  # the keeper's; the monitor is its child

    def start(self, inherited: tuple[socket.socket, ...] = ()) -> None:
        """Fork the keeper; it closes its copies of `inherited` (the listening socket: once
        the server closes its own, new connections must be refused, not queued for nobody)."""
        parent = os.getpid()

        def keep() -> int:
            for sock in inherited:
                sock.close()
            return _keep(self.monitoring, self.gauges, parent)

        self.pid = _fork(keep)

    def stop(self, timeout: float = STOP_TIMEOUT + 5) -> None:
        """End the monitor (after the pass in flight, for at most `timeout` seconds)."""
        if self.pid is None:
            return
        _end(self.pid, timeout)
        self.pid = None


def _keep(monitoring: Monitoring, gauges: SharedGauges, parent: int) -> int:
    """The keeper: start the monitor, and again when it dies, until stopped."""
    become("mloop-mon-keep", parent)
    os.nice(NICENESS)  # inherited by the monitor it forks
    pause, keeper = 0.5, os.getpid()
    while True:
        child = _fork(lambda: _passes(monitoring, gauges, keeper))
        started = time.monotonic()
        status = None
        while status is None:
            if _stop_asked(parent, CHECK_PARENT, signal.SIGCHLD):
                _end(child, STOP_TIMEOUT)
                return 0
            status = _exited(child)
        gauges.failed()  # the pass it was running (if any) published nothing
        pause = 1.0 if time.monotonic() - started > PAUSE_MAX else min(pause * 2, PAUSE_MAX)
        log.warning(
            "monitor of endpoint %s: its process ended (%s): starting it again in %.0f s",
            monitoring.endpoint,
            _said_status(status),
            pause,
        )
        if _stop_asked(parent, pause):
            return 0


def _passes(monitoring: Monitoring, gauges: SharedGauges, keeper: int) -> int:
    """The monitor: a pass every `interval` seconds until stopped; its stores closed then."""
    become("mloop-monitor", keeper)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # the stores' own children
    monitor = Monitor(monitoring.factory, monitoring.endpoint, gauges)
    try:
        while True:
            monitor.run_once()
            if _stop_asked(keeper, monitoring.interval):
                return 0
    finally:  # the connections this process opened are closed by it, once it is done
        monitor.close()


def _fork(main: Callable[[], int]) -> int:
    """Fork a child that runs `main` with the stop signals blocked (from its first
    instruction: they are blocked across the fork) and exits with what it returns."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # else what the buffers hold is written twice
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS | {signal.SIGCHLD})
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        return pid
    code = 1
    try:  # the child: never returns into the forking code
        code = main()
    except BaseException:
        log.exception("the server's monitor failed")
    finally:
        logging.shutdown()
        os._exit(code)


def become(name: str, parent: int) -> None:
    """Name this process for `ps`/`top` and ask the kernel for SIGTERM when `parent` dies
    (Linux; elsewhere `_stop_asked` sees the new parent within `CHECK_PARENT` seconds)."""
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()), 0, 0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # died before the kernel was asked to tell
        os._exit(0)


def _stop_asked(parent: int, seconds: float, *also: signal.Signals) -> bool:
    """Wait up to `seconds` for a stop signal (True), for one of `also` (False at once), or
    for `parent` to be gone (True)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if os.getppid() != parent:
            return True
        if left <= 0:
            return False
        got = _signal_within(STOPS | set(also), min(left, CHECK_PARENT))
        if got is not None:
            return got in STOPS


def _signal_within(signals: set[signal.Signals], seconds: float) -> int | None:
    """The first of `signals` (blocked) to arrive within `seconds`, taken; None if none did.
    Where there is no `sigtimedwait` (macOS), a look at the pending ones every 50 ms."""
    if hasattr(signal, "sigtimedwait"):
        got = signal.sigtimedwait(signals, seconds)
        return None if got is None else got.si_signo
    deadline = time.monotonic() + seconds
    while True:
        pending = signal.sigpending() & signals
        if pending:
            return signal.sigwait(pending)  # at once: one of them is pending
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(left, 0.05))


def _exited(pid: int) -> int | None:
    """`pid`'s wait status once it has ended (reaped), else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return status if done else None


def _end(pid: int, timeout: float) -> None:
    """SIGTERM `pid` (a child), wait up to `timeout` seconds for it, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _exited(pid) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)  # the poll of a child's exit: there is no waitpid with a timeout
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _said_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _kind(exc: Exception) -> str:
    """What tells one failure from another, whatever times its message names."""
    return f"{type(exc).__name__}: {exc.hint if isinstance(exc, MloopError) else exc}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, MloopError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"
