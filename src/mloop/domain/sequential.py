"""Always-valid inference: the rule an A/B test may be watched under, look after look.

A z- or t-test's p-value holds at the one sample size fixed before the test starts. Anyone may run
`mloop endpoints status` at any time, and a rule that stops at the first p < 0.05 declares a
winner in far more than 5% of A/A tests (tests/unit/domain/test_sequential.py measures it: over
a third of them in 100 looks). So mloop decides by the mixture sequential probability ratio
test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Always valid inference: bringing sequential
analysis to A/B testing" (arXiv:1512.04922; in Operations Research 70(3), 2022, as "Always valid
inference: continuous monitoring of A/B tests"), on Robbins' normal mixture (1970): its p-values
and confidence intervals hold at every look at once, so the test can be watched continuously
and stopped as soon as it says so.

The difference d between two variants is estimated as d̂ with variance V (d̂ is close to normal
by the central limit theorem; V is plugged in from the samples). Against `d = d0`, the likelihood
ratio averaged over alternatives d ~ N(d0, τ²) is

    Λ = sqrt(V / (V + τ²)) · exp((d̂ − d0)² τ² / (2 V (V + τ²)))

a martingale of mean 1 when d = d0, so P(Λ ever reaches 1/α) ≤ α (Ville's inequality). The
always-valid p-value is the running minimum over looks of 1/Λ; the always-valid confidence
interval, {d0 : Λ(d0) < 1/α}, is the running intersection of

    d̂ ± sqrt(2 V (V + τ²) / τ² · (log(1/α) + ½ log((V + τ²) / V)))

and excludes 0 exactly when the p-value is at most α.

τ, the mixing standard deviation, is the size of effect the test is tuned to find: a large τ
finds big effects early and small ones late, a small τ the reverse. mloop picks τ so that the
interval is narrowest at the *horizon*, the sample per variant by which an answer is wanted:
for a fixed V the half-width is smallest at τ² = r·V with r the root of r = 2 log(1/α) + log(1 + r)
(r ≈ 8.2 at α = 0.05), so τ² = r·V_h, V_h the variance the estimate will have at the horizon
(the per-observation variances seen at the first look, over the horizon). τ is fixed at that first
look and kept: a mixing variance that followed the data would not leave Λ a martingale.

Between looks only the last `Evidence` is needed (it carries τ, the running minimum p-value and
the running interval): the caller keeps the last decision and hands it back with the next counts.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from mloop.domain.abtest import (
    OutcomeKind,
    RateSample,
    Sample,
    fixed_horizon_p_value,
    required_sample_size,
    required_sample_size_for_means,
)
from mloop.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one comparison (`b − a`) has shown up to the latest look: the estimate and its
    variance then, the mixing standard deviation `tau` fixed at the first look, the always-valid
    p-value (running minimum) and confidence interval (running intersection)."""

    difference: float
    variance: float
    tau: float
    p_value: float
    ci_low: float
    ci_high: float


def mixing_sd(horizon_variance: float, alpha: float) -> float:
    """τ making the always-valid interval narrowest when the estimate's variance is
    `horizon_variance` (the variance expected at the horizon).

    Example:
        >>> round(mixing_sd(1.0, 0.05) ** 2, 2)
        8.21
    """
    level = math.log(1 / alpha)
    ratio = 2 * level
    for _ in range(60):  # a contraction (derivative 1/(1+r) < 1/6): 60 steps reach the float
        ratio = 2 * level + math.log1p(ratio)
    return math.sqrt(ratio * horizon_variance)


def log_likelihood_ratio(
    difference: float, variance: float, tau: float, null: float = 0.0
) -> float:
    """log Λ: the evidence against `d = null` from an estimate `difference` of variance
    `variance`, mixed over alternatives N(null, tau²). A variance of 0 (every outcome alike) is
    no evidence when the estimate equals `null` and certainty otherwise."""
    if variance <= 0:
        return 0.0 if difference == null else math.inf
    ratio = tau * tau / variance
    return 0.5 * (difference - null) ** 2 / variance * ratio / (1 + ratio) - 0.5 * math.log1p(ratio)


