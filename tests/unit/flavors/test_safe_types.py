"""mloop's audited list of types: the estimators people train load and predict with no trust
option; functions stay refused; tree-like objects whose indices a crafted file could point
anywhere are checked before the model is handed out."""

from __future__ import annotations

import functools
import importlib
import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    AdaBoostClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.linear_model import ElasticNet, LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import BernoulliNB, GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mloop.errors import NeedsTrust
from mloop.flavors import get_flavor
from mloop.flavors.safe_types import SAFE_TYPES
from mloop.flavors.sklearn import load_skops

RNG = np.random.default_rng(0)
ROWS = 160
FRAME = pd.DataFrame(
    {
        "a": RNG.normal(size=ROWS),
        "b": RNG.normal(size=ROWS),
        "c": RNG.choice(["x", "y", "z"], ROWS),
    }
)
FRAME.loc[::7, "a"] = np.nan  # real data has holes: imputers are part of the everyday model
FRAME.loc[::11, "c"] = None
LABEL = (FRAME["b"] > 0).astype(int)
TARGET = FRAME["b"] * 2 + 1
NUMBERS = FRAME[["b"]].assign(d=RNG.normal(size=ROWS))
COUNTS = NUMBERS.abs()


def _prepared(encoder: Any) -> ColumnTransformer:
    numbers = make_pipeline(SimpleImputer(), StandardScaler())
    categories = make_pipeline(SimpleImputer(strategy="most_frequent"), encoder)
    return ColumnTransformer([("n", numbers, ["a", "b"]), ("c", categories, ["c"])])


# name -> (estimator, features, target): every kind the issue lists, fitted on real-ish data
COMMON: dict[str, tuple[Callable[[], Any], pd.DataFrame, pd.Series]] = {
    "logistic": (LogisticRegression, NUMBERS, LABEL),
    "linear": (LinearRegression, NUMBERS, TARGET),
    "ridge": (Ridge, NUMBERS, TARGET),
    "elastic-net": (ElasticNet, NUMBERS, TARGET),
    "tree-classifier": (lambda: DecisionTreeClassifier(max_depth=4), NUMBERS, LABEL),
    "tree-regressor": (lambda: DecisionTreeRegressor(max_leaf_nodes=9), NUMBERS, TARGET),
    "forest-classifier": (lambda: RandomForestClassifier(n_estimators=5), NUMBERS, LABEL),
    "forest-regressor": (lambda: RandomForestRegressor(n_estimators=5), NUMBERS, TARGET),
    "extra-trees": (lambda: ExtraTreesRegressor(n_estimators=5), NUMBERS, TARGET),
    "adaboost": (lambda: AdaBoostClassifier(n_estimators=5), NUMBERS, LABEL),
    "gradient-boosting-classifier": (
        lambda: GradientBoostingClassifier(n_estimators=5),
        NUMBERS,
        LABEL,
    ),
    "gradient-boosting-regressor": (
        lambda: GradientBoostingRegressor(n_estimators=5),
        NUMBERS,
        TARGET,
    ),
    "hist-gradient-boosting-classifier": (
        lambda: HistGradientBoostingClassifier(max_iter=10),
        FRAME[["a", "b"]],
        LABEL,
    ),
    "hist-gradient-boosting-regressor": (
        lambda: HistGradientBoostingRegressor(max_iter=10),
        FRAME[["a", "b"]],
        TARGET,
    ),
    "imputer-scaler-onehot-pipeline": (
        lambda: Pipeline(
            [("p", _prepared(OneHotEncoder(handle_unknown="ignore"))), ("m", LogisticRegression())]
        ),
        FRAME,
        LABEL,
    ),
    "ordinal-encoder-hist-gradient-boosting": (
        lambda: Pipeline(
            [("p", _prepared(OrdinalEncoder())), ("m", HistGradientBoostingClassifier(max_iter=5))]
        ),
        FRAME,
        LABEL,
    ),
    "target-encoder-ridge": (
        lambda: Pipeline([("p", _prepared(TargetEncoder())), ("m", Ridge())]),
        FRAME,
        TARGET,
    ),
    "column-transformer-remainder": (
        lambda: Pipeline(
            [
                (
                    "p",
                    ColumnTransformer([("c", OneHotEncoder(), ["c"])], remainder=SimpleImputer()),
                ),
                ("m", RandomForestClassifier(n_estimators=3)),
            ]
        ),
        FRAME.fillna({"c": "x"}),
        LABEL,
    ),
    "knn-imputer-minmax": (
        lambda: make_pipeline(KNNImputer(), MinMaxScaler(), LogisticRegression()),
        FRAME[["a", "b"]],
        LABEL,
    ),
    "svc": (SVC, NUMBERS, LABEL),
    "linear-svc": (LinearSVC, NUMBERS, LABEL),
    "svr": (SVR, NUMBERS, TARGET),
    "knn-classifier": (KNeighborsClassifier, NUMBERS, LABEL),
    "knn-regressor-ball-tree": (
        lambda: KNeighborsRegressor(algorithm="ball_tree", metric="manhattan"),
        NUMBERS,
        TARGET,
    ),
    "mlp-classifier": (lambda: MLPClassifier(max_iter=30), NUMBERS, LABEL),
    "mlp-regressor-sgd": (lambda: MLPRegressor(solver="sgd", max_iter=30), NUMBERS, TARGET),
    "gaussian-nb": (GaussianNB, NUMBERS, LABEL),
    "bernoulli-nb": (BernoulliNB, NUMBERS, LABEL),
    "multinomial-nb": (MultinomialNB, COUNTS, LABEL),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", COMMON, ids=list(COMMON))
def test_common_estimators_load_and_predict_with_no_trust(name: str, tmp_path: Path) -> None:
    make, features, target = COMMON[name]
    model = make().fit(features, target)
    flavor = get_flavor("sklearn")
    meta = flavor.save(model, tmp_path)
    loaded = flavor.load(tmp_path, meta)  # no trust, no trusted_types
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))


