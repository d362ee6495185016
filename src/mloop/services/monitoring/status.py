"""What an endpoint's monitor shows for a window: its traffic, per version and in all.

Two recordings meet here. The prediction log (`services/predictions`) holds every answered
request that was logged (all of them at the default sample rate): the requests of the window,
who answered them, what they asked and what they were told. The servers' reports to the
rollout (`endpoint_stats`, every few seconds per process) hold what the log cannot: requests
answered with an error and the latency of every answer, as histograms that add up across
processes. Latency and the error rate come from the reports of the window (a server started as
`mloop serve REF` makes none: then they are null, and say why), the requests from the log.

A window is the log's (`domain/prediction.Window`); `--last N` is turned into the times its
requests span, so the reports of the same stretch are read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from mloop.domain.analysis import VersionStats
from mloop.domain.policy import ModelPolicy
from mloop.domain.prediction import Window
from mloop.errors import InvalidInput, NotFound
from mloop.services.monitoring.bias import from_feedback
from mloop.services.monitoring.drift import DriftMonitor
from mloop.services.predictions.reader import PredictionReader
from mloop.store.metadata.protocol import MetadataStore


@dataclass(frozen=True, slots=True)
class VersionTraffic:
    """One version in one role over the window. `requests` counts logged requests; `answered`,
    `errors`, `error_rate` and latency come from the servers' reports (None without any)."""

    model: str
    role: str
    requests: int
    answered: int | None = None
    errors: int | None = None
    error_rate: float | None = None
    p50: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """What `mloop monitor status --json` prints. `features` and `prediction` map to
    `{"method", "score", "threshold", "drifted"}`, `accuracy` holds the metrics from feedback
    with the count of labelled requests; each is None where it cannot be computed, and `notes`
    says why."""

    endpoint: str
    window: str
    since: float
    until: float
    requests: int
    versions: tuple[VersionTraffic, ...]
    error_rate: float | None
    latency: dict[str, float | None]
    features: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reference: str | None = None  # what the drift is measured against (dataset and table)
    accuracy: dict[str, Any] | None = None
    bias: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()


class MonitorService:
    """The live numbers of an endpoint's window (`mloop monitor status`)."""

    def __init__(
        self,
        metadata: MetadataStore,
        predictions: PredictionReader,
        bias_columns: Sequence[str] = (),
        policies: Mapping[str, ModelPolicy] | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        self.metadata = metadata
        self.predictions = predictions
        self.drift = drift
        self.bias_columns = tuple(bias_columns)
        self.policies = dict(policies or {})

    def status(self, endpoint: str, window: Window) -> MonitorStatus:
        """Raises NotFound for an unknown endpoint or a window with no logged request."""
        return self.status_of(endpoint, window, self.predictions.read(endpoint, window).table)

    def status_of(self, endpoint: str, window: Window, found: Any) -> MonitorStatus:
        """The status of the window's logged rows `found` (as `PredictionReader.read` gave
        them): `monitor report` reads the window once for the status and its series."""
        at = found.column("at")
        since, until = pc.min(at).as_py(), pc.max(at).as_py()
        if window.last is None:
            since = window.since if window.since is not None else since
            until = window.until if window.until is not None else until
        # a report comes after the answers it counts: an open window takes the latest too
        reported = self.metadata.endpoints.stats(endpoint, None, since=since, until=window.until)
        versions = []
        keys = found.group_by(["model", "role"]).aggregate([("request_id", "count_distinct")])
        for row in keys.to_pylist():
            seen = reported.get(row["model"])
            versions.append(
                _traffic(row["model"], row["role"], row["request_id_count_distinct"], seen)
            )
        total = reported_total(reported, window)
        notes = []
        if not reported:
            notes.append(
                "no server reported latency or errors in this window: servers started with "
                f"`mloop serve --endpoint {endpoint}` do (every few seconds)"
            )
        requests = pc.count_distinct(found.column("request_id")).as_py()
        labelled = from_feedback(
            self.metadata,
            self.predictions.artifacts,
            endpoint,
            window,
            found,
            self.bias_columns,
            self.policies,
        )
        notes.extend(labelled.notes)
        drifted = self._drift(endpoint, window, found, notes)
        return MonitorStatus(
            endpoint=endpoint,
            window=window.describe(),
            since=since,
            until=until,
            requests=requests,
            versions=tuple(versions),
            error_rate=_error_rate(total),
            latency={"p50": total.quantile(0.5), "p99": total.p99()},
            features=None if drifted is None else drifted["features"],
            prediction=None if drifted is None else drifted["prediction"],
            reference=None if drifted is None else drifted["reference"],
            accuracy=labelled.accuracy,
            bias=labelled.bias,
            notes=tuple(notes),
        )

    def _drift(
        self, endpoint: str, window: Window, found: Any, notes: list[str]
    ) -> dict[str, Any] | None:
        """The window's drift as plain data; without a usable reference, a note instead (the
        rest of the status still shows)."""
        if self.drift is None:
            return None
        try:
            report = self.drift.compare(endpoint, window, found)
        except (InvalidInput, NotFound) as exc:  # no reference to compare with
            notes.append(f"no drift: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            return None
        plain = report.to_plain()
        notes.extend(plain.get("notes") or ())
        return plain


def reported_total(reported: Mapping[str, VersionStats], window: Window) -> VersionStats:
    """What the servers reported of the versions the window takes (`--model NAME:V`, or
    `NAME` for all its versions, as the log reads them), added up."""
    total = VersionStats()
    for model, seen in reported.items():
        if window.model is None or window.model in (model, model.partition(":")[0]):
            total = total + seen
    return total


def _error_rate(stats: VersionStats) -> float | None:
    return None if stats.requests <= 0 else stats.errors / stats.requests


def _traffic(model: str, role: str, requests: int, seen: VersionStats | None) -> VersionTraffic:
    if seen is None:
        return VersionTraffic(model, role, requests)
    return VersionTraffic(
        model,
        role,
        requests,
        seen.requests,
        seen.errors,
        _error_rate(seen),
        seen.quantile(0.5),
        seen.p99(),
    )
