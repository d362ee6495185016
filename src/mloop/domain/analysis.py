"""A canary's analysis: per-version statistics of one interval, and the gates held against them.

Every server process counts, per version, requests, 5xx errors and a latency histogram over the
fixed `LATENCY_BOUNDS`, and reports them; statistics of several processes (or several reports)
merge by addition (`a + b`), so the analysis sees the traffic of all of them. Percentiles are
read from the merged histogram, never averaged across processes.

The bounds are the quarter powers of two from 2^-10 s (about 1 ms) to 64 s (66 buckets with
the overflow): neighbouring bounds differ by 19%, 250 ms, 500 ms, 1 s and 2 s are bounds
themselves (so the default 500 ms gate is decided at a bucket's edge), 500 ms and 1.1 s land
five buckets apart, and a p99 read by linear interpolation inside its bucket (as Prometheus'
`histogram_quantile` does) is within 19% of the truth, however the latencies are spread.

An interval with fewer than `min_requests` canary requests is `no_data` for every gate that
needs them: it never passes. So is a relative p99 bound while the stable version has too few.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from mloop.domain.endpoint import CanaryPolicy

LATENCY_BOUNDS: tuple[float, ...] = tuple(round(2 ** (k / 4), 9) for k in range(-40, 25))


def bucket(seconds: float) -> int:
    """The histogram bucket of one latency: the first bound at or above it (`le`, as in
    Prometheus); `len(LATENCY_BOUNDS)` is the overflow bucket.

    Example:
        >>> bucket(0.0005), bucket(0.5) < bucket(1.1), bucket(1e9) == len(LATENCY_BOUNDS)
        (0, True, True)
    """
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


@dataclass(frozen=True, slots=True)
class VersionStats:
    """One version's traffic over an interval. `latency` holds the count per bucket (shorter
    tuples mean zeros after); `labelled` and `correct` count predictions with feedback labels.

    `outcomes` counts the outcomes posted for the version's answers (`POST /feedback`, an A/B
    test's conversions or values), kept as sums so reports add up: `outcome_sum` and
    `outcome_squares`. A shadow's requests are the copies it predicted (its errors the copies it
    failed), `agreed` those whose prediction matched the primary's, `dropped` the copies a full
    queue turned away.
    """

    requests: int = 0
    errors: int = 0  # answered with a 5xx
    latency: tuple[int, ...] = ()
    labelled: int = 0
    correct: int = 0
    outcomes: int = 0
    outcome_sum: float = 0.0
    outcome_squares: float = 0.0
    agreed: int = 0
    dropped: int = 0

    @classmethod
    def measured(cls, latencies: Iterable[float], errors: int = 0) -> VersionStats:
        """The statistics of requests that took `latencies` seconds, `errors` of them 5xx.

        Example:
            >>> VersionStats.measured([0.01] * 99 + [0.2]).requests
            100
        """
        counts = [0] * (len(LATENCY_BOUNDS) + 1)
        for seconds in latencies:
            counts[bucket(seconds)] += 1
        return cls(sum(counts), errors, tuple(counts))

    def __add__(self, other: VersionStats) -> VersionStats:
        size = max(len(self.latency), len(other.latency))
        mine = self.latency + (0,) * (size - len(self.latency))
        theirs = other.latency + (0,) * (size - len(other.latency))
        return VersionStats(
            self.requests + other.requests,
            self.errors + other.errors,
            tuple(a + b for a, b in zip(mine, theirs, strict=True)),
            self.labelled + other.labelled,
            self.correct + other.correct,
            self.outcomes + other.outcomes,
            self.outcome_sum + other.outcome_sum,
            self.outcome_squares + other.outcome_squares,
            self.agreed + other.agreed,
            self.dropped + other.dropped,
        )

    @property
    def success_rate(self) -> float | None:
        """Percent of requests answered without a 5xx; None with no requests."""
        if self.requests <= 0:
            return None
        return 100.0 * (self.requests - self.errors) / self.requests

    @property
    def accuracy(self) -> float | None:
        return None if self.labelled <= 0 else self.correct / self.labelled

    @property
    def outcome_mean(self) -> float | None:
        """The mean posted outcome (a conversion rate for 0/1 outcomes); None without any."""
        return None if self.outcomes <= 0 else self.outcome_sum / self.outcomes

    @property
    def agreement_rate(self) -> float | None:
        """A shadow's share of copies predicted as the primary did; None before any."""
        return None if self.requests <= 0 else self.agreed / self.requests

    def quantile(self, q: float) -> float | None:
        """The `q` quantile of latency in seconds, interpolated inside its bucket; None with no
        latencies. A quantile in the overflow bucket reads as the highest bound.

        Example:
            >>> 0.42 < VersionStats.measured([0.5] * 100).quantile(0.99) <= 0.5
            True
        """
        total = sum(self.latency)
        if total <= 0:
            return None
        rank, seen = q * total, 0
        for index, count in enumerate(self.latency):
            if count and seen + count >= rank:
                if index >= len(LATENCY_BOUNDS):
                    return LATENCY_BOUNDS[-1]
                low = LATENCY_BOUNDS[index - 1] if index else 0.0
                high = LATENCY_BOUNDS[index]
                return low + (high - low) * (rank - seen) / count
            seen += count
        return LATENCY_BOUNDS[-1]

    def p99(self) -> float | None:
        return self.quantile(0.99)


