"""Drift methods from summaries, checked against scipy on the raw values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mloop.domain import drift as d
from mloop.domain import feature_summary
from mloop.domain.drift import Method


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def test_numeric_methods_match_scipy_on_the_raw_values(rng: np.random.Generator) -> None:
    reference = rng.normal(size=50_000)
    ref = d.reference_summary(reference)
    for shift, rows in [(0.0, 20_000), (0.3, 20_000), (0.1, 800), (0.0, 300)]:
        current = rng.normal(size=rows) + shift
        cur = d.summarise(current, ref.edges)
        exact_w = stats.wasserstein_distance(reference, current) / np.std(reference)
        assert d.drift(ref, cur, "wasserstein").score == pytest.approx(exact_w, abs=0.003)
        exact = stats.ks_2samp(reference, current, method="asymp")
        statistic = d.ks_statistic(ref, cur)
        # binned: never above the exact statistic, below it by at most a bin's share
        assert exact.statistic - 0.002 - 2 / rows <= statistic <= exact.statistic + 1e-12
        assert d.ks_p_value(exact.statistic, ref.rows, cur.rows) == pytest.approx(exact.pvalue)
        assert d.drift(ref, cur, "ks").drifted == (exact.pvalue < 0.05)


def test_category_methods_match_scipy() -> None:
    ref = d.count_categories(["a", "b", "c"], [500, 300, 200])
    cur = d.count_categories(["c", "a", "new"], [300, 400, 100])
    # aligned: a, b, c, new
    p, q = np.array([500, 300, 200, 0]), np.array([400, 0, 300, 100])
    chi = stats.chi2_contingency(np.vstack((p, q)), correction=False).pvalue
    assert d.drift(ref, cur, "chisquare").score == pytest.approx(chi)
    assert d.drift(ref, cur, "jensenshannon").score == pytest.approx(
        jensenshannon(p / p.sum(), q / q.sum())
    )
    assert d.drift(ref, cur, "psi").score == pytest.approx(d.population_stability_index(p, q))
    assert d.drift(ref, ref, "jensenshannon").score == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="compares numbers"):
        d.drift(ref, cur, "wasserstein")


def test_psi_on_numbers_merges_the_reference_bins(rng: np.random.Generator) -> None:
    reference = rng.normal(size=20_000)
    ref = d.reference_summary(reference)
    same = d.drift(ref, d.summarise(rng.normal(size=20_000), ref.edges), "psi")
    moved = d.drift(ref, d.summarise(rng.normal(size=20_000) + 0.5, ref.edges), "psi")
    assert same.score < 0.01 and not same.drifted
    assert moved.score > 0.2 and moved.drifted
    # deciles of the reference plus the two bins outside its range
    deciles = np.quantile(reference, np.linspace(0, 1, 11))
    shifted = rng.normal(size=20_000) + 0.5
    counts = np.histogram(np.clip(shifted, deciles[0], deciles[-1]), deciles)[0]
    outside = [(shifted < deciles[0]).sum(), (shifted > deciles[-1]).sum()]
    counts[0] -= outside[0]
    counts[-1] -= outside[1]
    by_hand = d.population_stability_index(
        [0, *np.histogram(reference, deciles)[0], 0], [outside[0], *counts, outside[1]]
    )
    assert moved.score == pytest.approx(by_hand, rel=0.1)  # another sample of the same shift


def test_summaries_add_up_to_the_summary_of_all_rows(rng: np.random.Generator) -> None:
    ref = d.reference_summary(rng.normal(size=10_000))
    rows = np.concatenate((rng.normal(size=5_000) * 2, [np.nan, np.inf, 40.0, -40.0]))
    whole = d.summarise(rows, ref.edges)
    parts = ref.empty()
    for chunk in np.array_split(rows, 7):
        parts = parts + d.summarise(chunk, ref.edges)
    assert np.array_equal(whole.counts, parts.counts)
    assert whole.missing == parts.missing == 2
    assert whole.below == pytest.approx(parts.below) and whole.above == pytest.approx(parts.above)
    assert np.allclose(whole.moments, parts.moments)
    for method in Method:
        assert d.drift(ref, whole, method).score == pytest.approx(d.drift(ref, parts, method).score)
    a = d.summarise_categories(["x", "y", None, "x"])
    b = d.summarise_categories(["y", "z"])
    both = d.summarise_categories(["x", "y", None, "x", "y", "z"])
    assert dict(zip((a + b).labels, (a + b).counts.tolist(), strict=True)) == dict(
        zip(both.labels, both.counts.tolist(), strict=True)
    )
    assert (a + b).missing == 1
    with pytest.raises(ValueError, match="same bins"):
        _ = whole + d.reference_summary(rows[:100])


def test_the_fast_binning_agrees_with_a_binary_search(rng: np.random.Generator) -> None:
    for reference in (
        rng.normal(size=30_000),
        rng.lognormal(sigma=3, size=30_000),  # edges crowd into a few cells: binary search
        rng.integers(0, 40, 30_000).astype(float),  # one bin per value
        rng.uniform(size=30_000),
    ):
        edges = d.reference_summary(reference).edges
        outside = [edges[0] - 1, edges[-1] + 1, -1e300, 1e300, np.nextafter(edges[-1], 0)]
        values = np.concatenate((reference[:5000] * 1.3, edges, outside))
        assert np.array_equal(d.bin_of(values, edges), feature_summary._searched(values, edges))


def test_an_unchanged_feature_is_not_flagged_at_a_million_rows(
    rng: np.random.Generator,
) -> None:
    """p-value tests flag harmless wiggles on big windows; the defaults measure the shift."""
    ref = d.reference_summary(rng.gamma(2.0, size=200_000))
    cur = d.summarise(rng.gamma(2.0, size=1_000_000), ref.edges)
    result = d.drift(ref, cur)
    assert result.method is Method.WASSERSTEIN and not result.drifted
    assert result.score < 0.02
    words = ["red", "green", "blue", "other"]
    shares = [0.4, 0.3, 0.2, 0.1]
    cat_ref = d.summarise_categories(rng.choice(words, 100_000, p=shares).tolist())
    labels, counts = np.unique(rng.choice(words, 1_000_000, p=shares), return_counts=True)
    cat = d.drift(cat_ref, d.count_categories(labels.tolist(), counts.tolist()))
    assert cat.method is Method.JENSEN_SHANNON and not cat.drifted


def test_a_real_shift_is_flagged_whatever_the_window(rng: np.random.Generator) -> None:
    ref = d.reference_summary(rng.normal(size=100_000))
    for rows, method in [(300, Method.KS), (1_000_000, Method.WASSERSTEIN)]:
        result = d.drift(ref, d.summarise(rng.normal(0.3, 1.0, size=rows), ref.edges))
        assert result.method is method and result.drifted
    cat_ref = d.count_categories(["a", "b"], [5000, 5000])
    small = d.drift(cat_ref, d.count_categories(["a", "b"], [300, 100]))
    large = d.drift(cat_ref, d.count_categories(["a", "b"], [70_000, 30_000]))
    assert small.method is Method.CHI_SQUARE and small.drifted and small.score < 0.05
    assert large.method is Method.JENSEN_SHANNON and large.drifted


def test_numbers_with_few_values_are_compared_as_categories() -> None:
    ref = d.reference_summary([0, 1, 1, 2] * 1000)
    assert ref.few_values and len(ref.counts) == 5  # below, 0, 1, 2, above
    cur = d.summarise([0, 1, 2, 2, 5] * 1000, ref.edges)
    result = d.drift(ref, cur)
    assert result.method is Method.JENSEN_SHANNON and result.drifted
    assert d.drift(ref, cur, threshold=0.9).threshold == 0.9


def test_a_summary_survives_json() -> None:
    ref = d.reference_summary(np.arange(5000.0) ** 1.5)
    back = d.FeatureSummary.from_plain(json.loads(json.dumps(ref.to_plain())))
    assert np.array_equal(back.edges, ref.edges) and np.array_equal(back.counts, ref.counts)
    assert back.moments == ref.moments and back.std == ref.std
    cats = d.summarise_categories(["a", "b", "a"])
    assert d.FeatureSummary.from_plain(cats.to_plain()).labels == cats.labels


def test_empty_sides_are_refused() -> None:
    ref = d.reference_summary([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least one value"):
        d.drift(ref, d.summarise([np.nan], ref.edges))
    with pytest.raises(ValueError, match="no finite value"):
        d.reference_summary([np.nan])
