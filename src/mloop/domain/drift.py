"""Drift: how far a feature's live distribution moved from its reference, from compact summaries.

Both sides are `FeatureSummary`s, never raw values: the reference is summarised once (from the
training data) and each window of live requests is summarised as it is read, so comparing costs
what the window costs, not what the history holds. Summaries of the same feature add up
(`a + b` is the summary of both windows), so a window of 1,000 new rows is one small update.

Numbers are counted in the reference's quantile bins (`feature_summary` says how and why
1,000), plus one bin below and one above its range that also sum the distances to it. From the
counts:

- PSI over the bins merged to hold at least `MIN_BIN_SHARE` of the reference each (with 1,000
  bins of 0.1% each PSI would be mostly sampling noise), plus the two outside bins;
- Kolmogorov-Smirnov: the largest gap between the two cumulative shares, read at the edges. The
  exact statistic lies between that and it plus the largest share of one bin on either side
  (0.1% of the reference; a few rows of a small window), so it is off by at most ~0.002, well
  under the 0.04 that decides p < 0.05 on a 1,000-row window. The p-value is scipy's asymptotic
  one (`kstwo`, as `ks_2samp(method="asymp")`), measured in the tests;
- Wasserstein: the area between the two cumulative shares, taken as straight lines within each
  bin, divided by the reference's standard deviation (as Evidently normalises it). Within 0.003
  of scipy's on the raw values in the tests, 0.002 of Evidently's in bench_drift: the decision
  is at 0.1.

Categories are counted by value: chi-square (a two-sample test of homogeneity), Jensen-Shannon
distance (natural log, as scipy) and PSI, over the reference's values plus any new ones.

Defaults (`default_method`): a p-value answers "could this be chance?", and with enough rows
every harmless wiggle is not chance; so windows above `SMALL_WINDOW` rows (1,000, Evidently's
line) are judged by the size of the shift (normalised Wasserstein >= 0.1 for numbers,
Jensen-Shannon >= 0.1 for categories), and only smaller ones, where a distance is mostly
sampling noise, by a test (KS or chi-square, p < 0.05). Evidently draws the line on the
reference's size; here it is the window's, since the window is what varies from check to check
and a 200-row window's Wasserstein distance is noise whatever the reference holds. Numbers with
at most `FEW_VALUES` distinct values in the reference are compared as categories, as Evidently
does. The two p-values use scipy (imported when a small window needs one).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mloop.domain.feature_summary import (
    BINS,
    CATEGORICAL,
    FEW_VALUES,
    NUMERIC,
    FeatureSummary,
    Floats,
    Ints,
    bin_of,
    count_categories,
    reference_summary,
    summarise,
    summarise_categories,
)

__all__ = [  # the summaries' names too: callers of drift() make them
    "BINS",
    "CATEGORICAL",
    "FEW_VALUES",
    "NUMERIC",
    "THRESHOLDS",
    "DriftResult",
    "DriftRule",
    "FeatureSummary",
    "Method",
    "bin_cuts",
    "bin_of",
    "count_categories",
    "default_method",
    "drift",
    "jensen_shannon",
    "ks_p_value",
    "ks_statistic",
    "merge_bins",
    "population_stability_index",
    "reference_summary",
    "summarise",
    "summarise_categories",
    "wasserstein",
]

SMALL_WINDOW = 1000
MIN_BIN_SHARE = 0.1
PSI_EPSILON = 1e-4  # the share an empty bin stands for, so PSI stays finite


class Method(enum.StrEnum):
    PSI = "psi"
    KS = "ks"
    WASSERSTEIN = "wasserstein"
    CHI_SQUARE = "chisquare"
    JENSEN_SHANNON = "jensenshannon"

    @property
    def tests(self) -> bool:
        """A p-value: drift is a score below the threshold, not above."""
        return self in (Method.KS, Method.CHI_SQUARE)


THRESHOLDS = {
    Method.PSI: 0.1,
    Method.KS: 0.05,
    Method.WASSERSTEIN: 0.1,
    Method.CHI_SQUARE: 0.05,
    Method.JENSEN_SHANNON: 0.1,
}
NUMERIC_METHODS = frozenset(Method)
CATEGORY_METHODS = frozenset({Method.PSI, Method.CHI_SQUARE, Method.JENSEN_SHANNON})


@dataclass(frozen=True, slots=True)
class DriftRule:
    """A threshold set for one feature (mloop.yaml's `drift_thresholds`), and the method it is
    for; without a method it is the size-of-shift default's, and small windows keep their test.
    """

    threshold: float
    method: Method | None = None

    @classmethod
    def parse(cls, value: Any) -> DriftRule:
        """`0.2`, or `{method: psi, threshold: 0.25}`.

        Example:
            >>> DriftRule.parse({"method": "psi", "threshold": 0.25})
            DriftRule(threshold=0.25, method=<Method.PSI: 'psi'>)
        """
        if isinstance(value, dict):
            unknown = set(value) - {"method", "threshold"}
            if unknown or "threshold" not in value:
                raise ValueError("give a number, or {method: psi, threshold: 0.2}")
            method = value.get("method")
            try:
                chosen = None if method is None else Method(str(method))
            except ValueError:
                raise ValueError(f"unknown method {method!r}; one of {', '.join(Method)}") from None
            return cls(_threshold(value["threshold"]), chosen)
        return cls(_threshold(value))


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a threshold is a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError("a threshold is a number of 0 or more")
    return number


@dataclass(frozen=True, slots=True)
class DriftResult:
    method: Method
    score: float
    threshold: float
    drifted: bool


# --- comparing -------------------------------------------------------------------------------


def default_method(reference: FeatureSummary, current_rows: int) -> Method:
    """Size of the shift for large windows, a p-value test for small ones (see the module)."""
    numbers = reference.kind == NUMERIC and not reference.few_values
    if current_rows <= SMALL_WINDOW:
        return Method.KS if numbers else Method.CHI_SQUARE
    return Method.WASSERSTEIN if numbers else Method.JENSEN_SHANNON


def drift(
    reference: FeatureSummary,
    current: FeatureSummary,
    method: Method | str | None = None,
    threshold: float | None = None,
) -> DriftResult:
    """Compare a window's summary with the reference's.

    Raises:
        ValueError: either side is empty, the kinds differ, or the method does not apply
            (Wasserstein and KS need numbers).

    Example:
        >>> ref = reference_summary(range(1000))
        >>> drift(ref, summarise(range(500, 1500), ref.edges), "wasserstein").drifted
        True
    """
    if reference.rows == 0 or current.rows == 0:
        raise ValueError("both sides need at least one value")
    chosen = default_method(reference, current.rows) if method is None else Method(method)
    if reference.kind == CATEGORICAL and chosen not in CATEGORY_METHODS:
        raise ValueError(f"{chosen} compares numbers; use psi, chisquare or jensenshannon")
    limit = THRESHOLDS[chosen] if threshold is None else float(threshold)
    score = _score(reference, current, chosen)
    drifted = score < limit if chosen.tests else score >= limit
    return DriftResult(chosen, score, limit, bool(drifted))


def _score(reference: FeatureSummary, current: FeatureSummary, method: Method) -> float:
    if method is Method.WASSERSTEIN:
        return wasserstein(reference, current) / max(reference.std, 0.001)
    if method is Method.KS:
        statistic = ks_statistic(reference, current)
        return ks_p_value(statistic, reference.rows, current.rows)
    p, q = _aligned(reference, current)
    if method is Method.PSI:
        return population_stability_index(p, q)
    if method is Method.CHI_SQUARE:
        return chi_square_p_value(p, q)
    return jensen_shannon(p, q)


def _aligned(reference: FeatureSummary, current: FeatureSummary) -> tuple[Ints, Ints]:
    """Counts of both sides over the same bins: merged reference bins (numbers with many
    values), one per value (few values), or the reference's categories plus new ones."""
    if reference.kind == CATEGORICAL:
        if current.kind != CATEGORICAL:
            raise ValueError("cannot compare numbers with categories")
        at = {label: i for i, label in enumerate(reference.labels)}
        new = [label for label in current.labels if label not in at]
        at.update((label, len(reference.labels) + i) for i, label in enumerate(new))
        p = np.concatenate((reference.counts, np.zeros(len(new), np.int64)))
        q = np.zeros(len(at), np.int64)
        np.add.at(q, [at[label] for label in current.labels], current.counts)
        return p, q
    _same_bins(reference, current)
    if reference.few_values:
        return reference.counts, current.counts
    cuts = bin_cuts(reference.counts[1:-1])

    def merged(c: Ints) -> Ints:
        return np.concatenate(([c[0]], np.add.reduceat(c[1:-1], cuts), [c[-1]]))

    return merged(reference.counts), merged(current.counts)


def _same_bins(reference: FeatureSummary, current: FeatureSummary) -> None:
    if current.kind != NUMERIC or (
        reference.edges is not current.edges and not np.array_equal(reference.edges, current.edges)
    ):
        raise ValueError("the current summary must be counted in the reference's bins")


def _cumulative(summary: FeatureSummary) -> Floats:
    """Share of values below each edge, the last edge included: [F(e0), ..., F(ek)]."""
    c = summary.counts
    return np.cumsum(c[:-1]) / summary.rows


def ks_statistic(reference: FeatureSummary, current: FeatureSummary) -> float:
    _same_bins(reference, current)
    return float(np.max(np.abs(_cumulative(reference) - _cumulative(current))))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Two-sample asymptotic p-value, as `scipy.stats.ks_2samp(..., method="asymp")`."""
    from scipy.stats import kstwo

    return float(np.clip(kstwo.sf(statistic, round(n * m / (n + m))), 0.0, 1.0))


def wasserstein(reference: FeatureSummary, current: FeatureSummary) -> float:
    """The area between the cumulative shares, linear within each bin; beyond the reference's
    range from the summed distances (exact when only one side has values there)."""
    _same_bins(reference, current)
    d = _cumulative(reference) - _cumulative(current)
    a, b, width = d[:-1], d[1:], np.diff(reference.edges)
    same = a * b >= 0
    total = np.abs(a) + np.abs(b)
    crossing = np.divide(a * a + b * b, total, out=np.zeros_like(total), where=total > 0)
    area = float(np.sum(width * np.where(same, total, crossing)) / 2)
    n, m = reference.rows, current.rows
    return (
        area
        + abs(reference.below / n - current.below / m)
        + abs(reference.above / n - current.above / m)
    )


def population_stability_index(
    expected: npt.ArrayLike, actual: npt.ArrayLike, *, epsilon: float = PSI_EPSILON
) -> float:
    """PSI = sum((a - e) * ln(a / e)) over the bins' shares; an empty bin counts as `epsilon`.

    Below 0.1 is usually read as no shift, 0.1 to 0.2 as moderate, above 0.2 as a real one.

    Args:
        expected: Counts (or shares) per bin in the reference.
        actual: Counts (or shares) per bin in the data checked, for the same bins.
        epsilon: The share an empty bin stands for, which keeps the logarithm finite.

    Returns:
        The index; 0 for identical shares.

    Raises:
        ValueError: The inputs differ in length, are negative, or one sums to zero.

    Example:
        >>> round(population_stability_index([50, 50], [90, 10]), 4)
        0.8789
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or (e < 0).any() or (a < 0).any():
        raise ValueError("expected and actual must be equally long lists of non-negative counts")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("expected and actual must each count at least one value")
    p = np.maximum(e / e.sum(), epsilon)
    q = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_square_p_value(expected: Ints, actual: Ints) -> float:
    """Chi-square test that both samples come from one distribution (bins empty on both sides
    left out); 1.0 when only one bin holds values."""
    from scipy.stats import chi2_contingency

    table = np.vstack((expected, actual))
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def jensen_shannon(expected: Ints, actual: Ints) -> float:
    """Jensen-Shannon distance of the two shares (natural log, as scipy's `jensenshannon`)."""
    p, q = expected / expected.sum(), actual / actual.sum()
    m = (p + q) / 2

    def kl(a: Floats) -> float:
        held = a > 0
        return float(np.sum(a[held] * np.log(a[held] / m[held])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def bin_cuts(counts: npt.ArrayLike, min_share: float = MIN_BIN_SHARE) -> list[int]:
    """Where merged bins start, so that each holds at least `min_share` of the values.

    A short loop over the bins, not the values; a last bin short of the share joins the one
    before it.
    """
    c = np.asarray(counts, dtype=np.int64)
    need, cuts, held = min_share * c.sum(), [0], 0
    for i, count in enumerate(c[:-1].tolist(), start=1):
        held += count
        if held >= need and held > 0:
            cuts.append(i)
            held = 0
    if len(cuts) > 1 and c[cuts[-1] :].sum() < need:
        cuts.pop()
    return cuts


def merge_bins(
    edges: npt.ArrayLike, counts: npt.ArrayLike, min_share: float = MIN_BIN_SHARE
) -> tuple[Floats, Ints]:
    """Merge adjacent histogram bins until each holds at least `min_share` of the values.

    Example:
        >>> merge_bins([0, 1, 2, 3, 4], [5, 10, 80, 5], 0.1)
        (array([0., 2., 4.]), array([15, 85]))
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    cuts = bin_cuts(c, min_share)
    return e[[*cuts, len(c)]], np.add.reduceat(c, cuts)
