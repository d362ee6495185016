"""What a model server serves: a loaded model version that predicts on a batch of rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mloop.domain.model import Signature
from mloop.errors import MloopError, ModelFailed, ValidationFailed

# What a model raises when it refuses an input it was given. With a signature the request was
# checked before the model ran, so these are the model's own bug; without one nothing checked
# the input, and a wrong shape or type is most likely the client's (a 4xx naming the cause).
INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


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


def failure(predictor: Predictor, exc: Exception, where: str = "") -> MloopError:
    """The error to report when `predictor.predict` raised `exc`: the model's failure (5xx)
    once the signature checked the input, the input's fault (422) when nothing could."""
    said = f"{type(exc).__name__}: {exc}"
    model = (
        f"{where}: {predictor.name}:{predictor.version}"
        if where
        else f"{predictor.name}:{predictor.version}"
    )
    if predictor.signature is None and isinstance(exc, INPUT_ERRORS):
        return ValidationFailed(
            f"{model} refused the input: {said}",
            "the model has no signature to check inputs against; send the columns and types "
            "it was trained on, or register it with an input example",
        )
    return ModelFailed(
        f"{model} failed to predict: {said}",
        "the model's own code raised on an input that passed its signature's checks; the "
        "traceback is in the server's log (--debug for mloop models predict)",
    )


# The concrete Predictor lives with the registry that builds it (serving sits above it).
from mloop.services.registry.loaded import LoadedModel  # noqa: E402

__all__ = ["LoadedModel", "Predictor"]
