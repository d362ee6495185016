"""Bias on live traffic: per group of a sensitive column, how often a version predicts the
positive class and how often it is right, and the two gaps a bias gate bounds.

The group of a request is its logged input `feature.COLUMN`. The measures are the registry's
(`services/registry/fairness.py`), so a number here means what it means at promotion, and the
bounds are the model's promotion gates (`models: NAME: gates: [demographic_parity(gender) <=
0.1]` in mloop.yaml): a column without a gate is measured and not judged.

- demographic parity difference: the gap in selection rates, over every answer of the window
  (it needs no label);
- equal opportunity difference: the gap in true-positive rates, over the labelled answers
  whose label is the positive class.

The columns are `bias_columns` from mloop.yaml and every column a served model's bias gates
name. Bias needs classes: a regression endpoint has none to measure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mloop.domain.gate import OPERATORS, BiasGate
from mloop.domain.names import ModelRef
from mloop.domain.prediction import FEATURE, PREDICTION, Window
from mloop.errors import InvalidInput
from mloop.services.monitoring.accuracy import SHADOW, Joined, join
from mloop.services.monitoring.accuracy import measure as accuracy_report
from mloop.services.registry.fairness import MEASURES, difference, group_rates

if TYPE_CHECKING:
    import pyarrow as pa

    from mloop.domain.policy import ModelPolicy
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

MISSING = "(missing)"


@dataclass(frozen=True, slots=True)
class Group:
    """One group's numbers: `requests` answered (rows), their `selection_rate`; `labelled`
    of them, the `accuracy` and `true_positive_rate` of those (None without a label)."""

    value: Any
    requests: int
    selection_rate: float
    labelled: int
    accuracy: float | None
    true_positive_rate: float | None


@dataclass(frozen=True, slots=True)
class Gap:
    """A fairness measure's difference, and the bound of the model's gate on it (if any)."""

    measure: str
    difference: float | None  # None: fewer than two groups had rows to compare
    bound: str | None  # as the gate writes it: "<= 0.1"
    within: bool | None  # None: no gate, or nothing to compare


@dataclass(frozen=True, slots=True)
class ColumnBias:
    column: str
    model: str
    role: str
    groups: tuple[Group, ...]
    gaps: tuple[Gap, ...]


@dataclass(frozen=True, slots=True)
class BiasReport:
    endpoint: str
    positive: Any
    columns: tuple[ColumnBias, ...]
    notes: tuple[str, ...] = ()

    def plain(self) -> dict[str, Any]:
        def one(found: ColumnBias) -> dict[str, Any]:
            return {
                "column": found.column,
                "model": found.model,
                "role": found.role,
                "groups": [
                    {
                        "value": g.value,
                        "requests": g.requests,
                        "selection_rate": g.selection_rate,
                        "labelled": g.labelled,
                        "accuracy": g.accuracy,
                        "true_positive_rate": g.true_positive_rate,
                    }
                    for g in found.groups
                ],
                **{
                    gap.measure: {
                        "difference": gap.difference,
                        "bound": gap.bound,
                        "within": gap.within,
                    }
                    for gap in found.gaps
                },
            }

        return {
            "endpoint": self.endpoint,
            "positive": self.positive,
            "columns": [one(c) for c in self.columns],
            "notes": list(self.notes),
        }


def monitored_columns(
    bias_columns: Sequence[str], policies: Mapping[str, ModelPolicy], models: Sequence[str]
) -> list[str]:
    """`bias_columns`, then the columns the bias gates of `models` (NAME:V) name, once each.

    Example:
        >>> monitored_columns(["gender"], {}, ["churn:3"])
        ['gender']
    """
    found = list(dict.fromkeys(bias_columns))
    for model in models:
        policy = policies.get(ModelRef.parse(model).name)
        for gate in policy.gates if policy is not None else ():
            if isinstance(gate, BiasGate) and gate.column not in found:
                found.append(gate.column)
    return found


def measure(
    joined: Joined, columns: Sequence[str], policies: Mapping[str, ModelPolicy]
) -> BiasReport | None:
    """The bias of each served version (shadows too) on each of `columns`; None when no column
    is monitored. A column the log lacks is named in `notes`, not an error: the rest is still
    measured and the server keeps serving."""
    if not columns:
        return None
    if joined.task != "classification":
        note = "bias compares classes; this endpoint's model answers numbers (a regression)"
        return BiasReport(joined.endpoint, None, (), (note,))
    import pyarrow.compute as pc

    logged, labelled = joined.logged, joined.labelled
    notes = []
    found = []
    for column in columns:
        name = FEATURE + column
        if name not in logged.column_names:
            notes.append(
                f"column {column!r} is not among the logged inputs of endpoint "
                f"{joined.endpoint!r}: its requests do not send it"
            )
            continue
        pairs = logged.group_by(["model", "role"]).aggregate([]).to_pylist()
        for model, role in sorted((p["model"], p["role"]) for p in pairs):
            same = pc.and_(pc.equal(logged["model"], model), pc.equal(logged["role"], role))
            mine = logged.filter(same)
            same = pc.and_(pc.equal(labelled["model"], model), pc.equal(labelled["role"], role))
            known = labelled.filter(same)
            found.append(_column(joined, column, model, role, mine, known, policies))
    if not any(c.role != SHADOW for c in found) and not notes:
        notes.append("no answer to measure")
    return BiasReport(joined.endpoint, joined.positive, tuple(found), tuple(notes))


def _column(
    joined: Joined,
    column: str,
    model: str,
    role: str,
    logged: pa.Table,
    labelled: pa.Table,
    policies: Mapping[str, ModelPolicy],
) -> ColumnBias:
    import numpy as np

    positive = joined.positive
    name = FEATURE + column
    groups = _groups(logged, name)
    predicted = _array(logged, PREDICTION)
    known_groups = _groups(labelled, name)
    known_predicted = _array(labelled, PREDICTION)
    truth = _array(labelled, "label")
    selection = group_rates("demographic_parity", predicted, groups, positive)
    opportunity = group_rates("equal_opportunity", known_predicted, known_groups, positive, truth)
    rows = []
    for value, rate in selection.items():
        inside = known_groups == value
        labelled_count = int(inside.sum())
        accuracy = (
            float(np.mean(truth[inside] == known_predicted[inside])) if labelled_count else None
        )
        rows.append(
            Group(
                value,
                int((groups == value).sum()),
                rate,
                labelled_count,
                accuracy,
                opportunity.get(value),
            )
        )
    gates = _gates(policies, model, column)
    gaps = []
    for measure, rates in zip(MEASURES, (selection, opportunity), strict=True):
        gap = difference(rates) if len(rates) >= 2 else None
        gate = gates.get(measure)
        bound = None if gate is None else f"{gate.op} {gate.threshold:g}"
        within = None
        if gate is not None and gap is not None:
            within = OPERATORS[gate.op](gap, gate.threshold)
        gaps.append(Gap(measure, gap, bound, within))
    return ColumnBias(column, model, role, tuple(rows), tuple(gaps))


def _array(table: pa.Table, name: str) -> Any:
    return table.column(name).to_numpy(zero_copy_only=False)


def _groups(table: pa.Table, name: str) -> Any:
    """A sensitive column's values as text (a group is a name, whatever its type), a missing
    value as a group of its own."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(table.column(name), pa.string())
    return pc.fill_null(text, MISSING).to_numpy(zero_copy_only=False)


