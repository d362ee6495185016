"""The server's monitor: a failing pass (stores unreachable when opened, no request in the
window, any exception) is counted and keeps the last result; a pass with a problem publishes
what it measured and counts the problem; its process runs on its interval, publishes into the
shared region its parent reads, and closes its stores when stopped."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mloop.errors import NotFound, StoreUnavailable
from mloop.server.monitor import Monitor, Monitoring, MonitorProcess, _signal_within
from mloop.services.serving.shared_gauges import SharedGauges
from tests.servers import wait_for


@dataclass
class Measured:
    families: list[Any]
    problems: tuple[str, ...] = ()


@dataclass
class Script:
    """Opening fails with each of `refusals` in turn; then each pass gets the next of `answers`
    (raised when an exception, else returned; the last one repeats)."""

    refusals: list[Exception]
    answers: list[Any]
    opened: int = 0
    asked: list[str] = field(default_factory=list)

    def factory(self) -> Callable[[str], Any]:
        self.opened += 1
        if self.refusals:
            raise self.refusals.pop(0)
        return self.measure

    def measure(self, endpoint: str) -> Any:
        self.asked.append(endpoint)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _drift(score: float) -> Measured:
    family = ("mloop_drift_score", "Drift", ["feature"], [(["age"], score)])
    return Measured([family])


def test_failed_passes_are_counted_and_keep_the_last_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = Script(
        [StoreUnavailable("cannot reach the metadata store", "start it")],
        [
            NotFound("no request of endpoint web was logged in the window"),
            _drift(0.4),
            RuntimeError("the log's folder vanished"),
            ModuleNotFoundError("No module named 'pandas'", name="pandas"),
            Measured([], ("no drift for churn:1: no reference",)),
        ],
    )
    gauges = SharedGauges(4096)
    monitor = Monitor(script.factory, "web", gauges)
    caplog.set_level(logging.WARNING, "mloop.monitor")
    assert not monitor.run_once()  # the stores could not be opened: tried again next time
    assert not monitor.run_once()  # opened now; no request in the window
    assert gauges.read().errors == 2.0 and gauges.read().families == ()
    assert monitor.run_once()
    published = gauges.read()
    assert published.families[0][3] == ((("age",), 0.4),) and published.last_run > 0
    assert not monitor.run_once()  # anything at all: counted, the last result kept
    assert not monitor.run_once()  # an optional library missing: said with its extra
    kept = gauges.read()
    assert kept.families == published.families and kept.last_run == published.last_run
    assert kept.errors == 4.0 and kept.passes == 5.0
    assert monitor.run_once()  # measured, with a problem: published and counted
    assert gauges.read().errors == 5.0 and gauges.read().families == ()
    assert script.opened == 2 and script.asked == ["web"] * 5
    said = [r.getMessage().removeprefix("monitor of endpoint web: ") for r in caplog.records]
    assert said == [
        "cannot reach the metadata store (start it)",
        "measuring again",  # the empty window before was counted, not said
        "RuntimeError: the log's folder vanished",
        "this needs pandas (mloop's data extra), which is not installed "
        "(pip install 'mloop[data]')",
        "no drift for churn:1: no reference",
    ]


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: only its exit status waits to be read)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_process_measures_on_its_interval_until_stopped() -> None:
    script = Script([], [_drift(0.1)])
    gauges = SharedGauges(4096)
    monitor = MonitorProcess(Monitoring(script.factory, 0.01, "web"), gauges)
    monitor.start()
    keeper = monitor.pid
    assert keeper is not None and keeper != os.getpid()
    try:
        wait_for(lambda: gauges.read().passes >= 3, 30, "three monitor passes")
    finally:
        monitor.stop()
    stopped = gauges.read().passes
    assert not _alive(keeper) and monitor.pid is None
    assert gauges.read().families[0][3] == ((("age",), 0.1),)  # published across the fork
    assert gauges.read().passes == stopped


@dataclass
class Closing(Script):
    """A measure holding its own stores, as the server's does (`cli.serve.ProjectMonitor`);
    it writes the pid of the process that closed them into `marker`."""

    marker: Path = Path()

    def factory(self) -> Callable[[str], Any]:
        measure = super().factory()
        marker = self.marker

        class Measure:
            def __call__(self, endpoint: str) -> Any:
                return measure(endpoint)

            def close(self) -> None:
                marker.write_text(str(os.getpid()))

        return Measure()


def test_the_measures_stores_are_closed_by_its_process_when_stopped(tmp_path: Path) -> None:
    script = Closing([], [_drift(0.1)], marker=tmp_path / "closed")
    gauges = SharedGauges(4096)
    monitor = MonitorProcess(Monitoring(script.factory, 3600.0, "web"), gauges)
    monitor.start()
    try:
        wait_for(lambda: gauges.read().passes >= 1, 30, "a monitor pass")
        assert not script.marker.exists()  # open while the server serves
    finally:
        monitor.stop()
    closed_in = int(script.marker.read_text())
    assert closed_in not in (os.getpid(), monitor.pid)  # by the monitor, not its keeper or us


@pytest.mark.parametrize("sigtimedwait", [True, False], ids=["linux", "without sigtimedwait"])
def test_a_blocked_stop_signal_is_taken_within_the_wait(
    sigtimedwait: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waits between passes take a stop signal as it comes, and time out without one; on a
    system without `sigtimedwait` (macOS, which this machine is not: the function is taken
    away to run that path) by looking at the pending signals."""
    if not sigtimedwait:
        monkeypatch.delattr(signal, "sigtimedwait")
    stops = {signal.SIGUSR1}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        assert _signal_within(stops, 0.05) is None
        here = threading.get_ident()  # to this thread, which blocks it (no other one may die)
        threading.Timer(0.1, signal.pthread_kill, (here, signal.SIGUSR1)).start()
        assert _signal_within(stops, 30) == signal.SIGUSR1
        assert not signal.sigpending() & stops  # taken, not left pending
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
