"""The monitor's gauges for Prometheus: what `mloop monitor status` measures, per version.

A model server runs one `GaugeMonitor` (in a process of its own, `server/monitor.py`) that calls
`measure` every `monitoring_interval` over the last `monitoring_window`; the server's /metrics
shows its last result. The series are those the alert rules and the dashboard read
(`deploy/monitoring.py`):

- `mloop_drift_score` and `mloop_drift_threshold` {endpoint, model, feature, method}: per
  version, each input and the predictions (feature `prediction`) against the reference;
- `mloop_accuracy` {endpoint, model, role, metric} from feedback, `mloop_accuracy_labelled`
  {endpoint, model, role} the labelled predictions it counts; each served version's registered
  metric of those names (from its run) as `mloop_accuracy_reference` {endpoint, model, metric};
- `mloop_bias` {endpoint, model, role, column, measure}: the gap between groups, and
  `mloop_bias_bound` {endpoint, model, column, measure} where a promotion gate bounds it;
- `mloop_monitor_window_requests` {endpoint}: the logged requests the pass read.

The window is read once per pass, as `monitor status` reads it. A part that cannot be measured
(a version with no reference to compare with, labels of the wrong type) is left out and named
in `Measured.problems`; the rest is still published.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow.compute as pc

from mloop.domain.names import ModelRef
from mloop.domain.prediction import Window
from mloop.errors import InvalidInput, NotFound
from mloop.services.monitoring import accuracy, bias

if TYPE_CHECKING:
    from mloop.services.monitoring.status import MonitorService

DRIFT = ("endpoint", "model", "feature", "method")
VERSION = ("endpoint", "model", "role")
BIAS = ("endpoint", "model", "role", "column", "measure")
BOUND = ("endpoint", "model", "column", "measure")
# What feedback measures (`accuracy.classification_metrics`, `regression_metrics`): a version's
# registered metric of one of these names is its reference.
ACCURACY_METRICS = frozenset(
    {"accuracy", "precision", "recall", "f1", "precision_macro", "recall_macro", "f1_macro"}
    | {"roc_auc", "mae", "rmse"}
)


class GaugeFamily(NamedTuple):
    """One gauge and its samples (label values in the order of `labels`, value)."""

    name: str
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


@dataclass(frozen=True, slots=True)
class Measured:
    """One pass: the gauges, and what it had to leave out (one line each)."""

    families: tuple[GaugeFamily, ...]
    problems: tuple[str, ...] = field(default=())


class GaugeMonitor:
    """Computes an endpoint's gauges from its last `window` seconds of logged requests.

    Example:
        >>> monitor = GaugeMonitor(project.monitoring, window=3600.0)  # doctest: +SKIP
        >>> monitor.measure("web").families[0].name  # doctest: +SKIP
        'mloop_monitor_window_requests'
    """

    def __init__(
        self, monitoring: MonitorService, window: float, max_requests: int | None = None
    ) -> None:
        """`max_requests`: measure at most the window's latest this many requests. A pass
        runs in a serving process, and reading a busy endpoint's whole hour (600,000 requests:
        12 s) would take a core from its requests; the latest 100,000 take about 1 s."""
        self.monitoring = monitoring
        self.window = window
        self.max_requests = max_requests
        self._registered: dict[str, dict[str, float]] = {}  # a version's metrics never change

    def measure(self, endpoint: str, now: float | None = None) -> Measured:
        """Raises NotFound when no request of `endpoint` was logged in the window, and whatever
        the stores raise when they cannot be read: the caller keeps its last result."""
        now = time.time() if now is None else now
        window = Window(since=now - self.window, last=self.max_requests)
        monitoring = self.monitoring
        table = monitoring.predictions.read(endpoint, window).table
        families = _families()
        problems: list[str] = []
        requests = pc.count_distinct(table.column("request_id")).as_py()
        families["mloop_monitor_window_requests"].samples.append(((endpoint,), float(requests)))
        served = sorted(set(table.column("model").to_pylist()))
        self._drift(endpoint, window, table, served, families, problems)
        self._references(endpoint, served, families)
        try:
            joined = accuracy.join(
                monitoring.metadata, monitoring.predictions.artifacts, endpoint, window, table
            )
        except InvalidInput as exc:
            problems.append(exc.message)
        else:
            self._accuracy(endpoint, accuracy.measure(joined, window), families)
            policies = monitoring.policies
            columns = bias.monitored_columns(monitoring.bias_columns, policies, served)
            measured = bias.measure(joined, columns, policies)
            if measured is not None:
                _bias(endpoint, measured, families)
        return Measured(tuple(families.values()), tuple(problems))

    def _drift(
        self,
        endpoint: str,
        window: Window,
        table: Any,
        served: list[str],
        families: dict[str, GaugeFamily],
        problems: list[str],
    ) -> None:
        import pyarrow.compute as pc

        drift = self.monitoring.drift
        if drift is None:
            return
        for model in served:
            mine = table.filter(pc.equal(table.column("model"), model))
            try:
                report = drift.compare(endpoint, window, mine)
            except (InvalidInput, NotFound) as exc:
                problems.append(f"no drift for {model}: {exc.message}")
                continue
            found = dict(report.features)
            if report.prediction is not None:
                found["prediction"] = report.prediction
            for feature, verdict in found.items():
                if verdict.score is None or verdict.method is None:
                    continue
                labels = (endpoint, model, feature, verdict.method)
                families["mloop_drift_score"].samples.append((labels, verdict.score))
                if verdict.threshold is not None:
                    families["mloop_drift_threshold"].samples.append((labels, verdict.threshold))

    def _accuracy(
        self, endpoint: str, report: accuracy.AccuracyReport, families: dict[str, GaugeFamily]
    ) -> None:
        for line in report.versions:
            if not line.labelled or line.metrics is None:
                continue
            version = (endpoint, line.model, line.role)
            families["mloop_accuracy_labelled"].samples.append((version, float(line.labelled)))
            for metric, value in line.metrics.items():
                if value is not None:
                    families["mloop_accuracy"].samples.append(((*version, metric), value))

    def _references(
        self, endpoint: str, served: list[str], families: dict[str, GaugeFamily]
    ) -> None:
        """Each served version's registered accuracy metrics (from its run), feedback or not:
        what `MloopAccuracyDrop` compares the live ones with."""
        for model in served:
            for metric, value in self._metrics_of(model).items():
                if metric in ACCURACY_METRICS:
                    labels = (endpoint, model, metric)
                    families["mloop_accuracy_reference"].samples.append((labels, value))

    def _metrics_of(self, model: str) -> dict[str, float]:
        if model not in self._registered:
            ref = ModelRef.parse(model)
            version = self.monitoring.metadata.models.get_version(ref.name, ref.version, None)
            self._registered[model] = {k: float(v) for k, v in version.metrics.items()}
        return self._registered[model]


def _bias(endpoint: str, report: bias.BiasReport, families: dict[str, GaugeFamily]) -> None:
    bounded: set[tuple[str, str, str]] = set()
    for found in report.columns:
        for gap in found.gaps:
            if gap.difference is None:
                continue
            labels = (endpoint, found.model, found.role, found.column, gap.measure)
            families["mloop_bias"].samples.append((labels, gap.difference))
            bound = _upper_bound(gap.bound)
            key = (found.model, found.column, gap.measure)
            if bound is not None and key not in bounded:
                bounded.add(key)
                families["mloop_bias_bound"].samples.append(((endpoint, *key), bound))


def _upper_bound(bound: str | None) -> float | None:
    """The number of a gate's bound as `bias.Gap` writes it (`<= 0.1`); None for no gate or
    one that bounds the gap from below (no alert compares with that)."""
    if bound is None:
        return None
    op, _, number = bound.partition(" ")
    return float(number) if op in ("<", "<=") else None


def _families() -> dict[str, GaugeFamily]:
    described = (
        ("mloop_monitor_window_requests", "Logged requests in the monitor's window", ("endpoint",)),
        ("mloop_drift_score", "Drift of a feature (or the predictions) from the reference", DRIFT),
        ("mloop_drift_threshold", "The drift score above which a feature counts as drifted", DRIFT),
        (
            "mloop_accuracy",
            "A metric of a version's answers against feedback labels",
            (*VERSION, "metric"),
        ),
        ("mloop_accuracy_labelled", "Labelled predictions the accuracy counts", VERSION),
        (
            "mloop_accuracy_reference",
            "The version's registered value of the metric (from training)",
            ("endpoint", "model", "metric"),
        ),
        ("mloop_bias", "The gap between groups of a sensitive column", BIAS),
        ("mloop_bias_bound", "The bound the model's promotion gate puts on that gap", BOUND),
    )
    return {name: GaugeFamily(name, text, labels, []) for name, text, labels in described}