def _gates(policies: Mapping[str, ModelPolicy], model: str, column: str) -> dict[str, BiasGate]:
    policy = policies.get(ModelRef.parse(model).name)
    if policy is None:
        return {}
    return {g.measure: g for g in policy.gates if isinstance(g, BiasGate) and g.column == column}


@dataclass(frozen=True, slots=True)
class FromFeedback:
    """`monitor status`'s `accuracy` and `bias` (None where there is nothing to show), and
    `notes` saying why."""

    accuracy: dict[str, Any] | None
    bias: dict[str, Any] | None
    notes: tuple[str, ...]


def from_feedback(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    endpoint: str,
    window: Window,
    logged: pa.Table,
    bias_columns: Sequence[str],
    policies: Mapping[str, ModelPolicy],
) -> FromFeedback:
    """Accuracy and bias of the window `logged` (as `PredictionReader.read` gave it), joined
    once. Labels monitoring cannot use (of the wrong type, a model answering several values
    per row) become a note, so the rest of the status still shows."""
    try:
        joined = join(metadata, artifacts, endpoint, window, logged)
    except InvalidInput as exc:
        return FromFeedback(None, None, (exc.message,))
    report = accuracy_report(joined, window)
    served = sorted(set(logged.column("model").to_pylist()))
    measured = measure(joined, monitored_columns(bias_columns, policies, served), policies)
    notes = tuple(report.notes) + (measured.notes if measured is not None else ())
    return FromFeedback(report.status(), None if measured is None else measured.plain(), notes)
