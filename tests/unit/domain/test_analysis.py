"""A canary's interval statistics and the gates held against them."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from mloop.domain.analysis import LATENCY_BOUNDS, Verdict, VersionStats, analyse, bucket
from mloop.domain.endpoint import CanaryPolicy, LatencyBound

POLICY = CanaryPolicy(min_requests=100)


def fast(n: int, errors: int = 0, seconds: float = 0.02) -> VersionStats:
    return VersionStats.measured([seconds] * n, errors)


def test_the_bounds_rise_by_a_quarter_power_of_two_and_hold_the_round_ones() -> None:
    assert all(
        b / a == pytest.approx(2**0.25, rel=1e-6) for a, b in itertools.pairwise(LATENCY_BOUNDS)
    )
    assert {0.25, 0.5, 1.0, 2.0} <= set(LATENCY_BOUNDS)
    assert LATENCY_BOUNDS[0] < 0.001 and LATENCY_BOUNDS[-1] == 64.0


def test_500ms_and_1100ms_are_clearly_apart() -> None:
    assert bucket(1.1) - bucket(0.5) >= 4
    assert fast(100, seconds=0.5).p99() <= 0.5 < 1.0 < fast(100, seconds=1.1).p99() <= 1.2


def test_p99_is_read_from_the_histogram_within_a_bucket() -> None:
    rng = random.Random(3)
    latencies = [rng.lognormvariate(-4, 0.5) for _ in range(20_000)]
    exact = sorted(latencies)[int(0.99 * len(latencies))]
    assert VersionStats.measured(latencies).p99() == pytest.approx(exact, rel=0.19)
    tail = VersionStats.measured([0.01] * 980 + [2.0] * 20)
    assert 1.6 < tail.p99() <= 2.0  # the slowest 2% decide it, not the mean
    assert VersionStats().p99() is None
    assert VersionStats.measured([1e6]).p99() == LATENCY_BOUNDS[-1]  # the overflow bucket


def test_statistics_of_several_servers_merge_by_addition() -> None:
    rng = random.Random(5)
    a = [rng.uniform(0.001, 2) for _ in range(700)]
    b = [rng.uniform(0.001, 2) for _ in range(300)]
    merged = VersionStats.measured(a, 7) + VersionStats.measured(b, 3) + VersionStats()
    assert merged == VersionStats.measured(a + b, 10)
    assert merged.p99() == VersionStats.measured(a + b).p99()
    assert merged.success_rate == 99.0
    labelled = VersionStats(labelled=10, correct=9) + VersionStats(labelled=10, correct=7)
    assert labelled.accuracy == 0.8
    posted = VersionStats(outcomes=4, outcome_sum=3, outcome_squares=3) + VersionStats(
        outcomes=6, outcome_sum=1, outcome_squares=1
    )
    assert (posted.outcomes, posted.outcome_mean, posted.outcome_squares) == (10, 0.4, 4)
    shadow = VersionStats(requests=8, agreed=6, dropped=1) + VersionStats(requests=2, agreed=2)
    assert (shadow.agreement_rate, shadow.dropped) == (0.8, 1)
    assert VersionStats().outcome_mean is None and VersionStats().agreement_rate is None


def test_a_healthy_canary_passes_every_gate_with_its_numbers() -> None:
    analysis = analyse(POLICY, fast(200), fast(2000))
    assert analysis.verdict is Verdict.PASS
    assert [(g.gate, g.verdict) for g in analysis.gates] == [
        ("requests", Verdict.PASS),
        ("success_rate", Verdict.PASS),
        ("p99", Verdict.PASS),
    ]
    rate = analysis.gates[1]
    assert (rate.observed, rate.bound) == (100.0, 99.0)
    assert analysis.gates[2].bound == 0.5 and analysis.gates[2].observed <= 0.025


@pytest.mark.parametrize("errors", [0, 50])
def test_too_few_requests_is_no_data_never_a_pass_nor_a_fail(errors: int) -> None:
    analysis = analyse(POLICY, fast(99, errors=errors), fast(2000))
    assert analysis.verdict is Verdict.NO_DATA
    assert {g.verdict for g in analysis.gates} == {Verdict.NO_DATA}
    assert analysis.gates[0].observed == 99.0 and "needs at least 100" in analysis.summary()


def test_5xx_on_5_percent_fails_the_success_rate_gate() -> None:
    analysis = analyse(POLICY, fast(200, errors=10), fast(2000))
    assert analysis.verdict is Verdict.FAIL
    assert [g.gate for g in analysis.failed] == ["success_rate"]
    assert analysis.failed[0].observed == 95.0
    assert analysis.summary() == "success_rate 95.00% (10 errors in 200 requests), needs 99%"


def test_600ms_more_latency_fails_the_p99_gate() -> None:
    analysis = analyse(POLICY, fast(200, seconds=0.62), fast(2000))
    assert [g.gate for g in analysis.failed] == ["p99"]
    assert analysis.failed[0].bound == 0.5 and analysis.failed[0].observed > 0.6
    assert analysis.summary().startswith("p99 ") and "above 500ms" in analysis.summary()


def test_a_relative_p99_bound_is_a_factor_of_stable() -> None:
    policy = CanaryPolicy(min_requests=100, max_p99=LatencyBound(2.0, relative=True))
    stable = fast(2000, seconds=0.05)
    assert analyse(policy, fast(200, seconds=0.08), stable).verdict is Verdict.PASS
    slow = analyse(policy, fast(200, seconds=0.2), stable)
    assert [g.gate for g in slow.failed] == ["p99"]
    assert slow.failed[0].bound == pytest.approx(2 * (stable.p99() or 0))
    assert "(2x of stable" in slow.summary()
    quiet = analyse(policy, fast(200, seconds=0.2), fast(10, seconds=0.05))
    assert quiet.verdict is Verdict.NO_DATA and "stable has 10 requests" in quiet.summary()


def test_the_accuracy_gate_compares_with_stable_within_the_margin() -> None:
    policy = CanaryPolicy(min_requests=100, accuracy_margin=0.02, min_labels=50)
    stable = dataclasses.replace(fast(2000), labelled=500, correct=450)  # accuracy 0.90

    def canary(correct: int, labelled: int = 100) -> VersionStats:
        return dataclasses.replace(fast(200), labelled=labelled, correct=correct)

    assert analyse(policy, canary(89), stable).verdict is Verdict.PASS
    worse = analyse(policy, canary(85), stable)
    assert [g.gate for g in worse.failed] == ["accuracy"]
    assert worse.failed[0].bound == pytest.approx(0.88)
    assert analyse(policy, canary(20, labelled=20), stable).verdict is Verdict.NO_DATA
    assert "accuracy" not in {g.gate for g in analyse(POLICY, canary(0), stable).gates}