def half_width(variance: float, tau: float, alpha: float) -> float:
    """Half the width of the always-valid (1 − alpha) interval at this look alone."""
    if variance <= 0:
        return 0.0
    ratio = tau * tau / variance
    return math.sqrt(
        2 * variance * (1 + 1 / ratio) * (math.log(1 / alpha) + 0.5 * math.log1p(ratio))
    )


def update(
    previous: Evidence | None, difference: float, variance: float, alpha: float, tau: float
) -> Evidence:
    """The evidence after one more look: this look's p-value and interval folded into the
    running minimum and intersection. `tau` (> 0) counts at the first look (`previous` None);
    later looks keep the first one's. An empty intersection (as rare as a false positive)
    keeps this look's interval, so no winner is named until it excludes 0 again.

    Example:
        >>> first = update(None, 0.02, 1e-5, 0.05, tau=0.01)
        >>> first.p_value < 0.05 and first.ci_low > 0
        True
        >>> later = update(first, 0.0, 1e-5, 0.05, tau=1.0)  # tau is kept; p never rises
        >>> later.tau, later.p_value == first.p_value
        (0.01, True)
    """
    if previous is not None:
        tau = previous.tau
    p_value = math.exp(-log_likelihood_ratio(difference, variance, tau))
    half = half_width(variance, tau, alpha)
    low, high = difference - half, difference + half
    if previous is not None:
        p_value = min(p_value, previous.p_value)
        if max(low, previous.ci_low) <= min(high, previous.ci_high):
            low, high = max(low, previous.ci_low), min(high, previous.ci_high)
    return Evidence(difference, variance, tau, min(p_value, 1.0), low, high)


class ABState(enum.StrEnum):
    """`running` until one variant beats every other under the rule (`winner`), or, when the
    rule has an `mde`, until every always-valid interval between variants lies inside ±mde
    (`no_difference`: no change worth having, so the test may stop). Both are kept once
    reached, since the p-values only fall and the intervals only shrink; a winner found after
    `no_difference` (an effect smaller than the mde) takes precedence."""

    RUNNING = "running"
    WINNER = "winner"
    NO_DIFFERENCE = "no_difference"


@dataclass(frozen=True, slots=True)
class SequentialRule:
    """How `decide` decides.

    `alpha`: the chance, however often the test is watched, of naming a variant that is not the
    best (split over the comparisons, see `decide`). `min_samples`: no comparison counts before
    every variant has this many outcomes, since the plug-in variance and the normal
    approximation behind the mSPRT are poor on a handful (a guard on top of the rule, which
    is valid without it). `horizon`: the outcomes per variant by which an answer is wanted,
    which sets τ (`mixing_sd`). `higher_is_better`: False for outcomes such as errors.
    `mde`: the smallest change worth finding (absolute, in the outcome's unit); with it the test
    may end in `no_difference`, and the decision reports the sample a fixed-horizon test would
    need.
    """

    alpha: float = 0.05
    min_samples: int = 100
    horizon: int = 10_000
    higher_is_better: bool = True
    mde: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidInput(
                f"an A/B test's alpha lies between 0 and 1, not {self.alpha}", "e.g. 0.05"
            )
        if self.min_samples < 2 or self.horizon < 1:
            raise InvalidInput(
                f"an A/B test needs min_samples >= 2 and a horizon >= 1 "
                f"(got {self.min_samples} and {self.horizon})",
                "e.g. min_samples 100 and horizon 10000 outcomes per variant",
            )


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One variant at this look. Against the control (the first variant; None for the control
    itself): `effect` the absolute difference, `lift` it relative to the control's value, `ci_low`
    and `ci_high` its always-valid interval and `p_value` its always-valid p-value (None before
    the first look that counts), and `fixed_p_value` the fixed-horizon test's (for reference)."""

    name: str
    n: int
    value: float | None
    effect: float | None = None
    lift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    fixed_p_value: float | None = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """Variant `b` against variant `a` (indexes, a < b): the evidence on `b − a` so far."""

    a: int
    b: int
    evidence: Evidence | None = None


