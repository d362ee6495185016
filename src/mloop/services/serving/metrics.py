"""Prometheus metrics of a model server, counted in shared memory so workers add up.

With `--workers N`, a scrape reaches one worker at random; prometheus-client's own multiprocess
mode answers that with files and an environment variable that must be set before it is
imported. Here every number lives in one anonymous shared memory map made before the workers
are forked: each worker writes only its own block (one writer, no locks), and whichever worker
answers `/metrics` adds all blocks up. A request costs a handful of float additions, so metrics
stay on without showing in the latency. Process memory and CPU are read from /proc for every
worker's pid, so they too describe the whole server. The monitor's gauges (drift, accuracy,
bias) are computed elsewhere on an interval and only copied out here (`shared_gauges.py`).
"""

from __future__ import annotations

import mmap
import os
import resource
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from mloop.services.serving import versions as v
from mloop.services.serving.shared_gauges import SharedGauges
from mloop.services.serving.versions import (
    SECONDS,
    STATUSES,
    VersionBlocks,
    VersionCounters,
)
from mloop.services.serving.versions import observe as _observe

ENDPOINTS = (
    "invocations",
    "infer",
    "metadata",
    "health",
    "metrics",
    "openapi",
    "feedback",
    "other",
)
ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Text columns whose unknown categories are counted by name; any past these share the last.
CATEGORY_COLUMNS = 32

_STATUS_INDEX = {status: i for i, status in enumerate(STATUSES)}
_E_OTHER = ENDPOINTS.index("other")
_NS = len(STATUSES) + 1
_HS = len(SECONDS) + 3  # buckets, +Inf, sum, count
_HR = len(ROWS) + 3
# One worker's block of float slots:
_REQUESTS = 0
_LATENCY = _REQUESTS + len(ENDPOINTS) * _NS
_IN_FLIGHT = _LATENCY + len(ENDPOINTS) * _HS
_BATCH_ROWS = _IN_FLIGHT + 1
_BATCH_REQUESTS = _BATCH_ROWS + _HR
_PREDICT = _BATCH_REQUESTS + _HR
_LOAD = _PREDICT + _HS
_PID = _LOAD + 1
_READY = _PID + 1
_UNKNOWN = _READY + 1
_LOGGED = _UNKNOWN + CATEGORY_COLUMNS  # requests the prediction log stored
_LOG_DROPPED = _LOGGED + 1  # requests it answered but could not log
_LOG_UNSCORED = _LOG_DROPPED + 1  # rows it logged without the class scores their model has
_STARTED = _LOG_UNSCORED + 1  # when the worker process started (epoch seconds)
BLOCK = _STARTED + 1


