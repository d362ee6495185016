"""The always-valid A/B decision: the issue's simulated A/A and A/B tests through `decide` itself,
the mSPRT formulas against numerical integration, and the decision record's plain form."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from scipy import integrate, stats

from mloop.domain.abtest import (
    MeanSample,
    RateSample,
    Sample,
    required_sample_size,
    required_sample_size_for_means,
)
from mloop.domain.records import from_plain, to_plain
from mloop.domain.sequential import (
    ABDecision,
    ABState,
    SequentialRule,
    decide,
    half_width,
    log_likelihood_ratio,
    mixing_sd,
    update,
)
from mloop.errors import InvalidInput

STEP = 100  # a look after every 100 requests per variant, as the issue watches
DEFAULT = SequentialRule()


def watch_rates(
    rates: Sequence[float],
    looks: int,
    sims: int,
    seed: int,
    steps: Sequence[int] = (),
    rule: SequentialRule = DEFAULT,
) -> tuple[list[str | None], np.ndarray]:
    """Simulated tests of binary outcomes with these rates, watched through `decide` after
    every `steps` requests per variant (STEP each unless given: unequal steps are unequal
    weights); with the cumulative successes, shape (sims, looks, variants), drawn in one go."""
    per_look = np.array(steps or [STEP] * len(rates))
    rng = np.random.default_rng(seed)
    successes = np.cumsum(rng.binomial(per_look, rates, size=(sims, looks, len(rates))), axis=1)

    def samples_at(sim: int, look: int) -> list[Sample]:
        n = (look + 1) * per_look
        return [RateSample(int(k), int(s)) for k, s in zip(n, successes[sim, look], strict=True)]

    return watch(samples_at, sims, looks, rule), successes


def watch(
    samples_at: Callable[[int, int], list[Sample]],
    sims: int,
    looks: int,
    rule: SequentialRule = DEFAULT,
) -> list[str | None]:
    """Each simulated test watched look by look through `decide`, handing back the last
    decision as the caller would, until it stops: the winner named, "no_difference", or None
    for a test still running at the last look."""
    outcomes: list[str | None] = []
    for sim in range(sims):
        previous: ABDecision | None = None
        outcome = None
        for look in range(looks):
            variants = dict(zip("ABCDEFG", samples_at(sim, look), strict=False))
            previous = decide(variants, rule, previous=previous)
            if previous.state is not ABState.RUNNING:
                outcome = previous.winner or previous.state.value
                break
        outcomes.append(outcome)
    return outcomes


def test_aa_tests_on_rates_watched_every_100_requests_name_a_winner_at_most_5_percent() -> None:
    sims, looks = 200, 10_000 // STEP
    winners, successes = watch_rates([0.10, 0.10], looks, sims, seed=11)
    assert sum(w is not None for w in winners) <= 0.05 * sims
    # the same looks read with the fixed-horizon p-value, as a peeking analyst would, name one
    # far more often: the reason the decision is sequential
    n = (np.arange(looks) + 1) * STEP
    pooled = successes.sum(axis=2) / (2 * n)
    z = (successes[:, :, 1] - successes[:, :, 0]) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    peeking = np.any(np.abs(z) > stats.norm.ppf(0.975), axis=1)
    assert peeking.mean() > 0.25


def test_ab_tests_from_10_to_12_percent_name_the_better_in_80_percent_never_the_worse() -> None:
    """Within 20,000 requests per variant."""
    sims, looks = 200, 20_000 // STEP
    winners, _ = watch_rates([0.10, 0.12], looks, sims, seed=12)
    assert winners.count("B") >= 0.8 * sims
    assert winners.count("A") == 0


def test_aa_tests_on_means_watched_every_100_outcomes_name_a_winner_at_most_5_percent() -> None:
    sims, looks = 200, 10_000 // STEP
    rng = np.random.default_rng(13)
    values = rng.normal(50.0, 12.0, size=(sims, looks, 2, STEP))
    totals, squares = (
        np.cumsum(values.sum(axis=3), axis=1),
        np.cumsum((values**2).sum(axis=3), axis=1),
    )

    def samples_at(sim: int, look: int) -> list[Sample]:
        n = (look + 1) * STEP
        return [
            MeanSample(n, float(totals[sim, look, v]), float(squares[sim, look, v])) for v in (0, 1)
        ]

    winners = watch(samples_at, sims, looks)
    assert sum(w is not None for w in winners) <= 0.05 * sims


def test_with_an_mde_aa_tests_end_in_no_difference_and_real_lifts_almost_never_do() -> None:
    rule = SequentialRule(mde=0.02)
    same, _ = watch_rates([0.10, 0.10], 10_000 // STEP, 200, seed=11, rule=rule)
    assert same.count("no_difference") >= 0.8 * 200
    assert same.count("A") + same.count("B") <= 0.05 * 200
    lift, _ = watch_rates([0.10, 0.12], 20_000 // STEP, 200, seed=12, rule=rule)
    assert lift.count("no_difference") <= 0.05 * 200  # a lift of the mde itself: the boundary
    assert lift.count("B") >= 0.8 * 200 and lift.count("A") == 0


def test_aa_tests_with_unequal_weights_stay_under_5_percent() -> None:
    sims, looks = 200, 50
    winners, _ = watch_rates([0.10, 0.10], looks, sims, seed=17, steps=[300, 100])  # 75/25
    assert sum(w is not None for w in winners) <= 0.05 * sims


def test_three_identical_variants_split_alpha_and_stay_under_5_percent() -> None:
    sims, looks = 200, 5_000 // STEP
    winners, _ = watch_rates([0.10, 0.10, 0.10], looks, sims, seed=14)
    assert sum(w is not None for w in winners) <= 0.05 * sims


def test_with_three_variants_only_the_one_beating_both_others_wins() -> None:
    sims, looks = 60, 20_000 // STEP
    winners, _ = watch_rates([0.10, 0.12, 0.14], looks, sims, seed=15)
    assert winners.count("C") >= 0.8 * sims and winners.count("A") == winners.count("B") == 0
    # B beats the control clearly, but not C: no winner while C is close behind
    look = decide(
        {
            "A": RateSample(20_000, 2000),
            "B": RateSample(20_000, 2800),
            "C": RateSample(20_000, 2790),
        }
    )
    assert look.state is ABState.RUNNING and look.winner is None
    assert look.variants[1].ci_low is not None and look.variants[1].ci_low > 0
    assert look.alpha_per_comparison == pytest.approx(0.025)


def test_the_mixture_likelihood_ratio_is_the_integral_it_stands_for() -> None:
    # Λ = ∫ N(d̂; θ, V) / N(d̂; 0, V) N(θ; 0, τ²) dθ (Robbins' normal mixture), by quadrature
    for estimate, variance, tau in [
        (0.01, 1e-4, 0.02),
        (-0.3, 0.04, 0.1),
        (2.0, 1.0, 3.0),
        (0.0, 0.5, 0.2),
    ]:
        sd = math.sqrt(variance)

        def integrand(theta: float, d: float = estimate, s: float = sd, t: float = tau) -> float:
            ratio = stats.norm.pdf(d, theta, s) / stats.norm.pdf(d, 0.0, s)
            return float(ratio * stats.norm.pdf(theta, 0.0, t))

        want, _ = integrate.quad(integrand, -12 * tau, 12 * tau, points=[estimate], limit=200)
        assert math.exp(log_likelihood_ratio(estimate, variance, tau)) == pytest.approx(
            want, rel=1e-7
        )


def test_the_always_valid_interval_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    rng = np.random.default_rng(16)
    for estimate, variance in zip(
        rng.normal(0, 0.02, 400), rng.uniform(1e-6, 1e-4, 400), strict=True
    ):
        evidence = update(None, float(estimate), float(variance), 0.05, tau=0.01)
        assert (evidence.p_value <= 0.05) == (evidence.ci_low > 0 or evidence.ci_high < 0)
        low = evidence.ci_low  # at the interval's edge, Λ is exactly 1/alpha
        assert log_likelihood_ratio(
            float(estimate), float(variance), 0.01, null=low
        ) == pytest.approx(math.log(20), rel=1e-9)


def test_tau_makes_the_interval_narrowest_at_the_horizon() -> None:
    tau = mixing_sd(2e-5, 0.05)
    best = half_width(2e-5, tau, 0.05)
    assert all(half_width(2e-5, tau * f, 0.05) > best for f in (0.5, 0.8, 0.95, 1.05, 1.25, 2.0))


def test_p_only_falls_and_the_interval_only_shrinks_from_look_to_look() -> None:
    rule = SequentialRule(min_samples=100)
    first = decide({"A": RateSample(1000, 100), "B": RateSample(1000, 165)}, rule)
    later = decide({"A": RateSample(2000, 200), "B": RateSample(2000, 205)}, rule, previous=first)
    fresh = decide({"A": RateSample(2000, 200), "B": RateSample(2000, 205)}, rule)
    before, after, alone = (d.comparisons[0].evidence for d in (first, later, fresh))
    assert before and after and alone
    assert after.p_value == before.p_value < alone.p_value  # the running minimum
    assert after.tau == before.tau != alone.tau  # τ is fixed at the first look
    assert before.ci_low <= after.ci_low and after.ci_high <= before.ci_high
    assert first.state is later.state is ABState.WINNER and fresh.state is ABState.RUNNING


def test_no_decision_before_every_variant_has_the_minimum_sample() -> None:
    huge_effect = {"A": RateSample(99, 0), "B": RateSample(500, 400)}
    look = decide(huge_effect, SequentialRule(min_samples=100))
    assert look.state is ABState.RUNNING and look.comparisons[0].evidence is None
    assert look.variants[1].p_value is None and look.variants[1].fixed_p_value is not None
    assert look.reason == "waiting for 100 outcomes per variant (A has 99)"
    assert decide({"A": RateSample(100, 0), "B": RateSample(500, 400)}).winner == "B"


def test_a_lower_is_better_outcome_names_the_lower_variant() -> None:
    errors = {"A": RateSample(5000, 500), "B": RateSample(5000, 350)}
    assert decide(errors, SequentialRule(higher_is_better=False)).winner == "B"
    assert decide(errors).winner == "A"


def test_outcomes_all_alike_wait_instead_of_deciding() -> None:
    nothing_yet = decide({"A": RateSample(300, 0), "B": RateSample(300, 0)})
    assert nothing_yet.state is ABState.RUNNING and nothing_yet.comparisons[0].evidence is None
    flat = decide({"A": MeanSample.of([1.0] * 150), "B": MeanSample.of([1.0] * 150)})
    assert flat.state is ABState.RUNNING and flat.variants[1].effect == 0.0


def test_the_fixed_horizon_size_is_reported_beside_the_decision_at_the_split_alpha() -> None:
    rates = {"A": RateSample(1000, 100), "B": RateSample(1000, 110)}
    assert decide(rates).reference_sample_size is None  # no mde given
    two = decide(rates, SequentialRule(mde=0.02)).reference_sample_size
    assert two == required_sample_size(0.10, 0.02, alpha=0.05) == 3841
    three = decide({**rates, "C": RateSample(1000, 90)}, SequentialRule(mde=0.02))
    assert three.reference_sample_size == required_sample_size(0.10, 0.02, alpha=0.025) > 3841
    control = MeanSample.of([float(v) for v in range(200)])
    means = decide({"A": control, "B": MeanSample.of([1.0] * 200)}, SequentialRule(mde=5.0))
    assert control.variance is not None
    want = required_sample_size_for_means(math.sqrt(control.variance), 5.0, alpha=0.05)
    assert means.reference_sample_size == want
    empty = decide({"A": RateSample(500, 0), "B": RateSample(500, 3)}, SequentialRule(mde=0.02))
    assert empty.reference_sample_size is None  # a control rate of 0 gives no baseline yet


def test_the_decision_reads_back_from_plain_json() -> None:
    names = ("churn:1", "churn:2", "churn:3")
    before = dict(
        zip(
            names,
            [RateSample(3000, 300), RateSample(3000, 345), RateSample(2900, 290)],
            strict=True,
        )
    )
    counts = dict(
        zip(
            names,
            [RateSample(6000, 600), RateSample(6000, 720), RateSample(6100, 610)],
            strict=True,
        )
    )
    look = decide(counts, previous=decide(before))
    plain = json.loads(json.dumps(to_plain(look), allow_nan=False))  # no NaN nor infinity
    assert (plain["state"], plain["winner"], plain["winner_index"]) == ("winner", "churn:2", 1)
    assert [v["name"] for v in plain["variants"]] == list(names)
    fields = {"n", "value", "effect", "lift", "ci_low", "ci_high", "p_value", "fixed_p_value"}
    assert fields <= set(plain["variants"][1])
    assert from_plain(ABDecision, plain) == look
    # the plain form is all the next look needs: the same counts again change nothing
    assert decide(counts, previous=from_plain(ABDecision, plain)) == look


def test_bad_comparisons_are_refused_with_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="at least two variants") as caught:
        decide({"A": RateSample(100, 10)})
    assert caught.value.hint and "--strategy ab" in caught.value.hint
    with pytest.raises(InvalidInput, match="rates with rates"):
        decide({"A": RateSample(100, 10), "B": MeanSample.of([1.0, 2.0])})
    first = decide({"A": RateSample(100, 10), "B": RateSample(100, 12)})
    with pytest.raises(InvalidInput, match="previous look compared rate of A, B"):
        decide({"A": RateSample(200, 10), "C": RateSample(200, 12)}, previous=first)
    with pytest.raises(InvalidInput, match="alpha"):
        SequentialRule(alpha=5)
    with pytest.raises(InvalidInput, match="min_samples"):
        SequentialRule(min_samples=0)
