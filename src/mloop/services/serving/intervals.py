"""Per-version counts since the last look, for the rollout analysis.

Prometheus counters only grow and live in shared memory; the analysis wants what happened in
one interval, from every server process. So each worker also keeps, per served version, the
requests, the 5xx answers and a latency histogram with fixed bounds since it was last asked;
`Intervals.take` hands them over as plain data and starts again. Whoever writes them to the
store adds the records of all processes up: counts add, and fixed bounds make histograms add
too (a p99 is read from the sum, never averaged from per-process p99s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mloop.domain.analysis import LATENCY_BOUNDS, bucket

# The analysis' latency bounds (`domain/analysis.py`): fixed for every process and version, so
# histograms add up, and a report is a `VersionStats` as it stands.
BOUNDS = LATENCY_BOUNDS


@dataclass(slots=True)
class IntervalCounts:
    """One version's numbers since the last `take`: what a slot adds to on each answer, the
    outcomes posted for its answers, and, for a shadow, its copies (`analysis.VersionStats`
    says what each field means)."""

    model: str
    role: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    outcomes: int = 0
    outcome_sum: float = 0.0
    outcome_squares: float = 0.0
    agreed: int = 0
    dropped: int = 0

    def add(self, status: int, seconds: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.seconds += seconds
        self.buckets[bucket(seconds)] += 1

    def outcome(self, value: float) -> None:
        self.outcomes += 1
        self.outcome_sum += value
        self.outcome_squares += value * value

    def mirrored(self, seconds: float, agreed: bool) -> None:
        """A shadow predicted a copy in `seconds`, as the primary did or not."""
        self.add(200, seconds)
        self.agreed += agreed

    def reset(self) -> None:
        self.requests = self.errors = self.outcomes = self.agreed = self.dropped = 0
        self.seconds = self.outcome_sum = self.outcome_squares = 0.0
        self.buckets = [0] * (len(BOUNDS) + 1)

    def plain(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "role": self.role,
            "requests": self.requests,
            "errors": self.errors,
            "latency_sum": self.seconds,
            "latency_buckets": list(self.buckets),
            "outcomes": self.outcomes,
            "outcome_sum": self.outcome_sum,
            "outcome_squares": self.outcome_squares,
            "agreed": self.agreed,
            "dropped": self.dropped,
        }


class Intervals:
    """The interval counts of every version one worker served since the last `take`, retired
    versions included until they are taken once more.

    Example:
        >>> intervals = Intervals("churn")
        >>> intervals.counts("churn:3", "stable").add(200, 0.004)
        >>> intervals.take()["versions"][0]["requests"]
        1
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.started = time.time()
        self._counts: dict[tuple[str, str], IntervalCounts] = {}
        self._live: set[tuple[str, str]] = set()

    def counts(self, model: str, role: str) -> IntervalCounts:
        """The counts a slot for (`model`, `role`) adds to (the same object for as long as the
        version serves in this role)."""
        key = (model, role)
        self._live.add(key)
        found = self._counts.get(key)
        if found is None:
            found = self._counts[key] = IntervalCounts(model, role)
        return found

    def retire(self, model: str, role: str) -> None:
        """The slot is gone: its counts are handed over at the next `take`, then dropped."""
        self._live.discard((model, role))

    def take(self) -> dict[str, Any]:
        """What every version counted since the last call, as plain data; counting starts anew.

        Counts are reset in place (slots hold the same objects), so nothing counted between
        reading and resetting is lost: both happen with no await in between.
        """
        now = time.time()
        record = {
            "endpoint": self.endpoint,
            "started": self.started,
            "ended": now,
            "bounds": list(BOUNDS),
            "versions": [counts.plain() for counts in self._counts.values()],
        }
        for key in list(self._counts):
            if key not in self._live:
                del self._counts[key]
                continue
            self._counts[key].reset()
        self.started = now
        return record