class SharedCounters:
    """Float slots for `workers` processes in one shared anonymous memory map.

    Made in the parent before forking; every worker sees the same memory.

    Example:
        >>> counters = SharedCounters(2)
        >>> counters.block(1)[0] += 1
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._map = mmap.mmap(-1, workers * BLOCK * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self.slots = memoryview(self._map).cast("d")
        self.versions = VersionCounters(workers)  # per served version (`versions.py`)
        self.gauges = SharedGauges()  # the monitor's last result (`shared_gauges.py`)
        self.monitored = False  # whether a monitor publishes there (set before the fork)

    def block(self, worker: int) -> memoryview[float]:
        return self.slots[worker * BLOCK : (worker + 1) * BLOCK]

    def pids(self) -> list[int]:
        return [int(self.block(w)[_PID]) for w in range(self.workers) if self.block(w)[_PID]]

    def ready(self, worker: int) -> bool:
        return self.block(worker)[_READY] == 1.0


class ServingMetrics:
    """What a model server counts; `render` answers a Prometheus scrape.

    Example:
        >>> metrics = ServingMetrics(model="churn", version=3)
        >>> metrics.request(0, 200, 0.0004)
        >>> b"mloop_requests_total" in metrics.render()
        True
    """

    def __init__(
        self,
        counters: SharedCounters | None = None,
        worker: int = 0,
        model: str = "",
        version: int = 0,
    ) -> None:
        self.counters = counters or SharedCounters(1)
        self.model = model
        self.version = version
        self._block = self.counters.block(worker)
        self._block[_PID] = os.getpid()
        self._block[_IN_FLIGHT] = 0.0  # a restarted worker starts with nothing in flight
        self._block[_STARTED] = time.time()
        self.category_columns: list[str] = []
        self.versions = VersionBlocks(self.counters.versions, worker)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def request(self, endpoint: int, status: int, seconds: float) -> None:
        """Count one answered request: `endpoint` indexes ENDPOINTS."""
        block = self._block
        block[_REQUESTS + endpoint * _NS + _STATUS_INDEX.get(status, _NS - 1)] += 1.0
        _observe(block, _LATENCY + endpoint * _HS, SECONDS, seconds)

    def refused(self, status: int) -> None:
        """Count a connection turned away below the app (too many connections, a request head
        too large or too slow): endpoint "other", since no route was read, and no latency."""
        block = self._block
        block[_REQUESTS + _E_OTHER * _NS + _STATUS_INDEX.get(status, _NS - 1)] += 1.0

    def enter(self) -> None:
        self._block[_IN_FLIGHT] += 1.0

    def leave(self) -> None:
        self._block[_IN_FLIGHT] -= 1.0

    def batch(self, rows: int, requests: int, seconds: float) -> None:
        """Count one predict call: rows in it, requests merged into it, and its duration."""
        block = self._block
        _observe(block, _BATCH_ROWS, ROWS, rows)
        _observe(block, _BATCH_REQUESTS, ROWS, requests)
        _observe(block, _PREDICT, SECONDS, seconds)

    def watch_categories(self, columns: Sequence[str]) -> None:
        """Name the text columns whose unknown categories are counted (by position), the same
        in every worker since each serves the same signature."""
        names = list(columns[:CATEGORY_COLUMNS])
        if len(columns) > CATEGORY_COLUMNS:
            names[-1] = "(others)"
        self.category_columns = names

    def unknown_categories(self, column: int, count: int) -> None:
        """Count `count` values training never saw in the `column`-th watched column."""
        self._block[_UNKNOWN + min(column, CATEGORY_COLUMNS - 1)] += count

    def loaded(self, seconds: float) -> None:
        self._block[_LOAD] = seconds

    def ready(self, ready: bool = True) -> None:
        self._block[_READY] = 1.0 if ready else 0.0

    def logging(self) -> tuple[float, float, float]:
        """Where this worker's prediction-log counts stand now: a restarted worker counts on
        from there (its writer starts at 0), so the counters never go back."""
        block = self._block
        return block[_LOGGED], block[_LOG_DROPPED], block[_LOG_UNSCORED]

    def logged(self, written: float, dropped: float, unscored: float = 0.0) -> None:
        self._block[_LOGGED] = written
        self._block[_LOG_DROPPED] = dropped
        self._block[_LOG_UNSCORED] = unscored

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _process_stats(pids: list[int]) -> tuple[float, float]:
    """Resident bytes and CPU seconds of these processes, from /proc (this process elsewhere)."""
    if not os.path.isdir("/proc"):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_maxrss * 1024.0, usage.ru_utime + usage.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGESIZE")
    memory = cpu = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a worker that exited since its pid was recorded
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        memory += int(fields[21]) * page
    return memory, cpu


class _Collector(Collector):
    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        counters = self.metrics.counters
        blocks = [counters.block(w) for w in range(counters.workers) if counters.block(w)[_PID]]
        total = [sum(values) for values in zip(*blocks, strict=True)] if blocks else [0.0] * BLOCK

        requests = CounterMetricFamily(
            "mloop_requests",
            "Answered requests by endpoint and status",
            labels=["endpoint", "status"],
        )
        latency = HistogramMetricFamily(
            "mloop_request_duration_seconds", "Time to answer a request", labels=["endpoint"]
        )
        for e, endpoint in enumerate(ENDPOINTS):
            for s, status in enumerate((*STATUSES, "other")):
                value = total[_REQUESTS + e * _NS + s]
                if value:
                    requests.add_metric([endpoint, str(status)], value)
            if total[_LATENCY + e * _HS + _HS - 1]:
                latency.add_metric([endpoint], *_histogram(total, _LATENCY + e * _HS, SECONDS))
        yield requests
        yield latency
        yield GaugeMetricFamily(
            "mloop_requests_in_flight", "Predict requests being answered", value=total[_IN_FLIGHT]
        )
        for name, doc, base, bounds in (
            ("mloop_batch_rows", "Rows per predict call", _BATCH_ROWS, ROWS),
            (
                "mloop_batch_requests",
                "Requests merged into one predict call",
                _BATCH_REQUESTS,
                ROWS,
            ),
            ("mloop_predict_duration_seconds", "Time of one predict call", _PREDICT, SECONDS),
        ):
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], *_histogram(total, base, bounds))
            yield family
        unknown = CounterMetricFamily(
            "mloop_unknown_categories",
            "Values of text inputs that the training data never held, by column",
            labels=["column"],
        )
        for i, column in enumerate(self.metrics.category_columns):
            unknown.add_metric([column], total[_UNKNOWN + i])
        yield unknown
        yield from _version_families(counters.versions)
        if counters.monitored:
            yield from _monitor_families(counters.gauges)
        loads = [b[_LOAD] for b in blocks] or [0.0]
        yield GaugeMetricFamily(
            "mloop_model_load_seconds", "Time the slowest worker took to load the model", max(loads)
        )
        info = GaugeMetricFamily(
            "mloop_model_info", "The model version served", labels=["name", "version"]
        )
        if self.metrics.model:  # one version served (an endpoint's are in mloop_model_*)
            info.add_metric([self.metrics.model, str(self.metrics.version)], 1.0)
        yield info
        yield GaugeMetricFamily(
            "mloop_workers", "Worker processes ready", sum(b[_READY] for b in blocks)
        )
        started = [b[_STARTED] for b in blocks if b[_STARTED]]
        yield GaugeMetricFamily(
            "process_start_time_seconds",
            "When the longest-running worker started (uptime: time() minus this)",
            min(started) if started else 0.0,
        )
        yield CounterMetricFamily(
            "mloop_prediction_log_written",
            "Answered requests stored in the prediction log",
            total[_LOGGED],
        )
        yield CounterMetricFamily(
            "mloop_prediction_log_dropped",
            "Answered requests the prediction log could not keep (a full buffer, a long outage)",
            total[_LOG_DROPPED],
        )
        yield CounterMetricFamily(
            "mloop_prediction_log_unscored",
            "Logged rows without the class scores their model has (its predict_proba failed, "
            "or a flush's scoring budget ran out)",
            total[_LOG_UNSCORED],
        )
        memory, cpu = _process_stats(counters.pids())
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the worker processes", memory
        )
        yield CounterMetricFamily(
            "process_cpu_seconds", "CPU time (user and system) of the worker processes", cpu
        )


def _histogram(
    total: list[float], base: int, bounds: tuple[float, ...]
) -> tuple[list[tuple[str, float]], float]:
    buckets: list[tuple[str, float]] = []
    running = 0.0
    for i, bound in enumerate((*bounds, float("inf"))):
        running += total[base + i]
        buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
    return buckets, total[base + len(bounds) + 1]


def _monitor_families(gauges: SharedGauges) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """The monitor's last result as it published it, and how the monitor itself is doing."""
    found = gauges.read()
    for name, text, labels, samples in found.families:
        family = GaugeMetricFamily(name, text, labels=list(labels))
        for values, value in samples:
            family.add_metric(list(values), value)
        yield family
    yield CounterMetricFamily(
        "mloop_monitor_passes", "Monitor passes run (drift, accuracy, bias)", found.passes
    )
    yield CounterMetricFamily(
        "mloop_monitor_errors",
        "Monitor passes that failed or left something out (the server's log says why)",
        found.errors,
    )
    yield GaugeMetricFamily(
        "mloop_monitor_last_run_timestamp_seconds",
        "When the monitor last published its gauges (0: not yet)",
        found.last_run,
    )
    yield GaugeMetricFamily(
        "mloop_monitor_duration_seconds", "What the last published pass took", found.duration
    )
    yield GaugeMetricFamily(
        "mloop_monitor_series_dropped",
        "Gauge samples the last pass had no room for in the shared region",
        found.dropped,
    )


