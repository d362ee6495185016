"""Distribution checks against a reference profile: PSI, values outside the range, nulls.

PSI over the reference histogram (bins merged to hold at least `MIN_BIN_SHARE` each, since
twenty sparse bins make PSI mostly sampling noise, plus a bin below min and one above max) and
the share of values outside the reference range; PSI over the reference's top categories plus
"other"; and the change in the share of nulls. A column with fewer than `min_values` values on
either side skips PSI, with a note in the report. PSI and the bin merging are monitoring's too,
so they live in `mloop.domain.drift`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mloop.domain.dataset import ColumnProfile, TableProfile
from mloop.domain.drift import merge_bins, population_stability_index
from mloop.services.data.checks import (
    CheckFailure,
    Thresholds,
    as_floats,
    failing_rows,
    reference_family,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    Series: TypeAlias = pd.Series[Any]


def interval(lo: float, hi: float, *, closed: bool, whole: bool = False) -> str:
    """Where a histogram bin's values lie, in words that never name an empty interval.

    Edges are printed with as many digits as it takes to tell them apart (`[2007, 2007.1)`,
    not `[2007, 2007)`); for a column of whole numbers, the whole numbers the bin holds; a bin
    that holds one value names it.

    Example:
        >>> interval(2007, 2007.1, closed=False, whole=True), interval(1, 3, closed=True)
        ('equal to 2007', 'in [1, 3]')
    """
    if whole:
        first, last = math.ceil(lo), math.floor(hi) if closed else math.ceil(hi) - 1
        if first == last:
            return f"equal to {first}"
        if first < last:
            return f"in [{first}, {last}]"
    if lo == hi:
        return f"equal to {lo:g}"
    digits = next((d for d in range(4, 17) if f"{lo:.{d}g}" != f"{hi:.{d}g}"), 17)
    return f"in [{lo:.{digits}g}, {hi:.{digits}g}{']' if closed else ')'}"


def distribution_failures(
    frame: pd.DataFrame, reference: TableProfile, limits: Thresholds, skip: set[str | None]
) -> tuple[list[CheckFailure], tuple[str, ...]]:
    failures: list[CheckFailure] = []
    few: list[str] = []
    for col in reference.columns:
        if col.name in skip or col.name not in frame.columns:
            continue
        failures.extend(_null_shift(frame, col, limits))
        if col.kind not in ("numeric", "categorical"):
            continue
        if min(int(frame[col.name].notna().sum()), col.count) < limits.min_values:
            few.append(col.name)
        elif col.histogram is not None:
            edges, ref_counts = merge_bins(col.histogram.edges, col.histogram.counts)
            failures.extend(_numeric_shift(frame, col, edges, ref_counts, limits))
        elif col.top:
            failures.extend(_categorical_shift(frame, col, limits))
    skipped = f"PSI skipped for {', '.join(few)}: fewer than {limits.min_values} values"
    return failures, (skipped,) if few else ()


def _null_shift(frame: pd.DataFrame, col: ColumnProfile, limits: Thresholds) -> list[CheckFailure]:
    """Only for columns that had nulls: new nulls elsewhere already fail the `nulls` check."""
    if not col.nullable or frame.empty:
        return []
    nulls = frame[col.name].isna().to_numpy()
    share, before = float(nulls.mean()), col.nulls / (col.count + col.nulls)
    if abs(share - before) <= limits.max_null_shift:
        return []
    message = (
        f"{share:.0%} of values are null, {before:.0%} in the reference "
        f"(allowed change: {limits.max_null_shift * 100:g} percentage points)"
    )
    more = share > before
    shown = failing_rows(frame, frame.index[nulls] if more else [], col.name)
    return [CheckFailure(col.name, "null_share", message, shown, int(nulls.sum()) if more else 0)]


def _numeric_shift(
    frame: pd.DataFrame,
    col: ColumnProfile,
    edges: npt.NDArray[np.float64],
    ref_counts: npt.NDArray[np.int64],
    limits: Thresholds,
) -> list[CheckFailure]:
    values = as_floats(frame[col.name])
    finite = np.isfinite(values)
    k, lo, hi = len(ref_counts), float(edges[0]), float(edges[-1])
    # bin 0 is below the reference range, 1..k the reference bins, k+1 above; -1 not counted
    inner = np.searchsorted(edges[1:-1], values, side="right") + 1
    bins = np.where(~finite, -1, np.where(values < lo, 0, np.where(values > hi, k + 1, inner)))
    outside = (bins == 0) | (bins == k + 1)
    failures = []
    if (share := float(outside.sum() / max(finite.sum(), 1))) > limits.max_outside_share:
        message = (
            f"{share:.0%} of values lie outside the reference range [{lo:g}, {hi:g}] "
            f"(allowed: {limits.max_outside_share:.0%})"
        )
        shown = failing_rows(frame, frame.index[outside], col.name)
        failures.append(CheckFailure(col.name, "outside_range", message, shown, int(outside.sum())))

    whole = reference_family(col.dtype) == "integer"

    def label(i: int) -> str:
        if i in (0, k + 1):
            return f"{'below' if i == 0 else 'above'} the reference range"
        return interval(float(edges[i - 1]), float(edges[i]), closed=i == k, whole=whole)

    expected = np.concatenate(([0], ref_counts, [0]))
    return failures + _psi_failure(frame, col, expected, bins, label, limits)


def _categorical_shift(
    frame: pd.DataFrame, col: ColumnProfile, limits: Thresholds
) -> list[CheckFailure]:
    names = [v for v, _ in col.top]
    expected = np.array([n for _, n in col.top] + [col.count - sum(n for _, n in col.top)])
    series = frame[col.name]
    codes = pd.Index(names).get_indexer(pd.Index(series.astype(str)))  # -1: not a top value
    bins = np.where(series.isna().to_numpy(), -1, np.where(codes < 0, len(names), codes))

    def label(i: int) -> str:
        return repr(names[i]) if i < len(names) else "outside the reference's top values"

    return _psi_failure(frame, col, expected, bins, label, limits)


def _psi_failure(
    frame: pd.DataFrame,
    col: ColumnProfile,
    expected: npt.NDArray[Any],
    bins: npt.NDArray[Any],
    label: Callable[[int], str],
    limits: Thresholds,
) -> list[CheckFailure]:
    """A PSI failure names the bin that gained most; its count is the values in excess of the
    reference shares, summed over the bins that gained."""
    counts = np.bincount(bins[bins >= 0], minlength=len(expected))
    if counts.sum() == 0 or expected.sum() == 0:
        return []
    if (psi := population_stability_index(expected, counts)) <= limits.max_psi:
        return []
    p, q = expected / expected.sum(), counts / counts.sum()
    worst = int(np.argmax(q - p))
    excess = round(float(np.clip(counts - p * counts.sum(), 0, None).sum()))
    message = (
        f"PSI {psi:.2f} > {limits.max_psi:g}: {q[worst]:.0%} of values are {label(worst)} "
        f"({p[worst]:.0%} in the reference)"
    )
    shown = failing_rows(frame, frame.index[bins == worst], col.name)
    return [CheckFailure(col.name, "psi", message, shown, excess)]


# --- versions -------------------------------------------------------------------------------