def _functions() -> dict[str, tuple[Any, str]]:
    return {
        "os.system": (FunctionTransformer(func=os.system), "system"),
        "eval": (FunctionTransformer(func=eval), "builtins.eval"),
        "operator": (FunctionTransformer(func=operator.neg), "_operator.neg"),
        "partial": (FunctionTransformer(func=functools.partial(np.add, 1)), "functools.partial"),
        "numpy.load": (FunctionTransformer(func=np.load), "numpy"),
    }


@pytest.mark.parametrize("case", list(_functions()), ids=list(_functions()))
def test_a_model_holding_a_function_is_still_refused(case: str) -> None:
    transformer, named = _functions()[case]
    data = sio.dumps(make_pipeline(transformer, LogisticRegression()))
    with pytest.raises(NeedsTrust, match="off mloop's safe list") as err:
        load_skops(data)
    assert named in err.value.message
    assert err.value.hint == "if you trust where the model came from, pass trust=True"


def test_the_safe_list_holds_classes_only_never_a_function() -> None:
    for name in SAFE_TYPES:
        module, _, attribute = name.rpartition(".")
        found = getattr(importlib.import_module(module), attribute)
        assert isinstance(found, type), name
        assert module.split(".")[0] in ("numpy", "sklearn", "scipy"), name
        assert SAFE_TYPES[name].strip(), f"{name} needs its audit note"


def _fitted_forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=2, random_state=0).fit(NUMBERS, LABEL)


def _tree_nodes(model: Any, **changes: int) -> Any:
    tree = model.estimators_[1].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    for field, value in changes.items():
        nodes[field][0] = value
    tree.__setstate__({**state, "nodes": nodes})
    return model


def _hist_nodes(**changes: int) -> Any:
    model = HistGradientBoostingRegressor(max_iter=3).fit(NUMBERS, TARGET)
    nodes = model._predictors[1][0].nodes
    for field, value in changes.items():
        nodes[field][0] = value
    return model


def _kd_index() -> Any:
    model = KNeighborsClassifier().fit(NUMBERS, LABEL)
    state = list(model._tree.__getstate__())
    state[1] = state[1].copy()
    state[1][0] = 10**6  # the row the first neighbour lookup reads
    model._tree.__setstate__(tuple(state))
    return model


def _categorical_bins() -> Any:
    # A real categorical model holds a functools.partial (refused by name); a crafted file can
    # mark a feature categorical without one, and predict would then write bits where it says.
    model = HistGradientBoostingClassifier(max_iter=3).fit(NUMBERS, LABEL)
    model._bin_mapper.is_categorical_ = np.array([True, False])
    return model


CRAFTED: dict[str, tuple[Callable[[], Any], str]] = {
    "tree child out of range": (
        lambda: _tree_nodes(_fitted_forest(), left_child=10**6),
        "points outside the node array",
    ),
    "tree child pointing back": (
        lambda: _tree_nodes(_fitted_forest(), left_child=0),
        "back up the tree",
    ),
    "tree feature out of range": (
        lambda: _tree_nodes(_fitted_forest(), feature=7),
        "feature outside the model's 2 inputs",
    ),
    "hist-gradient-boosting child": (lambda: _hist_nodes(left=10**6), "outside the node array"),
    "hist-gradient-boosting feature": (lambda: _hist_nodes(feature_idx=9), "feature outside"),
    "k-d tree index": (_kd_index, "not a permutation of its rows"),
    "categorical bins": (_categorical_bins, "categorical"),
}


@pytest.mark.parametrize("case", list(CRAFTED), ids=list(CRAFTED))
def test_tree_like_content_is_checked_before_the_model_is_used(case: str) -> None:
    make, problem = CRAFTED[case]
    data = sio.dumps(make())
    with pytest.raises(NeedsTrust) as err:
        load_skops(data)
    assert problem in err.value.message
    assert "damaged or crafted" in err.value.message or "trust" in err.value.message


def test_trust_loads_what_the_lists_refuse() -> None:
    data = sio.dumps(make_pipeline(FunctionTransformer(operator.neg), LogisticRegression()))
    with pytest.raises(NeedsTrust):
        load_skops(data)
    loaded = load_skops(data, trust=True)
    assert isinstance(loaded, Pipeline)
