"""Accuracy from feedback: labels joined to the logged predictions of a window, per model
version and role (variant), and per time bucket.

The join is pyarrow's, on (`request_id`, `row`), over the window's rows only: the labels are
fetched by the window's request ids, so the cost grows with the window, never the history.

Classification or regression is decided by what the model answers: classes (text, true/false
or whole numbers) mean classification; floating-point numbers mean regression, unless every
prediction is a whole number and every label a whole number (a classifier whose classes were
logged as floats). Classification gives accuracy, precision, recall and F1 (of the positive
class when there are two classes, `positive_class`'s rule, and macro-averaged over every class
seen, as scikit-learn's `average="macro"`, `zero_division=0`) and ROC AUC from the class scores
the log holds (`roc.py`: null, with a note saying why, where no labelled row has scores or the
labels hold one class). Regression gives MAE and RMSE.

A shadow's rows are labelled too (its copy carries its primary's id): it gets its own line per
version, but the endpoint's overall numbers count only the answers clients were given.
`unknown` counts the labels that arrived during the window whose request the log does not hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mloop.domain.analysis import VersionStats
from mloop.domain.prediction import PREDICTION, Window
from mloop.errors import InvalidInput, NotFound
from mloop.services.monitoring import roc
from mloop.services.monitoring.labels import unlogged
from mloop.services.predictions.reader import PredictionReader
from mloop.services.registry.fairness import positive_class

if TYPE_CHECKING:
    import pyarrow as pa

    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

SHADOW = "shadow"
NICE_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 10_800.0, 21_600.0, 43_200.0, 86_400.0)
BUCKETS = 12  # about this many points "over time", whatever the window's span
WEEK = 7 * 86_400.0  # the bucket of spans too long for NICE_BUCKETS
NO_SCORES = (
    "the prediction log holds no class scores for the labelled predictions, so ROC AUC cannot "
    "be measured (models without predict_proba, or logged with predictions_scores: false)"
)
Metrics = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Joined:
    """A window's logged rows (`logged`) and those with a label (`labelled`: the same columns
    and `label`, converted to the prediction's type); how the labels were read."""

    endpoint: str
    logged: pa.Table
    labelled: pa.Table
    task: str  # "classification" or "regression"
    positive: Any  # the positive class (classification), else None
    unknown: int


@dataclass(frozen=True, slots=True)
class Line:
    """One version (and role), or one of its time buckets (`start` set): labelled predictions
    and their metrics (None without a label)."""

    model: str
    role: str
    labelled: int
    metrics: Metrics | None
    start: float | None = None


@dataclass(frozen=True, slots=True)
class AccuracyReport:
    endpoint: str
    window: str
    task: str
    positive: Any
    requests: int  # logged requests in the window, shadows' copies not counted
    labelled: int  # their labelled predictions
    unknown: int
    metrics: Metrics | None
    versions: tuple[Line, ...]
    over_time: tuple[Line, ...]
    bucket: float
    notes: tuple[str, ...] = field(default=())

    def plain(self) -> dict[str, Any]:
        def line(found: Line) -> dict[str, Any]:
            plain: dict[str, Any] = {"model": found.model, "role": found.role}
            if found.start is not None:
                plain["start"] = found.start
            return plain | {"labelled": found.labelled, "metrics": found.metrics}

        return {
            "endpoint": self.endpoint,
            "window": self.window,
            "task": self.task,
            "positive": self.positive,
            "requests": self.requests,
            "labelled": self.labelled,
            "unknown": self.unknown,
            "metrics": self.metrics,
            "versions": [line(v) for v in self.versions],
            "bucket": self.bucket,
            "over_time": [line(b) for b in self.over_time],
            "notes": list(self.notes),
        }

    def status(self) -> dict[str, Any] | None:
        """`monitor status`'s `accuracy`: the report, or None when no prediction of the window
        has a label yet."""
        return self.plain() if self.labelled else None


