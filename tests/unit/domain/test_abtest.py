"""A/B samples and the fixed-horizon tests, checked against scipy as the reference."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from mloop.domain.abtest import (
    MeanSample,
    RateSample,
    fixed_horizon_p_value,
    fixed_horizon_test,
    required_sample_size,
    required_sample_size_for_means,
    two_proportion_test,
    welch_test,
)
from mloop.errors import InvalidInput, MloopError


def close(got: float | None, want: float, rel: float = 1e-9) -> bool:
    return got is not None and math.isclose(got, want, rel_tol=rel, abs_tol=1e-300)


def test_samples_from_several_processes_merge_by_addition() -> None:
    assert RateSample(100, 10) + RateSample(50, 7) == RateSample(150, 17)
    assert RateSample.merge([RateSample(1, 1), RateSample(2, 0), RateSample(3, 2)]) == RateSample(
        6, 3
    )
    assert RateSample.merge([]) == RateSample(0, 0)
    values = np.random.default_rng(7).normal(3.0, 2.0, 300)
    parts = [
        MeanSample.of(values[:100]),
        MeanSample.of(values[100:250]),
        MeanSample.of(values[250:]),
    ]
    whole, merged = MeanSample.of(values), MeanSample.merge(parts)
    assert merged.n == whole.n == 300
    assert merged.value == pytest.approx(whole.value, rel=1e-12)
    assert merged.variance == pytest.approx(float(np.var(values, ddof=1)), rel=1e-9)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: RateSample(-1, 0), "negative"),
        (lambda: RateSample(10, -1), "negative"),
        (lambda: RateSample(10, 11), "more successes than requests"),
        (lambda: MeanSample(-1, 0.0, 0.0), "negative"),
        (lambda: MeanSample(3, 1.0, -2.0), "negative"),
        (lambda: MeanSample(2, math.nan, 1.0), "not finite"),
        (lambda: MeanSample(2, 10.0, 1.0), "inconsistent"),  # a mean of 5 needs squares >= 50
    ],
    ids=[
        "negative-n",
        "negative-successes",
        "too-many-successes",
        "negative-count",
        "negative-squares",
        "nan",
        "inconsistent",
    ],
)
def test_impossible_counts_are_refused_with_a_clear_error(make: object, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make()  # type: ignore[operator]
    assert words in caught.value.message
    assert isinstance(caught.value, MloopError) and caught.value.hint


@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        ((1000, 100), (1000, 130)),
        ((4000, 400), (3000, 330)),
        ((250, 3), (260, 9)),
        ((50, 49), (80, 70)),
    ],
    ids=["equal-n", "unequal-n", "rare", "near-one"],
)
def test_two_proportion_z_test_matches_pearsons_chi_square_and_the_unpooled_interval(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    a, b = RateSample(*control), RateSample(*treatment)
    got = two_proportion_test(a, b, confidence=0.9)
    table = [[a.successes, a.n - a.successes], [b.successes, b.n - b.successes]]
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    # the pooled z-test is Pearson's chi-square test of the 2x2 table: z² = chi², same p
    assert close(got.statistic**2 if got.statistic else None, chi2)
    assert close(got.p_value, p_value)
    p1, p2 = a.successes / a.n, b.successes / b.n
    half = stats.norm.ppf(0.95) * math.sqrt(p1 * (1 - p1) / a.n + p2 * (1 - p2) / b.n)
    assert close(got.ci_low, p2 - p1 - half) and close(got.ci_high, p2 - p1 + half)
    assert close(got.difference, p2 - p1) and close(got.lift, (p2 - p1) / p1)
    assert (got.n_control, got.n_treatment, got.confidence) == (a.n, b.n, 0.9)
    assert fixed_horizon_p_value(a, b) == got.p_value


@pytest.mark.parametrize(
    ("sizes", "scales"),
    [
        ((40, 40), (1.0, 1.0)),
        ((30, 200), (1.0, 4.0)),
        ((5, 8), (0.1, 3.0)),
        ((2000, 1500), (2.0, 2.5)),
    ],
    ids=["balanced", "unequal", "tiny", "large"],
)
def test_welch_test_matches_scipy(sizes: tuple[int, int], scales: tuple[float, float]) -> None:
    rng = np.random.default_rng(sum(sizes))
    x, y = rng.normal(10.0, scales[0], sizes[0]), rng.normal(10.4, scales[1], sizes[1])
    got = welch_test(MeanSample.of(x), MeanSample.of(y), confidence=0.95)
    want = stats.ttest_ind(y, x, equal_var=False)
    interval = want.confidence_interval(0.95)
    assert close(got.statistic, float(want.statistic), rel=1e-8)
    assert close(got.p_value, float(want.pvalue), rel=1e-8)
    assert close(got.df, float(want.df), rel=1e-8)
    assert close(got.ci_low, float(interval.low), rel=1e-8)
    assert close(got.ci_high, float(interval.high), rel=1e-8)
    assert close(got.difference, float(y.mean() - x.mean()), rel=1e-9)
    assert fixed_horizon_p_value(MeanSample.of(x), MeanSample.of(y)) == got.p_value


@pytest.mark.parametrize("df", [1, 1.5, 2.7, 7, 33.3, 150, 1_000, 20_000, 1e6])
def test_the_t_distribution_matches_scipy_from_one_to_a_million_degrees_of_freedom(
    df: float,
) -> None:
    from mloop.domain.abtest import _t_quantile, _t_two_sided

    for t in (0.0, 0.01, 0.5, 1.96, 3.0, 6.0, 40.0):
        assert close(_t_two_sided(t, df), float(2 * stats.t.sf(t, df)), rel=1e-9), t
    for q in (0.5, 0.1, 0.05, 0.01, 1e-4):
        assert close(_t_quantile(q, df), float(stats.t.isf(q / 2, df)), rel=1e-9), q


def test_fixed_horizon_tests_without_enough_data_say_so_with_none() -> None:
    empty = two_proportion_test(RateSample(0, 0), RateSample(10, 5))
    assert (empty.p_value, empty.ci_low, empty.difference, empty.control) == (
        None,
        None,
        None,
        None,
    )
    assert empty.treatment == 0.5
    one = welch_test(MeanSample.of([1.0]), MeanSample.of([1.0, 2.0, 3.0]))
    assert (one.p_value, one.ci_low, one.df, one.difference) == (None, None, None, 1.0)
    assert fixed_horizon_p_value(RateSample(), RateSample(5, 1)) is None
    assert fixed_horizon_p_value(MeanSample(), MeanSample.of([1.0, 2.0])) is None


def test_outcomes_all_alike_give_certainty_or_nothing_never_a_crash() -> None:
    all_yes = two_proportion_test(RateSample(200, 200), RateSample(300, 300))
    assert (all_yes.p_value, all_yes.difference, all_yes.statistic) == (1.0, 0.0, None)
    assert (all_yes.ci_low, all_yes.ci_high) == (0.0, 0.0)
    none_yet = two_proportion_test(RateSample(200, 0), RateSample(300, 0))
    assert (none_yet.p_value, none_yet.lift) == (1.0, None)  # no lift over a rate of 0
    same = welch_test(MeanSample.of([2.0] * 5), MeanSample.of([2.0] * 7))
    apart = welch_test(MeanSample.of([2.0] * 5), MeanSample.of([3.0] * 7))
    assert (same.p_value, same.statistic, same.df) == (1.0, None, None)
    assert (apart.p_value, apart.difference, apart.ci_low, apart.ci_high) == (0.0, 1.0, 1.0, 1.0)


def test_rates_and_means_are_not_compared_with_each_other() -> None:
    with pytest.raises(InvalidInput, match="rates with rates"):
        fixed_horizon_test(RateSample(10, 1), MeanSample.of([1.0, 2.0]))
    with pytest.raises(InvalidInput, match="rates with rates"):
        fixed_horizon_p_value(MeanSample.of([1.0, 2.0]), RateSample(10, 1))
    with pytest.raises(InvalidInput, match="confidence"):
        two_proportion_test(RateSample(10, 1), RateSample(10, 2), confidence=95)


def test_the_required_sample_size_gives_the_asked_power_and_no_more() -> None:
    n = required_sample_size(0.10, 0.02, alpha=0.05, power=0.8)

    def power(size: int) -> float:  # the normal approximation the formula inverts
        mean = 0.11
        shift = 0.02 * math.sqrt(size) - stats.norm.ppf(0.975) * math.sqrt(2 * mean * (1 - mean))
        return float(stats.norm.cdf(shift / math.sqrt(0.1 * 0.9 + 0.12 * 0.88)))

    assert n == 3841 and power(n) >= 0.8 > power(n - 1)
    # and by simulation: 4,000 fixed-horizon z-tests at that size reject about 80% of the time
    rng = np.random.default_rng(3)
    a, b = rng.binomial(n, 0.10, 4000), rng.binomial(n, 0.12, 4000)
    pooled = (a + b) / (2 * n)
    z = (b - a) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    assert 0.77 < float(np.mean(np.abs(z) > stats.norm.ppf(0.975))) < 0.83
    assert required_sample_size(0.10, -0.02) == required_sample_size(0.08, 0.02)
    assert required_sample_size(0.10, 0.02, power=0.9) > n > required_sample_size(0.10, 0.04)


def test_the_sample_size_for_means_gives_the_asked_power_and_no_more() -> None:
    n = required_sample_size_for_means(12.0, 1.0, alpha=0.05, power=0.8)

    def power(size: int) -> float:
        return float(stats.norm.cdf(1.0 / (12.0 * math.sqrt(2 / size)) - stats.norm.ppf(0.975)))

    assert power(n) >= 0.8 > power(n - 1)
    assert (
        required_sample_size_for_means(12.0, -2.0) < n < required_sample_size_for_means(24.0, 1.0)
    )
    for sd, mde in [(0.0, 1.0), (12.0, 0.0), (math.nan, 1.0), (-1.0, 1.0)]:
        with pytest.raises(InvalidInput, match="sd > 0 and mde != 0"):
            required_sample_size_for_means(sd, mde)


@pytest.mark.parametrize(
    ("baseline", "mde", "alpha", "power"),
    [
        (0.0, 0.02, 0.05, 0.8),
        (1.2, 0.02, 0.05, 0.8),
        (0.1, 0.0, 0.05, 0.8),
        (0.95, 0.1, 0.05, 0.8),
        (0.1, 0.02, 0.0, 0.8),
        (0.1, 0.02, 0.05, 1.0),
    ],
    ids=["zero-baseline", "over-one", "zero-mde", "target-over-one", "zero-alpha", "full-power"],
)
def test_an_impossible_sample_size_question_is_refused(
    baseline: float, mde: float, alpha: float, power: float
) -> None:
    with pytest.raises(InvalidInput) as caught:
        required_sample_size(baseline, mde, alpha, power)
    assert caught.value.hint


def test_the_statistics_need_neither_scipy_nor_numpy() -> None:
    # scipy is not a dependency of mloop's model server: the t distribution is computed here
    code = (
        "import sys\n"
        "from mloop.domain.abtest import MeanSample, welch_test\n"
        "from mloop.domain.sequential import decide\n"
        "a, b = MeanSample.of(range(200)), MeanSample.of(range(3, 203))\n"
        "decide({'A': a, 'B': b}); welch_test(a, b)\n"
        "print(sorted(m for m in ('scipy', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