class Verdict(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    NO_DATA = "no_data"


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One gate of one interval: what was observed, the bound it was held to, the verdict, and
    `detail`, the sentence an Event and `endpoints status` show."""

    gate: str
    verdict: Verdict
    observed: float | None = None
    bound: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StepAnalysis:
    """All gates of one interval: it fails if one fails, else it is no data if one had none."""

    verdict: Verdict
    gates: tuple[GateCheck, ...] = ()

    @property
    def failed(self) -> tuple[GateCheck, ...]:
        return tuple(g for g in self.gates if g.verdict is Verdict.FAIL)

    def summary(self) -> str:
        """The details of the gates that decided the verdict (all of them on a pass)."""
        deciding = [g for g in self.gates if g.verdict is self.verdict]
        return "; ".join(g.detail for g in deciding)


def analyse(policy: CanaryPolicy, canary: VersionStats, stable: VersionStats) -> StepAnalysis:
    """Hold the canary's interval to the policy's gates, the stable version's as reference.

    Example:
        >>> ok = VersionStats.measured([0.02] * 200)
        >>> analyse(CanaryPolicy(), ok, ok).verdict
        <Verdict.PASS: 'pass'>
        >>> analyse(CanaryPolicy(), VersionStats.measured([0.02] * 5), ok).summary()
        'requests: 5, needs at least 100; success_rate: too few requests; p99: too few requests'
    """
    enough = canary.requests >= policy.min_requests
    gates = [
        GateCheck(
            "requests",
            Verdict.PASS if enough else Verdict.NO_DATA,
            float(canary.requests),
            float(policy.min_requests),
            f"requests: {canary.requests}"
            + ("" if enough else f", needs at least {policy.min_requests}"),
        ),
        _success_rate(policy, canary, enough),
        _p99(policy, canary, stable, enough),
    ]
    if policy.accuracy_margin is not None:
        gates.append(_accuracy(policy, policy.accuracy_margin, canary, stable))
    verdicts = {g.verdict for g in gates}
    verdict = next(v for v in (Verdict.FAIL, Verdict.NO_DATA, Verdict.PASS) if v in verdicts)
    return StepAnalysis(verdict, tuple(gates))


def _success_rate(policy: CanaryPolicy, canary: VersionStats, enough: bool) -> GateCheck:
    bound = policy.min_success_rate
    rate = canary.success_rate
    if not enough or rate is None:
        return GateCheck(
            "success_rate", Verdict.NO_DATA, rate, bound, "success_rate: too few requests"
        )
    shown = f"success_rate {rate:.2f}% ({canary.errors} errors in {canary.requests} requests)"
    if rate >= bound:
        return GateCheck("success_rate", Verdict.PASS, rate, bound, f"{shown}, at least {bound:g}%")
    return GateCheck("success_rate", Verdict.FAIL, rate, bound, f"{shown}, needs {bound:g}%")


def _p99(
    policy: CanaryPolicy, canary: VersionStats, stable: VersionStats, enough: bool
) -> GateCheck:
    stable_p99 = stable.p99() if stable.requests >= policy.min_requests else None
    bound = policy.max_p99.bound(stable_p99)
    observed = canary.p99()
    written = f"{policy.max_p99}" + (" of stable" if policy.max_p99.relative else "")
    if not enough or observed is None:
        return GateCheck("p99", Verdict.NO_DATA, observed, bound, "p99: too few requests")
    if bound is None:
        why = (
            f"p99: stable has {stable.requests} requests, needs {policy.min_requests} for {written}"
        )
        return GateCheck("p99", Verdict.NO_DATA, observed, None, why)
    shown = f"p99 {_ms(observed)}"
    limit = f"{_ms(bound)}" + (
        f" ({written} {_ms(stable_p99 or 0.0)})" if policy.max_p99.relative else ""
    )
    if observed <= bound:
        return GateCheck("p99", Verdict.PASS, observed, bound, f"{shown}, at most {limit}")
    return GateCheck("p99", Verdict.FAIL, observed, bound, f"{shown}, above {limit}")


def _accuracy(
    policy: CanaryPolicy, margin: float, canary: VersionStats, stable: VersionStats
) -> GateCheck:
    mine, theirs = canary.accuracy, stable.accuracy
    fewest = min(canary.labelled, stable.labelled)
    if mine is None or theirs is None or fewest < policy.min_labels:
        why = f"accuracy: {fewest} labelled predictions, needs {policy.min_labels} of each version"
        return GateCheck("accuracy", Verdict.NO_DATA, mine, None, why)
    bound = theirs - margin
    shown = f"accuracy {mine:.4f} (stable {theirs:.4f}, margin {margin:g})"
    if mine >= bound:
        return GateCheck("accuracy", Verdict.PASS, mine, bound, f"{shown}, at least {bound:.4f}")
    return GateCheck("accuracy", Verdict.FAIL, mine, bound, f"{shown}, needs {bound:.4f}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms"