def join(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    endpoint: str,
    window: Window,
    logged: pa.Table,
    count_unknown: bool = True,
) -> Joined:
    """The labels of `logged` (a window of `endpoint`'s log, as `PredictionReader.read` gives
    it) joined to its rows.

    Raises:
        InvalidInput: the model answers several values per row, or labels of a type its
            predictions cannot be compared with.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if PREDICTION not in logged.column_names:
        outputs = [c for c in logged.column_names if c.startswith(PREDICTION + ".")]
        raise InvalidInput(
            f"endpoint {endpoint!r} answers {len(outputs)} values per row "
            f"({', '.join(outputs[:4])}); accuracy compares one prediction per row with its label",
            "measure a model that answers one value per row",
        )
    ids = pc.unique(logged.column("request_id")).to_pylist()
    labels = metadata.feedback.find(endpoint, ids)
    kind = logged.schema.field(PREDICTION).type
    values, task = _convert(endpoint, kind, logged.column(PREDICTION), [x.value for x in labels])
    schema = logged.schema
    keys = pa.table(
        {
            "request_id": pa.array([x.request_id for x in labels], schema.field("request_id").type),
            "row": pa.array([x.row for x in labels], schema.field("row").type),
            "label": values,
        }
    )
    labelled = logged.join(keys, ["request_id", "row"], join_type="inner")
    labelled = labelled.sort_by([("at", "ascending"), ("request_id", "ascending")])
    positive = None
    if task == "classification":
        seen = labelled.column("label") if labelled.num_rows else logged.column(PREDICTION)
        positive = positive_class(pc.unique(seen.drop_null()).to_pylist())
    unknown = 0
    if count_unknown:
        unknown = _unknown(metadata, artifacts, endpoint, window, logged)
    return Joined(endpoint, logged, labelled, task, positive, unknown)


def _convert(endpoint: str, kind: Any, predictions: Any, values: list[Any]) -> tuple[Any, str]:
    """The labels as an Arrow array comparable with the predictions, and the task."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = any(isinstance(v, str) for v in values)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if len(values) > sum(isinstance(v, str) for v in values):
            raise _wrong_type(endpoint, "numbers", "classes as text")
        return pa.array(values, kind), "classification"
    if texts:
        raise _wrong_type(endpoint, "text", "numbers")
    if pa.types.is_boolean(kind):
        if any(v not in (0, 1) for v in values):
            raise _wrong_type(endpoint, "numbers other than 0 and 1", "true or false")
        return pa.array([bool(v) for v in values], kind), "classification"
    if pa.types.is_integer(kind):
        if not all(float(v).is_integer() for v in values):
            raise _wrong_type(endpoint, "fractions", "whole-number classes")
        return pa.array([int(v) for v in values], pa.int64()), "classification"
    finite = predictions.drop_null()
    classes = len(finite) > 0 and pc.all(pc.equal(pc.floor(finite), finite)).as_py() is True
    classes = classes and all(isinstance(v, int) for v in values)  # JSON ints, not 1.0
    return pa.array([float(v) for v in values], pa.float64()), (
        "classification" if classes else "regression"
    )


def _wrong_type(endpoint: str, found: str, answers: str) -> InvalidInput:
    return InvalidInput(
        f"the labels of endpoint {endpoint!r} hold {found}, but its model answers {answers}",
        "post each label as what the model should have answered (its type); a second label "
        "for a request replaces the first",
    )


def _unknown(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    endpoint: str,
    window: Window,
    logged: pa.Table,
) -> int:
    """Labels that arrived during the window for requests the log does not hold."""
    import pyarrow.compute as pc

    start = window.since if window.since is not None else pc.min(logged.column("at")).as_py()
    arrived = metadata.feedback.received(endpoint, start, window.until)
    keys = {(x.request_id, x.row) for x in arrived}
    rids, rows = logged.column("request_id").to_pylist(), logged.column("row").to_pylist()
    seen = set(zip(rids, rows, strict=True))
    return len(unlogged(metadata, artifacts, endpoint, keys - seen))


