"""Feature summaries: a column's values as counts that add up, the input of every drift method.

A `FeatureSummary` of the same feature over two windows adds up to the summary of both
(`a + b`), so a window of 1,000 new rows is one small update whatever the history, and the
reference is summarised once.

Numbers are counted in the reference's quantile bins: `BINS` (1,000) bins that each hold the
same share of the reference, or one bin per value when the reference has no more distinct
values than that. Two more bins count what falls below and above the reference's range, with
the sum of the distances to the range (so the Wasserstein distance's tails are exact).
Categories are counted by value.

Why 1,000 bins: with 100, a bin holds 1% of the reference and KS could be off by 0.01, a quarter
of the margin that decides a 1,000-row window; with 1,000 a summary is 16 KB and counting 1,000
new rows into it plus comparing costs ~100 µs a column. The exact reference quantiles are kept
as the edges (one sort when the reference is summarised), so nothing but the within-bin
positions is lost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

BINS = 1000
FEW_VALUES = 5
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True, slots=True, eq=False)
class FeatureSummary:
    """Counts of one feature's values, in the reference's bins (numbers) or by value.

    Numbers: `counts[0]` below `edges[0]`, `counts[1..k]` the k bins (closed on the left, the
    last one on both sides), `counts[k+1]` above `edges[-1]`; `below` and `above` sum the
    distances of those values to the range; `moments` are the count, sum and sum of squares of
    the values less `edges`' middle (kept small, so the variance does not cancel out).
    Categories: `labels` and their `counts`. `missing` counts nulls and NaN.
    """

    kind: str
    counts: Ints
    edges: Floats = field(default_factory=lambda: np.zeros(0))
    labels: tuple[str, ...] = ()
    below: float = 0.0
    above: float = 0.0
    moments: tuple[float, float, float] = (0.0, 0.0, 0.0)
    missing: int = 0
    rows: int = field(init=False)  # values counted (missing ones left out), asked for often

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", int(self.counts.sum()))

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0, as numpy's and Evidently's)."""
        n, s1, s2 = self.moments
        return math.sqrt(max(s2 / n - (s1 / n) ** 2, 0.0)) if n else 0.0

    @property
    def few_values(self) -> bool:
        """A number with so few distinct values that it is compared as a category."""
        return self.kind == NUMERIC and len(self.edges) - 1 <= FEW_VALUES

    def __add__(self, other: FeatureSummary) -> FeatureSummary:
        if self.kind != other.kind:
            raise ValueError(f"cannot add a {other.kind} summary to a {self.kind} one")
        if self.kind == CATEGORICAL:
            merged = dict(zip(self.labels, self.counts.tolist(), strict=True))
            for label, count in zip(other.labels, other.counts.tolist(), strict=True):
                merged[label] = merged.get(label, 0) + count
            return FeatureSummary(
                CATEGORICAL,
                np.array(list(merged.values()), dtype=np.int64),
                labels=tuple(merged),
                missing=self.missing + other.missing,
            )
        if self.edges is not other.edges and not np.array_equal(self.edges, other.edges):
            raise ValueError("numeric summaries add up only over the same bins")
        return FeatureSummary(
            NUMERIC,
            self.counts + other.counts,
            self.edges,
            below=self.below + other.below,
            above=self.above + other.above,
            moments=(
                self.moments[0] + other.moments[0],
                self.moments[1] + other.moments[1],
                self.moments[2] + other.moments[2],
            ),
            missing=self.missing + other.missing,
        )

    def empty(self) -> FeatureSummary:
        """A summary of no values in the same bins: where a window's sum starts."""
        return FeatureSummary(
            self.kind,
            np.zeros(0 if self.kind == CATEGORICAL else len(self.counts), np.int64),
            self.edges,
        )

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready (floats round-trip exactly through JSON's repr)."""
        return {
            "kind": self.kind,
            "counts": self.counts.tolist(),
            "edges": self.edges.tolist(),
            "labels": list(self.labels),
            "below": self.below,
            "above": self.above,
            "moments": list(self.moments),
            "missing": self.missing,
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> FeatureSummary:
        n, s1, s2 = (float(v) for v in data["moments"])
        return cls(
            str(data["kind"]),
            np.asarray(data["counts"], dtype=np.int64),
            np.asarray(data["edges"], dtype=np.float64),
            tuple(str(v) for v in data["labels"]),
            float(data["below"]),
            float(data["above"]),
            (n, s1, s2),
            int(data["missing"]),
        )


# --- summarising -----------------------------------------------------------------------------


def reference_summary(values: npt.ArrayLike, bins: int = BINS) -> FeatureSummary:
    """A number's reference: its own quantile bins (or one per value) and its counts in them.

    One sort of the values; the counts are read off the sorted values, not counted again.
    """
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    missing = int(x.size - finite.size)
    s = np.sort(finite)
    if s.size == 0:
        raise ValueError("the reference holds no finite value")
    distinct = s[np.concatenate(([True], s[1:] != s[:-1]))]
    if distinct.size <= bins:  # one bin per value, its edges half way to the next values
        middles = (distinct[:-1] + distinct[1:]) / 2
        edges = np.concatenate(([distinct[0]], middles, [distinct[-1]]))
    else:  # numpy's linear quantiles, read off the sorted values without sorting again
        at = np.linspace(0.0, s.size - 1.0, bins + 1)
        low = np.floor(at).astype(np.int64)
        high = np.minimum(low + 1, s.size - 1)
        edges = np.unique(s[low] + (at - low) * (s[high] - s[low]))
    return summarise(s, edges, missing=missing, ordered=True)


def summarise(
    values: npt.ArrayLike, edges: Floats, *, missing: int = 0, ordered: bool = False
) -> FeatureSummary:
    """Count numbers into `edges` (a reference's): the summary a window adds up.

    NaN and infinite values count as missing. `ordered` says the values are sorted already
    (then 1,001 look-ups into them count every bin).
    """
    x = np.asarray(values, dtype=np.float64)
    if not ordered:
        finite = np.isfinite(x)
        if not finite.all():
            missing += int(x.size - finite.sum())
            x = x[finite]
    k = len(edges) - 1
    if ordered:
        cuts = np.searchsorted(x, edges, side="left")
        cuts[-1] = np.searchsorted(x, edges[-1], side="right")
        inner = np.diff(cuts)
        counts = np.concatenate(([cuts[0]], inner, [x.size - cuts[-1]])).astype(np.int64)
        low, high = x[: cuts[0]], x[cuts[-1] :]
    else:
        where = bin_of(x, edges)
        counts = np.bincount(where, minlength=k + 2).astype(np.int64)
        low = x[where == 0] if counts[0] else x[:0]
        high = x[where == k + 1] if counts[-1] else x[:0]
    centre = float(edges[k // 2])
    shifted = x - centre
    # np.square, not np.dot: BLAS's threads spin on a busy machine (8 ms instead of 0.1)
    moments = (float(x.size), float(shifted.sum()), float(np.square(shifted).sum()))
    return FeatureSummary(
        NUMERIC,
        counts,
        np.asarray(edges, dtype=np.float64),
        below=float(edges[0] * low.size - low.sum()),
        above=float(high.sum() - edges[-1] * high.size),
        moments=moments,
        missing=missing,
    )


def bin_of(x: Floats, edges: Floats) -> Ints:
    """Each value's bin: 0 below `edges[0]`, 1..k inside (the last closed), k+1 above.

    `np.searchsorted` over 1,001 edges costs ~70 ns a value here (ten unpredictable branches),
    more than sorting the values. Instead a grid of `4k` equal cells over the range gives each
    value the bin its cell starts in, in a few array passes; the few edges inside a cell are
    then stepped over, one vectorised pass each. Quantile edges of a very skewed column crowd
    into a few cells; there the binary search is the better deal and is used.
    """
    grid = _grid(edges)
    if grid is None:
        return _searched(x, edges)
    first, padded, scale, steps = grid
    # clipped as floats: a huge value cast to int64 first would wrap around
    cell = np.clip((x - padded[1]) * scale, 0, len(first) - 2).astype(np.int64)
    where: Ints = first[cell]
    where -= x < padded[where]  # below the range, or rounding started one bin too far
    for _ in range(steps):
        where += x >= padded[where + 1]
    return where


_GRIDS: dict[int, tuple[Floats, tuple[Ints, Floats, float, int] | None]] = {}


def _grid(edges: Floats) -> tuple[Ints, Floats, float, int] | None:
    """The grid of `bin_of` for `edges`, made once per edges array (a window's summaries share
    their reference's), so a 1,000-row update does not pay for it each time."""
    held = _GRIDS.get(id(edges))
    if held is not None and held[0] is edges:
        return held[1]
    k = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    grid = None
    if k >= 2 and np.isfinite(hi - lo) and hi > lo:
        cells = 4 * k
        scale = cells / (hi - lo)
        first = np.searchsorted(edges, lo + np.arange(cells + 1) / scale, side="right")
        steps = int(np.max(first[1:] - first[:-1])) + 1
        # padded[b] is bin b's lower edge; the last bin also holds `hi`, so its upper edge is
        # the next float above it
        padded = np.concatenate(([-np.inf], edges, [np.inf]))
        padded[k + 1] = np.nextafter(hi, np.inf)
        grid = (first, padded, scale, steps) if steps <= 4 else None
    if len(_GRIDS) > 4096:  # edges of references no longer used
        _GRIDS.clear()
    _GRIDS[id(edges)] = (edges, grid)
    return grid


def _searched(x: Floats, edges: Floats) -> Ints:
    where = np.searchsorted(edges, x, side="right")
    where[x == edges[-1]] = len(edges) - 1
    return where


def count_categories(
    labels: Sequence[str], counts: Sequence[int], missing: int = 0
) -> FeatureSummary:
    """A category's summary from its value counts (what a column engine's `value_counts` gives)."""
    return FeatureSummary(
        CATEGORICAL,
        np.asarray(counts, dtype=np.int64),
        labels=tuple(str(v) for v in labels),
        missing=missing,
    )


def summarise_categories(values: Sequence[Any]) -> FeatureSummary:
    """Count values as text (None is missing)."""
    present = [str(v) for v in values if v is not None]
    found, counts = np.unique(np.asarray(present, dtype=str), return_counts=True)
    return count_categories(found.tolist(), counts.tolist(), len(values) - len(present))
