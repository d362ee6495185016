"""The readiness check a version passes before it gets traffic: one predict on an example row,
built from the signature and the categories the training data held."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mloop.domain.model import ColumnSpec, Signature
from mloop.server.follower import warm
from mloop.services.serving.predictor import LoadedModel

SIGNATURE = Signature((ColumnSpec("contract", "string"), ColumnSpec("charges", "float64")))


def strict_model() -> LoadedModel:
    """A model whose encoder refuses a category it never saw, as some teams want."""
    frame = pd.DataFrame(
        {"contract": ["month-to-month", "one-year", "two-year"] * 4, "charges": range(12)}
    )
    encode = ColumnTransformer(
        [("contract", OneHotEncoder(handle_unknown="error"), ["contract"])],
        remainder="passthrough",
    )
    model = make_pipeline(encode, LogisticRegression()).fit(frame, [0, 1, 1, 0] * 3)
    known = {"contract": frozenset(frame["contract"])}
    return LoadedModel("churn", 1, model, SIGNATURE, wants_frame=True, categories=known)


def test_a_strict_model_is_judged_on_a_category_it_knows() -> None:
    warm(strict_model())  # before: the row said contract='text', and the model refused it


def test_the_same_model_still_fails_on_a_category_it_never_saw() -> None:
    strict = strict_model()
    with pytest.raises(ValueError, match="unknown categor"):
        strict.predict(pd.DataFrame({"contract": ["monthly"], "charges": [1.0]}))