def measure(joined: Joined, window: Window, bucket: float | None = None) -> AccuracyReport:
    """Accuracy per version and role, and over time (buckets of `bucket` seconds, aligned to
    multiples of it; by default about `BUCKETS` of them over the window's span)."""
    import pyarrow.compute as pc

    served = joined.logged.filter(pc.not_equal(joined.logged.column("role"), SHADOW))
    labelled = joined.labelled
    answered = labelled.filter(pc.not_equal(labelled.column("role"), SHADOW))
    step = bucket or _bucket(joined.logged)
    versions = []
    over_time = []
    notes: list[str] = []
    for model, role in _versions(joined.logged):
        same = pc.and_(
            pc.equal(labelled.column("model"), model), pc.equal(labelled.column("role"), role)
        )
        mine = labelled.filter(same)
        versions.append(Line(model, role, mine.num_rows, _metrics(joined, mine)))
        notes += _auc_notes(joined, mine, f"{model} ({role})")
        starts = pc.multiply(pc.floor(pc.divide(mine.column("at"), step)), step)
        for start in sorted(set(starts.to_pylist())):
            inside = mine.filter(pc.equal(starts, start))
            over_time.append(Line(model, role, inside.num_rows, _metrics(joined, inside), start))
    if notes and all(n.endswith(roc.NO_SCORES) for n in notes):
        notes = [NO_SCORES]  # said once for the window rather than once per version
    if not labelled.num_rows:
        where = f"endpoint {joined.endpoint!r} in {window.describe()}"
        notes.append(f"no prediction of {where} has a label yet")
    reused = _reused(labelled)
    if reused:
        notes.append(
            f"{reused} labelled request ids were answered more than once (a client reusing "
            "mloop-request-id); their label counts for each answer"
        )
    return AccuracyReport(
        joined.endpoint,
        window.describe(),
        joined.task,
        joined.positive,
        len(pc.unique(served.column("request_id"))),
        answered.num_rows,
        joined.unknown,
        _metrics(joined, answered),
        tuple(versions),
        tuple(over_time),
        step,
        tuple(notes),
    )


def _reused(labelled: pa.Table) -> int:
    """Labelled (request id, row) pairs a version answered more than once."""
    import pyarrow.compute as pc

    if not labelled.num_rows:
        return 0
    counts = labelled.group_by(["request_id", "row", "role"]).aggregate([("at", "count")])
    twice = counts.filter(pc.greater(counts.column("at_count"), 1))
    return len(pc.unique(twice.column("request_id")))


def _versions(table: pa.Table) -> list[tuple[str, str]]:
    pairs = table.group_by(["model", "role"]).aggregate([]).to_pylist()
    return sorted((p["model"], p["role"]) for p in pairs)


def _bucket(table: pa.Table) -> float:
    import pyarrow.compute as pc

    bounds = pc.min_max(table.column("at")).as_py()
    return bucket_step(bounds["min"] or 0.0, bounds["max"] or 0.0)


def bucket_step(first: float, last: float) -> float:
    """The length of the buckets over requests answered from `first` to `last`: the shortest
    of `NICE_BUCKETS` that makes at most `BUCKETS` of them (a week beyond). Accuracy over time
    and the report's timeline share it, so their points fall on the same times.

    Example:
        >>> bucket_step(0.0, 3600.0), bucket_step(0.0, 30.0)
        (300.0, 60.0)
    """
    span = last - first
    return next((step for step in NICE_BUCKETS if span / step <= BUCKETS), WEEK)


def _metrics(joined: Joined, rows: pa.Table) -> Metrics | None:
    if not rows.num_rows:
        return None
    truth = rows.column("label").to_numpy(zero_copy_only=False)
    predicted = rows.column(PREDICTION).to_numpy(zero_copy_only=False)
    if joined.task == "regression":
        return regression_metrics(truth, predicted)
    return classification_metrics(truth, predicted, joined.positive, roc.class_scores(rows))


