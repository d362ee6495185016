"""A window's numbers per time bucket: what `mloop monitor report` plots over time.

The buckets are accuracy's (`accuracy.measure`): `NICE_BUCKETS` seconds long, about `BUCKETS`
of them over the span of the window's requests, aligned to multiples of their length, so the
drift, latency and accuracy plots share their x positions.

A bucket's drift is `DriftMonitor.compare` on the bucket's rows, with each feature's method and
threshold pinned to the whole window's verdict: left to choose, a 300-row bucket would be judged
by a p-value and a 3,000-row one by a distance, and one line could not hold both. The cost grows
with the window (each row is counted into the reference's bins once); the reference summaries
come from the monitor's cache. Latency and the error rate come from what the servers reported
during each bucket (`endpoint_stats`), as `monitor status` reads them for the whole window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mloop.domain import drift as d
from mloop.domain.analysis import VersionStats
from mloop.domain.prediction import PREDICTION, Window
from mloop.errors import InvalidInput, NotFound
from mloop.services.monitoring.accuracy import SHADOW, bucket_step
from mloop.services.monitoring.drift import DriftMonitor
from mloop.services.monitoring.status import reported_total

if TYPE_CHECKING:
    from mloop.store.metadata.protocol import MetadataStore


@dataclass(frozen=True, slots=True)
class Bucket:
    """From `start` to `end` (seconds): the logged `requests` answered (shadows' copies not
    counted), each drift line's `scores` (None: nothing to compare), and from the servers'
    reports the answers, error rate and latency (None: no report in the bucket)."""

    start: float
    end: float
    requests: int
    scores: dict[str, float | None]
    answered: int | None = None
    error_rate: float | None = None
    p50: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    """The buckets of a window, `step` seconds each; `rules` hold the method and threshold each
    drift line is scored by (the whole window's verdict), `reported` whether any server
    reported latency and errors in the window."""

    step: float
    buckets: tuple[Bucket, ...]
    rules: dict[str, d.DriftRule]
    reported: bool


def bucket_starts(first: float, last: float, step: float) -> list[float]:
    """The buckets' starts, multiples of `step`, from the one holding `first` to the one
    holding `last`.

    Example:
        >>> bucket_starts(130.0, 290.0, 60.0)
        [120.0, 180.0, 240.0]
    """
    first_bucket, last_bucket = math.floor(first / step), math.floor(last / step)
    # (k * step), as the rows' buckets are computed, so the two compare equal
    return [float(k) * step for k in range(first_bucket, last_bucket + 1)]


def pinned_rules(
    features: dict[str, Any] | None, prediction: dict[str, Any] | None
) -> dict[str, d.DriftRule]:
    """Each compared line's method and threshold, as the window's verdict (`monitor status`'s
    `features` and `prediction`) chose them; a line without a verdict is left out."""
    lines = dict(features or {})
    if prediction is not None:
        lines[PREDICTION] = prediction
    return {
        name: d.DriftRule(float(found["threshold"]), d.Method(found["method"]))
        for name, found in lines.items()
        if found.get("method") is not None and found.get("threshold") is not None
    }


def timeline(
    metadata: MetadataStore,
    monitor: DriftMonitor | None,
    endpoint: str,
    window: Window,
    found: Any,
    rules: dict[str, d.DriftRule],
) -> Timeline:
    """The window's buckets over the logged rows `found` (as `PredictionReader.read` gave
    them): drift per bucket by `rules` (none without a monitor or a rule), and the servers'
    reports of each bucket."""
    import pyarrow.compute as pc

    at = found.column("at")
    bounds = pc.min_max(at).as_py()
    step = bucket_step(bounds["min"], bounds["max"])
    pinned = None
    if monitor is not None and rules:
        pinned = DriftMonitor(
            monitor.models,
            monitor.data,
            monitor.predictions,
            monitor.cache,
            monitor.reference,
            rules,
        )
    starts = pc.multiply(pc.floor(pc.divide(at, step)), step)
    buckets = []
    reported = False
    for start in bucket_starts(bounds["min"], bounds["max"], step):
        rows = found.filter(pc.equal(starts, start))
        seen = _reported(metadata, endpoint, window, start, start + step)
        reported = reported or seen is not None
        buckets.append(
            Bucket(
                start,
                start + step,
                _requests(rows),
                _scores(pinned, endpoint, window, rows, rules),
                *_traffic(seen),
            )
        )
    return Timeline(step, tuple(buckets), rules, reported)


def _requests(rows: Any) -> int:
    import pyarrow.compute as pc

    answered = rows.filter(pc.not_equal(rows.column("role"), SHADOW))
    return int(pc.count_distinct(answered.column("request_id")).as_py())


def _scores(
    monitor: DriftMonitor | None,
    endpoint: str,
    window: Window,
    rows: Any,
    rules: dict[str, d.DriftRule],
) -> dict[str, float | None]:
    if monitor is None or not rows.num_rows:
        return dict.fromkeys(rules)
    try:
        report = monitor.compare(endpoint, window, rows)
    except (InvalidInput, NotFound):  # the bucket's version has no reference: no point
        return dict.fromkeys(rules)
    lines = dict(report.features)
    if report.prediction is not None:
        lines[PREDICTION] = report.prediction
    return {name: lines[name].score if name in lines else None for name in rules}


def _reported(
    metadata: MetadataStore, endpoint: str, window: Window, since: float, until: float
) -> VersionStats | None:
    """What the servers reported from `since` to `until`, of every version (or the window's);
    None when nothing was reported."""
    total = reported_total(metadata.endpoints.stats(endpoint, None, since, until), window)
    return total if total.requests else None


def _traffic(seen: VersionStats | None) -> tuple[Any, ...]:
    if seen is None:
        return ()
    return (seen.requests, seen.errors / seen.requests, seen.quantile(0.5), seen.p99())