@dataclass(frozen=True, slots=True)
class ABDecision:
    """What an A/B test shows at one look, as `endpoints status --json` prints it; hand it to the
    next `decide` as `previous`, which is all the history the rule needs. With the rule's `mde`,
    `reference_sample_size` is what a fixed-horizon test would need per variant (80% power, at
    the control's outcomes so far): for reference, never a stopping point."""

    state: ABState
    winner: str | None
    winner_index: int | None
    outcome: OutcomeKind
    alpha: float
    alpha_per_comparison: float
    min_samples: int
    variants: tuple[VariantResult, ...]
    comparisons: tuple[Comparison, ...]
    reason: str
    reference_sample_size: int | None = None
    method: str = "msprt"


def decide(
    variants: Mapping[str, Sample],
    rule: SequentialRule = SequentialRule(),  # frozen: one shared default is safe
    previous: ABDecision | None = None,
) -> ABDecision:
    """One look at an A/B test: the variants' samples in order, the control first.

    Every pair of variants is compared by the mSPRT at alpha / (k − 1) for k variants (the
    Bonferroni split over the k − 1 comparisons with the control), and a winner is named only
    when its always-valid interval against every other variant lies on the better side of 0.
    Why that split suffices for all pairs: take B, a best variant. Naming a winner that is not
    strictly better than every other needs one of the k − 1 intervals between B and another
    variant to miss its true difference (each misses with chance at most alpha / (k − 1), at
    all looks at once), so it happens with chance at most alpha, however the variants tie.

    Raises:
        InvalidInput: fewer than two variants, rates mixed with means, or a `previous` decision
            over other variants.

    Example:
        >>> look = decide({"churn:1": RateSample(5000, 500), "churn:2": RateSample(5000, 650)})
        >>> look.state, look.winner, round(look.variants[1].effect, 3)
        (<ABState.WINNER: 'winner'>, 'churn:2', 0.03)
    """
    names, samples = list(variants), list(variants.values())
    kind = _outcome_kind(samples)
    alpha = rule.alpha / (len(samples) - 1)
    carried = _carried(previous, names, kind)
    ready = min(s.n for s in samples) >= rule.min_samples
    comparisons = []
    for a in range(len(samples)):
        for b in range(a + 1, len(samples)):
            evidence = carried.get((a, b))
            if ready:
                evidence = _look(evidence, samples[a], samples[b], alpha, rule.horizon)
            comparisons.append(Comparison(a, b, evidence))
    winner = _winner(comparisons, len(samples), rule.higher_is_better)
    results = [VariantResult(names[0], samples[0].n, samples[0].value)]
    results += [
        _result(names[i], samples[0], samples[i], comparisons[i - 1].evidence)
        for i in range(1, len(samples))
    ]
    state = ABState.RUNNING if winner is None else ABState.WINNER
    if winner is None and rule.mde and all(_within(c.evidence, abs(rule.mde)) for c in comparisons):
        state = ABState.NO_DIFFERENCE
    return ABDecision(
        state=state,
        winner=None if winner is None else names[winner],
        winner_index=winner,
        outcome=kind,
        alpha=rule.alpha,
        alpha_per_comparison=alpha,
        min_samples=rule.min_samples,
        variants=tuple(results),
        comparisons=tuple(comparisons),
        reason=_reason(names, samples, rule, state, winner, alpha),
        reference_sample_size=_reference_size(samples[0], rule.mde, alpha),
    )


def _outcome_kind(samples: list[Sample]) -> OutcomeKind:
    if len(samples) < 2:
        raise InvalidInput(
            f"an A/B test compares at least two variants, not {len(samples)}",
            "deploy two or more versions: mloop deploy ENDPOINT MODEL:1 MODEL:2 --strategy ab",
        )
    if all(isinstance(s, RateSample) for s in samples):
        return OutcomeKind.RATE
    if all(not isinstance(s, RateSample) for s in samples):
        return OutcomeKind.MEAN
    raise InvalidInput(
        "an A/B test compares rates with rates or means with means, not both",
        "report one kind of outcome for every variant of the endpoint",
    )


