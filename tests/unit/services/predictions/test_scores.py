"""Class scores in the prediction log, computed when the writer flushes, on a real SQLite store
and artifact folder with real scikit-learn models: one column per class, equal to the fitted
model's `predict_proba`; a frame-fed pipeline and a model without scores; a model whose scoring
fails (rows kept, counted); a flush's scoring budget; files written before scores existed read
beside newer ones; and ROC AUC from them equal to scikit-learn's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from mloop.domain.feedback import Label
from mloop.domain.prediction import Window
from mloop.services.monitoring import accuracy, roc
from mloop.services.predictions import scoring
from mloop.services.predictions.log import PredictionLog
from mloop.services.predictions.reader import PredictionReader
from mloop.services.registry.loaded import LoadedModel
from mloop.store import open_artifact_store, open_metadata_store
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.metadata.protocol import MetadataStore

T0 = 1_790_000_000.0
NAMES = ("f0", "f1", "f2")
IDLE = {"flush_seconds": 3600.0, "flush_requests": 10**9}  # only close/flush write
RNG = np.random.default_rng(11)
X = RNG.normal(size=(200, 3))


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[MetadataStore, ArtifactStore]]:
    metadata = open_metadata_store(f"sqlite:///{tmp_path / 'mloop.db'}")
    yield metadata, open_artifact_store(str(tmp_path / "objects"))
    metadata.close()


def _loaded(model: Any, version: int = 1) -> LoadedModel:
    return LoadedModel("churn", version, model)


def _serve(plog: PredictionLog, loaded: LoadedModel, rows: Any, start: int = 0) -> list[Any]:
    """Each row as one request, as the server records it: inputs, answer, the model's scores."""
    answers = []
    for i in range(len(rows)):
        batch = rows[i : i + 1] if not hasattr(rows, "iloc") else rows.iloc[i : i + 1]
        answer = loaded.predict(batch)
        answers.append(answer[0])
        model = f"{loaded.name}:{loaded.version}"
        rid = f"r{start + i:03}"
        plog.record(
            "web", model, "stable", rid, batch, answer, T0 + start + i, NAMES, loaded.scores
        )
    return answers


def _read(stores: tuple[MetadataStore, ArtifactStore]) -> pa.Table:
    return PredictionReader(*stores).read("web", Window(since=T0)).table


