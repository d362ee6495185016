"""A loaded model version as the model server sees it: the model, its signature, how it eats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mloop.domain.dataset import TableProfile
from mloop.domain.model import ModelVersion, Signature


class LoadedModel:
    """A Predictor over any object with a scikit-learn-style `predict` (what flavors load)."""

    def __init__(
        self,
        name: str,
        version: int,
        model: Any,
        signature: Signature | None = None,
        wants_frame: bool = False,
        categories: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.signature = signature
        self.wants_frame = wants_frame
        self.categories: Mapping[str, frozenset[str]] = dict(categories or {})
        # The model's class scores, for the prediction log, which asks for them when it
        # flushes (never while a client waits): None for a model that has none.
        self.scores = self._scores if _has_scores(model) else None

    @classmethod
    def of(
        cls, version: ModelVersion, model: Any, categories: Mapping[str, frozenset[str]]
    ) -> LoadedModel:
        """`model`, loaded from `version`, as the server feeds it: a frame when it knows its
        columns by name or its signature holds text, else an array."""
        signature = version.signature
        wants_frame = (
            getattr(model, "feature_names_in_", None) is not None
            or bool(getattr(model, "wants_frame", False))  # e.g. ONNX with an input per column
            or (signature is not None and not signature.all_numeric)
        )
        return cls(version.name, version.version, model, signature, wants_frame, categories)

    def predict(self, batch: Any) -> Any:
        import numpy as np

        return np.asarray(self.model.predict(batch))

    def _scores(self, batch: Any) -> tuple[list[Any], Any]:
        """Each row's score per class (`predict_proba`), and the classes the columns are: the
        model's `classes_` (scikit-learn's, a pipeline's last step's), else 0, 1, ... (an ONNX
        classifier's probabilities come in the order of its label indexes)."""
        import numpy as np

        scores = np.asarray(self.model.predict_proba(batch), dtype=np.float64)
        if scores.ndim != 2:
            raise ValueError(f"predict_proba answered {scores.ndim} dimensions, not 2")
        classes = getattr(self.model, "classes_", None)
        if classes is None or len(classes) != scores.shape[1]:
            return list(range(scores.shape[1])), scores
        return list(classes), scores


def _has_scores(model: Any) -> bool:
    """Whether `model` answers class scores: scikit-learn hides `predict_proba` where it
    cannot (a pipeline whose last step lacks it, an SVC without `probability=True`), and an
    ONNX model without a probabilities output raises AttributeError, so looking is asking."""
    try:
        return callable(getattr(model, "predict_proba", None))
    except Exception:  # a model's own property failing: no scores, never a failed load
        return False


def training_categories(
    signature: Signature | None, tables: Sequence[TableProfile]
) -> dict[str, frozenset[str]]:
    """Per text input, the values the training data held, where its profile knows them all: a
    categorical column whose most common values (`top`) cover every distinct one, in every
    table that has it (the rule the data validator uses for its category check).

    Example:
        >>> training_categories(version.signature, dataset.tables)  # doctest: +SKIP
        {'contract': frozenset({'monthly', 'yearly'})}
    """
    found: dict[str, frozenset[str]] = {}
    unknowable: set[str] = set()
    text = {c.name for c in signature.inputs if not c.numeric} if signature is not None else set()
    for table in tables:
        for column in table.columns:
            if column.name not in text:
                continue
            complete = column.distinct is not None and column.distinct <= len(column.top)
            if column.kind != "categorical" or not complete:
                unknowable.add(column.name)
                continue
            found[column.name] = found.get(column.name, frozenset()) | {v for v, _ in column.top}
    return {name: values for name, values in found.items() if name not in unknowable}
