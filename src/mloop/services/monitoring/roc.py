"""ROC AUC from labels and the class scores the prediction log holds (`score.CLASS` columns).

Exact and rank-based (the Mann-Whitney statistic, ties counted a half), so it needs numpy
only: `mloop monitor status` runs where the log is read, which needs the `data` or `serve`
extra, not scikit-learn. It equals scikit-learn's `roc_auc_score`: binary from the positive
class's score (`positive_class`'s rule, which is scikit-learn's greater label for 0/1, false/
true and text); with more classes, one-vs-rest and the plain mean over the labelled classes
(`multi_class="ovr"`, `average="macro"`).

Rows without a score (logged before scores existed, by a model without them, or past a
flush's scoring budget) are left out, and the answer says how many rows it counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mloop.domain.prediction import SCORE, class_name

if TYPE_CHECKING:
    import pyarrow as pa

NO_SCORES = "no labelled prediction was logged with class scores"
ONE_CLASS = "the labels hold one class only"


@dataclass(frozen=True, slots=True)
class Auc:
    """ROC AUC over `counted` of the labelled rows (None, with `reason`, when it cannot be)."""

    value: float | None
    counted: int
    reason: str | None = None


def binary_auc(positive: Any, score: Any) -> float:
    """The area under the ROC curve of `score` for the rows where `positive` is true: the
    chance a positive row scores above a negative one, ties counted a half.

    Example:
        >>> binary_auc(np.array([False, True, False, True]), np.array([0.1, 0.8, 0.4, 0.4]))
        0.875
    """
    score = np.asarray(score, dtype=np.float64)
    hits = np.asarray(positive, dtype=bool)
    order = np.argsort(score, kind="mergesort")
    ordered = score[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))
    ends = np.concatenate((starts[1:], [len(score)]))
    ranks = np.empty(len(score))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # tied rows share
    found = int(hits.sum())
    others = len(score) - found
    return float((ranks[hits].sum() - found * (found + 1) / 2.0) / (found * others))


def roc_auc(truth: Any, scores: Mapping[str, Any], positive: Any) -> Auc:
    """ROC AUC of labelled rows: `truth` their labels, `scores` the log's score columns by
    class name (NaN where a row has none), `positive` the positive class of two.

    Example:
        >>> scores = {"0": np.array([0.9, 0.2, 0.4]), "1": np.array([0.1, 0.8, 0.6])}
        >>> roc_auc(np.array([0, 1, 1]), scores, 1)
        Auc(value=1.0, counted=3, reason=None)
    """
    truth = np.asarray(truth)
    if not scores:
        return Auc(None, 0, NO_SCORES)
    classes = list(np.unique(truth))
    if len(classes) < 2:
        return Auc(None, 0, ONE_CLASS)
    wanted = [class_name(positive)] if len(classes) == 2 else [class_name(c) for c in classes]
    absent = [name for name in wanted if name not in scores]
    if absent:
        shown = ", ".join(sorted(scores)[:6])
        return Auc(None, 0, f"the scores name no class {absent[0]!r} (they name {shown})")
    columns = [np.asarray(scores[name], dtype=np.float64) for name in wanted]
    kept = np.logical_and.reduce([np.isfinite(c) for c in columns])
    counted = int(kept.sum())
    if not counted:
        return Auc(None, 0, NO_SCORES)
    truth = truth[kept]
    if len(np.unique(truth)) < len(classes):  # a class left only in rows without scores
        return Auc(None, counted, ONE_CLASS if len(classes) == 2 else "a class has no scored row")
    if len(classes) == 2:
        return Auc(binary_auc(truth == positive, columns[0][kept]), counted)
    per_class = [binary_auc(truth == c, col[kept]) for c, col in zip(classes, columns, strict=True)]
    return Auc(float(np.mean(per_class)), counted)


def class_scores(rows: pa.Table) -> dict[str, Any]:
    """The score columns of log rows by class name, NaN where a row has none (an older file's,
    or a version's without scores beside one with)."""
    return {
        name.removeprefix(SCORE): rows.column(name).to_numpy(zero_copy_only=False)
        for name in rows.column_names
        if name.startswith(SCORE)
    }


def note(auc: Auc, labelled: int) -> str | None:
    """What to say of a version's ROC AUC over `labelled` rows: why it is null, or how many
    rows it counts when not all (None: nothing to say)."""
    if auc.reason is not None:
        return f"no ROC AUC, {auc.reason}"
    if auc.counted < labelled:
        return (
            f"ROC AUC counts {auc.counted} of {labelled} labelled predictions; the others were "
            "logged without class scores"
        )
    return None