def _carried(
    previous: ABDecision | None, names: list[str], kind: OutcomeKind
) -> dict[tuple[int, int], Evidence | None]:
    if previous is None:
        return {}
    before = [v.name for v in previous.variants]
    if before != names or previous.outcome != kind:
        raise InvalidInput(
            f"the previous look compared {previous.outcome} of {', '.join(before)}, "
            f"not {kind} of {', '.join(names)}",
            "a changed set of variants is a new A/B test: decide again without the previous look",
        )
    return {(c.a, c.b): c.evidence for c in previous.comparisons}


def _look(
    evidence: Evidence | None, a: Sample, b: Sample, alpha: float, horizon: int
) -> Evidence | None:
    """`evidence` after this look at `b − a`; None while there is no variance to set τ from
    (every outcome alike so far, as when a rare conversion has not happened yet)."""
    value_a, value_b, var_a, var_b = a.value, b.value, a.variance, b.variance
    if value_a is None or value_b is None or var_a is None or var_b is None:
        return evidence
    variance = var_a / a.n + var_b / b.n
    if evidence is None and variance <= 0:
        return None
    tau = mixing_sd((var_a + var_b) / horizon, alpha)
    return update(evidence, value_b - value_a, variance, alpha, tau)


def _beats(comparisons: list[Comparison], i: int, j: int, k: int, higher_is_better: bool) -> bool:
    """Whether variant i is better than j: their interval lies on i's side of 0."""
    a, b = min(i, j), max(i, j)
    evidence = comparisons[a * k - a * (a + 1) // 2 + (b - a - 1)].evidence
    if evidence is None:
        return False
    b_better = evidence.ci_low > 0 if higher_is_better else evidence.ci_high < 0
    a_better = evidence.ci_high < 0 if higher_is_better else evidence.ci_low > 0
    return b_better if i == b else a_better


def _winner(comparisons: list[Comparison], k: int, higher_is_better: bool) -> int | None:
    for i in range(k):
        if all(_beats(comparisons, i, j, k, higher_is_better) for j in range(k) if j != i):
            return i
    return None


def _result(
    name: str, control: Sample, variant: Sample, evidence: Evidence | None
) -> VariantResult:
    base, value = control.value, variant.value
    effect = None if base is None or value is None else value - base
    return VariantResult(
        name=name,
        n=variant.n,
        value=value,
        effect=effect,
        lift=None if effect is None or not base else effect / base,
        ci_low=None if evidence is None else evidence.ci_low,
        ci_high=None if evidence is None else evidence.ci_high,
        p_value=None if evidence is None else evidence.p_value,
        fixed_p_value=fixed_horizon_p_value(control, variant),
    )


def _reference_size(control: Sample, mde: float | None, alpha: float) -> int | None:
    """The fixed-horizon sample for `mde`, at the control's outcomes so far; None until they
    make one (no outcome yet, a rate of 0 or 1, a target rate outside 0-1)."""
    value, variance = control.value, control.variance
    if mde is None or not mde or value is None or not variance:
        return None
    if isinstance(control, RateSample):
        inside = 0 < value + mde < 1
        return required_sample_size(value, mde, alpha) if inside else None
    return required_sample_size_for_means(math.sqrt(variance), mde, alpha)


def _within(evidence: Evidence | None, margin: float) -> bool:
    """Whether the interval rules out a difference of `margin` either way (an equivalence test:
    the interval covers the true difference at every look, with chance 1 − alpha)."""
    return evidence is not None and -margin < evidence.ci_low and evidence.ci_high < margin


def _reason(
    names: list[str],
    samples: list[Sample],
    rule: SequentialRule,
    state: ABState,
    winner: int | None,
    alpha: float,
) -> str:
    fewest = min(range(len(samples)), key=lambda i: samples[i].n)
    if winner is not None:
        return f"{names[winner]} beats every other variant (always-valid, alpha {alpha:.3g} each)"
    if state is ABState.NO_DIFFERENCE:
        return f"no two variants differ by the mde ({rule.mde:g}) or more (always-valid)"
    if samples[fewest].n < rule.min_samples:
        short = f"{names[fewest]} has {samples[fewest].n}"
        return f"waiting for {rule.min_samples} outcomes per variant ({short})"
    return "no variant beats every other yet under the always-valid rule"
