"""Heartbeats: how a process says its runs are still at work, and how readers tell one that died.

A killed process cannot end its runs, so each run records its process (pid and host) and a
heartbeat. One background thread per process beats for every run the process has open, all
in one write per store every `HEARTBEAT_SECONDS`: starting a run costs a set insertion, not a
thread or a write (the first heartbeat is the run's start, written with the run). The thread
stops when the process has no open run, and starts again with the next one.

A reader sees a running run as `lost` when its last heartbeat is older than `LOST_AFTER`, or
at once when its process is gone from this host. The process-wide writer is module state on
purpose, like a logging handler: runs are per process, whichever project objects opened them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING

from mloop.domain.run import Liveness

if TYPE_CHECKING:
    from mloop.store.metadata.protocol import MetadataStore

HEARTBEAT_SECONDS = 30.0
LOST_AFTER = 10 * HEARTBEAT_SECONDS  # ten missed beats: a busy process is not called dead
HOST = os.uname().nodename  # gethostname() without importing socket


class Heartbeats:
    """The open runs of this process, per store, and the thread that beats for them."""

    def __init__(self, interval: float = HEARTBEAT_SECONDS) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._runs: dict[MetadataStore, set[str]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, store: MetadataStore, run_id: str) -> None:
        with self._lock:
            if (
                self._pid != os.getpid()
            ):  # a forked child: its parent's runs and thread are not its own
                self._runs, self._thread, self._pid = {}, None, os.getpid()
            self._runs.setdefault(store, set()).add(run_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name="mloop-heartbeat", daemon=True
                )
                self._thread.start()

    def discard(self, store: MetadataStore, run_id: str) -> None:
        with self._lock:
            runs = self._runs.get(store)
            if runs is not None:
                runs.discard(run_id)
                if not runs:
                    del self._runs[store]

    @property
    def thread(self) -> threading.Thread | None:
        """The thread beating now, if any run is open (None once it has stopped)."""
        return self._thread

    def open_runs(self) -> dict[MetadataStore, list[str]]:
        with self._lock:
            return {store: sorted(ids) for store, ids in self._runs.items()}

    def beat(self) -> None:
        """Write one heartbeat for every open run now (the thread does this every interval)."""
        now = time.time()
        for store, run_ids in self.open_runs().items():
            # A failed beat (store busy, closed, unreachable) must not end the process's runs:
            # the next beat, or the run's end, writes again; at worst it looks lost for a while.
            with contextlib.suppress(Exception):
                store.runs.record_heartbeat(run_ids, now)

    def _beat(self) -> None:
        while True:
            time.sleep(self.interval)  # the heartbeat's period, not a wait for a condition
            with self._lock:
                if not self._runs:
                    self._thread = None
                    return
            self.beat()


HEARTBEATS = Heartbeats()


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:  # no /proc (macOS): kill's answer stands
        return True


def liveness(store: MetadataStore, lost_after: float = LOST_AFTER) -> Liveness:
    """The rule for now: stale heartbeats, and this host's running runs whose process is gone."""
    dead = frozenset(
        run_id
        for run_id, pid in store.runs.running_on(HOST)
        if pid is not None and not process_alive(pid)
    )
    return Liveness(time.time() - lost_after, dead)