def test_each_rows_scores_are_the_models_predict_proba(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    model = LogisticRegression().fit(X, X[:, 0] + X[:, 1] > 0)
    plog = PredictionLog(*stores, **IDLE)
    _serve(plog, _loaded(model), X[:50])
    plog.close()
    table = _read(stores)

    assert [c for c in table.column_names if c.startswith("score.")] == [
        "score.false",
        "score.true",
    ]
    assert table.schema.field("score.true").type == pa.float64()
    expected = model.predict_proba(X[:50])
    np.testing.assert_allclose(table.column("score.false").to_numpy(), expected[:, 0])
    np.testing.assert_allclose(table.column("score.true").to_numpy(), expected[:, 1])
    assert plog.unscored == 0


def test_a_pipeline_fed_a_frame_is_scored_by_class_name_and_a_model_without_scores_is_not(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    frame = pd.DataFrame({"plan": RNG.choice(["a", "b", "c"], 90), "x": RNG.normal(size=90)})
    target = np.where(frame["x"] > 0.5, "high", np.where(frame["plan"] == "a", "low", "mid"))
    prep = ColumnTransformer([("plan", OneHotEncoder(), ["plan"]), ("x", StandardScaler(), ["x"])])
    pipeline = make_pipeline(prep, LogisticRegression()).fit(frame, target)
    plain = SVC().fit(X, X[:, 0] > 0)  # no probability=True: no predict_proba
    plog = PredictionLog(*stores, **IDLE)
    _serve(plog, LoadedModel("churn", 1, pipeline, wants_frame=True), frame)
    assert _loaded(plain, 2).scores is None
    _serve(plog, _loaded(plain, 2), X[:10], start=100)
    plog.close()
    table = _read(stores)

    scored = table.filter(pa.compute.equal(table.column("model"), "churn:1"))
    expected = pipeline.predict_proba(frame)
    for n, name in enumerate(pipeline.classes_):
        np.testing.assert_allclose(scored.column(f"score.{name}").to_numpy(), expected[:, n])
    unscored = table.filter(pa.compute.equal(table.column("model"), "churn:2"))
    assert unscored.num_rows == 10 and unscored.column("score.high").null_count == 10


class Failing:
    """A classifier whose scoring raises (a bug in a user's model): its answers still count."""

    classes_ = np.array([0, 1])

    def predict(self, batch: Any) -> Any:
        return (np.asarray(batch)[:, 0] > 0).astype(int)

    def predict_proba(self, batch: Any) -> Any:
        raise RuntimeError("scores are broken")


def test_a_model_that_fails_to_score_is_logged_without_scores_and_said_once(
    stores: tuple[MetadataStore, ArtifactStore], caplog: pytest.LogCaptureFixture
) -> None:
    plog = PredictionLog(*stores, **IDLE)
    loaded = _loaded(Failing())
    _serve(plog, loaded, X[:20])
    plog.flush()
    _serve(plog, loaded, X[20:30], start=20)
    plog.close()
    table = _read(stores)

    assert table.num_rows == 30 and not any(c.startswith("score.") for c in table.column_names)
    assert plog.unscored == 30 and plog.dropped == 0
    said = [r for r in caplog.records if "failed to give class scores" in r.getMessage()]
    assert len(said) == 1 and "churn:1" in said[0].getMessage()


def test_a_flush_stops_scoring_when_its_budget_is_spent(
    stores: tuple[MetadataStore, ArtifactStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "CHUNK", 10)
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    loaded = _loaded(model)
    calls: list[int] = []

    def slow(batch: Any) -> Any:  # each chunk's call spends the whole budget
        calls.append(len(batch))
        found = loaded._scores(batch)
        plog.scoring.spend(60.0)
        return found

    plog = PredictionLog(*stores, **IDLE, score_seconds=60.0)
    for i in range(35):
        plog.record(
            "web",
            "churn:1",
            "stable",
            f"r{i:03}",
            X[i : i + 1],
            model.predict(X[i : i + 1]),
            T0 + i,
            NAMES,
            slow,
        )
    plog.close()
    table = _read(stores)

    assert calls == [10]  # one chunk, then the budget was gone
    column = table.column("score.true")
    assert column.null_count == 25 and plog.unscored == 25
    np.testing.assert_allclose(column.to_numpy()[:10], model.predict_proba(X[:10])[:, 1])


def test_scores_off_logs_none(stores: tuple[MetadataStore, ArtifactStore]) -> None:
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    plog = PredictionLog(*stores, **IDLE, scores=False)
    _serve(plog, _loaded(model), X[:5])
    plog.close()

    assert not any(c.startswith("score.") for c in _read(stores).column_names)


def test_files_from_before_scores_read_beside_scored_ones_and_auc_counts_the_scored(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    model = LogisticRegression().fit(X, X[:, 0] - X[:, 2] > 0)
    metadata, _ = stores
    old = PredictionLog(*stores, **IDLE, scores=False)  # as a server before scores existed
    _serve(old, _loaded(model), X[:60])
    old.close()
    new = PredictionLog(*stores, **IDLE)
    _serve(new, _loaded(model), X[60:160], start=60)
    new.close()
    truth = RNG.random(160) < 1 / (1 + np.exp(-(X[:160, 0] - X[:160, 2])))
    labels = [Label(f"r{i:03}", bool(v), T0 + 500, "test") for i, v in enumerate(truth)]
    metadata.feedback.add("web", labels)
    report = accuracy.report(*stores, "web", Window(since=T0))
    table = _read(stores)

    assert table.num_rows == 160 and table.column("score.true").null_count == 60
    [line] = report.versions
    assert line.labelled == 160 and line.metrics is not None
    expected = metrics.roc_auc_score(truth[60:], model.predict_proba(X[60:160])[:, 1])
    assert line.metrics["roc_auc"] == pytest.approx(expected, abs=1e-12)
    assert "churn:1 (stable): ROC AUC counts 100 of 160 labelled predictions" in report.notes[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_roc_auc_is_scikit_learns_binary_and_one_vs_rest_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.choice(["a", "b", "c"], 300)
    raw = rng.integers(0, 8, size=(300, 3)).astype(float)  # whole numbers: many ties
    raw[np.arange(300), (truth == "b") + 2 * (truth == "c")] += 2
    proba = raw / raw.sum(axis=1, keepdims=True)
    scores = {name: proba[:, n] for n, name in enumerate("abc")}

    found = roc.roc_auc(truth, scores, "c")
    assert found.value == pytest.approx(
        metrics.roc_auc_score(truth, proba, multi_class="ovr", average="macro"), abs=1e-12
    )
    two = truth != "a"
    binary = roc.roc_auc(truth[two], {k: v[two] for k, v in scores.items()}, "c")
    assert binary.value == pytest.approx(
        metrics.roc_auc_score(truth[two] == "c", proba[two, 2]), abs=1e-12
    )
    one = roc.roc_auc(np.array(["a", "a"]), scores, "a")
    assert (one.value, one.reason) == (None, roc.ONE_CLASS)
    none = roc.roc_auc(truth, {}, "c")
    assert (none.value, none.reason) == (None, roc.NO_SCORES)
    missing = roc.roc_auc(truth, {"a": proba[:, 0], "b": proba[:, 1]}, "c")
    assert missing.value is None and "no class 'c'" in str(missing.reason)
