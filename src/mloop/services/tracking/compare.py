"""Side-by-side comparison of runs: params and latest metrics, with differences marked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mloop.domain.run import Run


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    group: str  # "params" | "metrics"
    key: str
    values: tuple[str | float | None, ...]
    differs: bool


@dataclass(frozen=True, slots=True)
class Comparison:
    runs: tuple[Run, ...]
    rows: tuple[ComparisonRow, ...]


def compare_runs(runs: Sequence[Run]) -> Comparison:
    """One row per param and metric key seen in any run; `differs` when the values are not all
    the same (a key missing from some runs counts as a difference).

    Example:
        >>> compare_runs([run_a, run_b]).rows[0].differs  # doctest: +SKIP
        True
    """
    rows: list[ComparisonRow] = []
    for key in sorted({k for r in runs for k in r.params}):
        values = tuple(r.params.get(key) for r in runs)
        rows.append(ComparisonRow("params", key, values, len(set(values)) > 1))
    for key in sorted({k for r in runs for k in r.metrics}):
        metric_values = tuple(r.metrics[key].value if key in r.metrics else None for r in runs)
        rows.append(ComparisonRow("metrics", key, metric_values, len(set(metric_values)) > 1))
    return Comparison(tuple(runs), tuple(rows))
