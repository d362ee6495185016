"""What a model server serves: a loaded model version that predicts on a batch of rows."""

from __future__ import annotations

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

    def predict(self, batch: Any) -> Any: ...


class LoadedModel:
    """A Predictor over any object with a scikit-learn-style `predict` (what flavors load)."""

    def __init__(
        self,
        name: str,
        version: int,
        model: Any,
        signature: Signature | None = None,
        wants_frame: bool = False,
    ) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.signature = signature
        self.wants_frame = wants_frame

    def predict(self, batch: Any) -> Any:
        import numpy as np

        return np.asarray(self.model.predict(batch))
