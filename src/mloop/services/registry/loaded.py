"""A loaded model version as the model server sees it: the model, its signature, how it eats."""

from __future__ import annotations

from typing import Any

from mloop.domain.model import Signature


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
