"""The fairness measures of a bias gate, in one place: the registry's promotion measures them
on a holdout, monitoring on live traffic with feedback, and both must mean the same numbers.

- demographic parity: per group of the sensitive column, the share of rows predicted the
  positive class (the selection rate); its difference is the largest rate minus the smallest.
- equal opportunity: the same over the rows whose true class is positive (the true-positive
  rate per group).

The positive class is 1 when the classes include 1, else the largest class in sort order
(`yes` over `no`, `True` over `False`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MEASURES = ("demographic_parity", "equal_opportunity")


def positive_class(classes: Iterable[Any]) -> Any:
    """The class a bias measure counts as positive.

    Example:
        >>> positive_class([0, 1, 0]), positive_class(["no", "yes"])
        (1, 'yes')
    """
    values = sorted(set(classes))
    ones = [v for v in values if v == 1]  # 1, or True: the class as the model names it
    if ones:
        return ones[0]
    return values[-1] if values else 1


def group_rates(
    measure: str, predicted: Any, groups: Any, positive: Any, truth: Any = None
) -> dict[Any, float]:
    """Per group, the rate `measure` compares (numpy arrays of one length; `truth` is needed
    for equal opportunity only). A group with no row to measure has no rate.

    Example:
        >>> import numpy as np
        >>> group_rates("demographic_parity", np.array([1, 0, 1, 1]), np.array(list("aabb")), 1)
        {'a': 0.5, 'b': 1.0}
    """
    import numpy as np

    if measure not in MEASURES:
        raise ValueError(f"unknown fairness measure {measure!r}")
    hit = predicted == positive
    rates: dict[Any, float] = {}
    for group in np.unique(groups):
        mask = groups == group
        if measure == "equal_opportunity":
            mask = mask & (truth == positive)
        if mask.sum():
            key = group.item() if hasattr(group, "item") else group
            rates[key] = float(np.mean(hit[mask]))
    return rates


def difference(rates: dict[Any, float]) -> float:
    """The gap a bias gate bounds: the largest group's rate minus the smallest's (0 with none)."""
    return max(rates.values()) - min(rates.values()) if rates else 0.0