def _auc_notes(joined: Joined, rows: pa.Table, version: str) -> list[str]:
    """Why a version's ROC AUC is null, or that it counts only part of its labelled rows."""
    if joined.task != "classification" or not rows.num_rows:
        return []
    truth = rows.column("label").to_numpy(zero_copy_only=False)
    said = roc.note(roc.roc_auc(truth, roc.class_scores(rows), joined.positive), rows.num_rows)
    return [f"{version}: {said}"] if said else []


def classification_metrics(
    truth: Any, predicted: Any, positive: Any, scores: dict[str, Any] | None = None
) -> Metrics:
    """Accuracy, precision, recall and F1 (of `positive` with two classes, else None; and
    macro-averaged), as scikit-learn computes them with `zero_division=0`; ROC AUC from
    `scores` (class name -> each row's score, `roc.roc_auc`), None without.

    Example:
        >>> import numpy as np
        >>> classification_metrics(np.array([1, 0, 1]), np.array([1, 1, 1]), 1)["recall"]
        1.0
    """
    import numpy as np

    classes = np.unique(np.concatenate([truth, predicted]))
    per_class = [_scores(truth == c, predicted == c) for c in classes]
    found: Metrics = {"accuracy": float(np.mean(truth == predicted))}
    binary = len(classes) <= 2
    precision, recall, f1 = _scores(truth == positive, predicted == positive)
    found |= {
        "precision": precision if binary else None,
        "recall": recall if binary else None,
        "f1": f1 if binary else None,
    }
    for n, name in enumerate(("precision_macro", "recall_macro", "f1_macro")):
        found[name] = float(np.mean([s[n] for s in per_class]))
    found["roc_auc"] = roc.roc_auc(truth, scores or {}, positive).value
    return found


def _scores(actual: Any, chosen: Any) -> tuple[float, float, float]:
    hits = float((actual & chosen).sum())
    precision = hits / chosen.sum() if chosen.sum() else 0.0
    recall = hits / actual.sum() if actual.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def regression_metrics(truth: Any, predicted: Any) -> Metrics:
    """MAE and RMSE.

    Example:
        >>> import numpy as np
        >>> regression_metrics(np.array([1.0, 3.0]), np.array([2.0, 3.0]))["mae"]
        0.5
    """
    import numpy as np

    errors = truth.astype(float) - predicted.astype(float)
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": math.sqrt(float(np.mean(errors**2))),
    }


def report(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    endpoint: str,
    window: Window,
    bucket: float | None = None,
) -> AccuracyReport:
    """The accuracy of `endpoint` in `window`: what `mloop monitor status` shows.

    Raises:
        NotFound: no request logged in the window (or no such endpoint).
    """
    found = PredictionReader(metadata, artifacts).read(endpoint, window)
    return measure(join(metadata, artifacts, endpoint, window, found.table), window, bucket)


def labelled_stats(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    endpoint: str,
    since: float | None,
    until: float | None,
    models: Sequence[str] = (),
) -> dict[str, VersionStats]:
    """Per model version (NAME:V), the labelled predictions of requests answered from `since`
    to `until` and how many were right: the canary's accuracy gate adds these to the
    endpoint's stats (`VersionStats.labelled`, `.correct`). Only classification has right
    answers: a regression's predictions count as labelled, none as correct. `models` limits
    the versions (all by default); nothing logged in the interval gives {}."""
    try:
        found = PredictionReader(metadata, artifacts).read(endpoint, Window(since, until))
    except NotFound:
        return {}
    joined = join(metadata, artifacts, endpoint, Window(since, until), found.table, False)
    import pyarrow.compute as pc

    rows = joined.labelled
    stats: dict[str, VersionStats] = {}
    for model in sorted(set(rows.column("model").to_pylist())):
        if models and model not in models:
            continue
        mine = rows.filter(pc.equal(rows.column("model"), model))
        correct = 0
        if joined.task == "classification":
            right = pc.equal(mine.column("label"), mine.column(PREDICTION))
            correct = int(pc.sum(right.cast("int64")).as_py() or 0)
        stats[model] = VersionStats(labelled=mine.num_rows, correct=correct)
    return stats
