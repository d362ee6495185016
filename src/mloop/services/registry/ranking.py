"""Ordering a model's versions by what they scored, to pick the best one rather than the latest.

Sort keys are the run list's (`-metrics.accuracy,params.C`, or `metrics.rmse asc`), parsed by
the same function, limited to what a version records: `metrics.KEY` and `params.KEY`. A
version without the key (or with NaN) goes last whichever the direction, so `--sort=-metrics.f1`
never puts an unmeasured version first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from mloop.domain.model import ModelVersion
from mloop.domain.query import SortKey, parse_sort
from mloop.errors import FilterSyntaxError


def sort_keys(text: str) -> tuple[SortKey, ...]:
    """`text` parsed as run sort keys, each of which must be a metric or a param.

    Example:
        >>> [str(k.field) for k in sort_keys("-metrics.accuracy")]
        ['metrics.accuracy']
    """
    keys = parse_sort(text)
    for key in keys:
        if key.field.group not in ("metrics", "params"):
            raise FilterSyntaxError(
                f"model versions sort by metrics.KEY or params.KEY, not {key.field}",
                "e.g. --sort=-metrics.accuracy (best first)",
            )
    return keys


def _value(version: ModelVersion, key: SortKey) -> tuple[int, float | str] | None:
    if key.field.group == "metrics":
        found = version.metrics.get(key.field.key)
        return None if found is None or math.isnan(found) else (0, found)
    text = version.params.get(key.field.key)
    if text is None:
        return None
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)  # numbers before words, never compared with them


def sort_versions(versions: Sequence[ModelVersion], text: str) -> list[ModelVersion]:
    """`versions` ordered by the sort keys in `text`; missing values last.

    Example:
        >>> [v.version for v in sort_versions(found, "-metrics.accuracy")]  # doctest: +SKIP
        [3, 1, 2]
    """
    ordered = list(versions)
    for key in reversed(sort_keys(text)):  # stable sorts, least significant key first
        valued = [(value, v) for v in ordered if (value := _value(v, key)) is not None]
        absent = [v for v in ordered if _value(v, key) is None]
        valued.sort(key=lambda pair: pair[0], reverse=key.descending)
        ordered = [v for _, v in valued] + absent
    return ordered


def key_metrics(versions: Sequence[ModelVersion], sort: str | None = None) -> list[str]:
    """The metrics worth a column: those sorted by first, then the most widely recorded.

    Example:
        >>> key_metrics(found, "-metrics.f1")[:2]  # doctest: +SKIP
        ['f1', 'accuracy']
    """
    first = [k.field.key for k in sort_keys(sort) if k.field.group == "metrics"] if sort else []
    counts = Counter(name for v in versions for name in v.metrics)
    rest = sorted((n for n in counts if n not in first), key=lambda n: (-counts[n], n))
    return [*dict.fromkeys(first), *rest]
