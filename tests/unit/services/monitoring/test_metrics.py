"""The accuracy metrics and the fairness measures give scikit-learn's numbers on the same
arrays: binary and multiclass, classes as numbers and as text, a class never predicted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics

from mloop.domain.prediction import class_name
from mloop.services.monitoring.accuracy import classification_metrics, regression_metrics
from mloop.services.registry.fairness import difference, group_rates, positive_class

RNG = np.random.default_rng(11)


def _expected(truth: np.ndarray, predicted: np.ndarray, positive: object) -> dict[str, float]:
    macro = {"average": "macro", "zero_division": 0}
    found = {
        "accuracy": metrics.accuracy_score(truth, predicted),
        "precision_macro": metrics.precision_score(truth, predicted, **macro),
        "recall_macro": metrics.recall_score(truth, predicted, **macro),
        "f1_macro": metrics.f1_score(truth, predicted, **macro),
    }
    if len(np.unique(np.concatenate([truth, predicted]))) <= 2:
        binary = {"pos_label": positive, "zero_division": 0}
        found |= {
            "precision": metrics.precision_score(truth, predicted, **binary),
            "recall": metrics.recall_score(truth, predicted, **binary),
            "f1": metrics.f1_score(truth, predicted, **binary),
        }
    return found


@pytest.mark.parametrize(
    ("truth", "predicted"),
    [
        (RNG.integers(0, 2, 500), RNG.integers(0, 2, 500)),
        (RNG.integers(0, 4, 500), RNG.integers(0, 4, 500)),  # multiclass
        (RNG.choice(["no", "yes"], 300), RNG.choice(["no", "yes"], 300)),  # text classes
        (RNG.choice(["a", "b", "c"], 300), RNG.choice(["a", "b"], 300)),  # c never predicted
        (np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])),  # the positive class never predicted
        (np.array([True, False, True]), np.array([True, True, False])),
    ],
    ids=["binary", "multiclass", "text", "unpredicted-class", "no-positive", "bool"],
)
def test_classification_metrics_are_scikit_learns(truth: np.ndarray, predicted: np.ndarray) -> None:
    positive = positive_class(truth.tolist())
    found = classification_metrics(truth, predicted, positive)
    expected = _expected(truth, predicted, positive)

    for name, value in expected.items():
        assert found[name] == pytest.approx(value, abs=1e-12), name
    if "precision" not in expected:  # more than two classes: no binary numbers
        assert found["precision"] is found["recall"] is found["f1"] is None
    assert found["roc_auc"] is None  # no scores given
    classes = np.unique(truth)
    raw = np.random.default_rng(len(truth)).random((len(truth), len(classes)))
    proba = raw / raw.sum(axis=1, keepdims=True)
    scores = {class_name(c): proba[:, n] for n, c in enumerate(classes)}
    scored = classification_metrics(truth, predicted, positive, scores)["roc_auc"]
    if len(classes) == 2:
        column = list(classes).index(positive)
        assert scored == pytest.approx(metrics.roc_auc_score(truth == positive, proba[:, column]))
    else:
        assert scored == pytest.approx(metrics.roc_auc_score(truth, proba, multi_class="ovr"))


def test_regression_metrics_are_scikit_learns() -> None:
    truth, predicted = RNG.normal(size=400) * 10, RNG.normal(size=400) * 10
    found = regression_metrics(truth, predicted)

    assert found["mae"] == pytest.approx(metrics.mean_absolute_error(truth, predicted))
    assert found["rmse"] == pytest.approx(math.sqrt(metrics.mean_squared_error(truth, predicted)))


def test_fairness_rates_are_selection_and_true_positive_rates_per_group() -> None:
    truth, predicted = RNG.integers(0, 2, 600), RNG.integers(0, 2, 600)
    groups = RNG.choice(["f", "m", "x"], 600)
    selection = group_rates("demographic_parity", predicted, groups, 1)
    opportunity = group_rates("equal_opportunity", predicted, groups, 1, truth)

    for group in ("f", "m", "x"):
        inside = groups == group
        assert selection[group] == pytest.approx(np.mean(predicted[inside] == 1))
        recall = metrics.recall_score(truth[inside], predicted[inside])
        assert opportunity[group] == pytest.approx(recall)
    assert difference(selection) == pytest.approx(max(selection.values()) - min(selection.values()))
    assert difference({}) == 0.0
    assert positive_class(["no", "yes"]) == "yes" and positive_class([2, 1, 0]) == 1