def _version_families(
    counters: VersionCounters,
) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
    """The per-version series, labelled by endpoint, model version (NAME:V) and role."""
    labels = ["endpoint", "model", "role"]
    requests = CounterMetricFamily(
        "mloop_model_requests",
        "Predict requests answered by each served version, by status",
        labels=[*labels, "status"],
    )
    errors = CounterMetricFamily(
        "mloop_model_errors", "Predict requests a version answered with a 5xx", labels=labels
    )
    latency = HistogramMetricFamily(
        "mloop_model_request_duration_seconds",
        "Time for a version to answer a predict request",
        labels=labels,
    )
    shadow = {
        name: CounterMetricFamily(f"mloop_shadow_{name}", doc, labels=labels)
        for name, doc in (
            ("requests", "Copies of requests a shadow predicted"),
            ("dropped", "Copies dropped because the shadow's queue was full"),
            ("agreements", "Copies where the shadow's predictions matched the primary's"),
            ("failures", "Copies the shadow failed to predict"),
        )
    }
    outcomes = CounterMetricFamily(
        "mloop_model_outcomes",
        "Outcomes posted to /feedback for a version's answers (an A/B test's conversions)",
        labels=labels,
    )
    outcome_value = CounterMetricFamily(
        "mloop_model_outcome_value",
        "The sum of those outcomes: over mloop_model_outcomes_total, a conversion rate or mean",
        labels=labels,
    )
    mirrored = HistogramMetricFamily(
        "mloop_shadow_predict_duration_seconds",
        "Predict time on mirrored requests, of the primary and of the shadow (by role)",
        labels=labels,
    )
    fields = {"requests": v.MIRRORED, "dropped": v.DROPPED}
    fields |= {"agreements": v.AGREED, "failures": v.MIRROR_FAILED}
    for found, total in counters.totals():
        values = [found.endpoint, found.model, found.role]
        for s, status in enumerate((*STATUSES, "other")):
            if total[v.REQUESTS + s]:
                requests.add_metric([*values, str(status)], total[v.REQUESTS + s])
        errors.add_metric(values, total[v.ERRORS])
        if total[v.LATENCY + _HS - 1]:
            latency.add_metric(values, *_histogram(total, v.LATENCY, SECONDS))
        if found.role == "shadow":
            for name, family in shadow.items():
                family.add_metric(values, total[fields[name]])
        if total[v.MIRROR_LATENCY + _HS - 1]:
            mirrored.add_metric(values, *_histogram(total, v.MIRROR_LATENCY, SECONDS))
        if total[v.OUTCOMES]:
            outcomes.add_metric(values, total[v.OUTCOMES])
            outcome_value.add_metric(values, total[v.OUTCOME_TOTAL])
    yield requests
    yield errors
    yield latency
    yield outcomes
    yield outcome_value
    yield from shadow.values()
    yield mirrored
