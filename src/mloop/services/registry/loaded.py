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
