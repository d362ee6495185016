"""What a model server serves: a loaded model version that predicts on a batch of rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mloop.domain.model import Signature


class Predictor(Protocol):
    """A model ready to answer: `predict` takes a 2-D batch (rows x signature inputs, a numpy
    array, or a pandas DataFrame when the model needs named or mixed-type columns) and returns
    one prediction per row (a numpy array, first dimension = rows)."""

    name: str
    version: int
    signature: Signature | None
    wants_frame: bool  # True: predict takes a DataFrame with the signature's columns
    # Per text input, every value training saw (when its data profile knows them all): a
    # value outside them still gets a prediction, with a warning.
    categories: Mapping[str, frozenset[str]]

    # Whatever this raises is the model's own failure (`ModelFailed`, a 5xx): the client's
    # mistakes are caught before it, by the signature checks of `requests.py`/`columns.py`.
    def predict(self, batch: Any) -> Any: ...


# The concrete Predictor lives with the registry that builds it (serving sits above it).
from mloop.services.registry.loaded import LoadedModel  # noqa: E402

__all__ = ["LoadedModel", "Predictor"]
