"""`mloop models predict`: score a file with a version, through the server's signature checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mloop
from mloop.services.serving import batch


@pytest.fixture
def scored(project: Path) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """churn:1, a scikit-learn pipeline over two numbers and a category, and rows to score."""
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 70, n),
            "charges": rng.normal(70, 20, n).round(2),
            "contract": rng.choice(["monthly", "yearly"], n),
        }
    )
    label = ((frame.charges > 70) & (frame.contract == "monthly")).astype(int)
    model = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("numbers", StandardScaler(), ["tenure", "charges"]),
                        ("categories", OneHotEncoder(handle_unknown="ignore"), ["contract"]),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, label)
    expected = model.predict(frame)
    frame.to_csv(project / "train.csv", index=False)
    mloop.data.add("customers", ["train.csv"])
    with mloop.start_run("fit"):
        mloop.data.get("customers")  # the training data's profile knows the contracts
        mloop.register_model(model, "churn", input_example=frame.head(3))
    frame.to_csv(project / "rows.csv", index=False)
    return project, frame, expected


def test_a_csv_is_scored_into_a_csv_with_a_prediction_column(scored, cli) -> None:
    root, _, expected = scored
    done = cli("models", "predict", "churn:1", "-i", "rows.csv", "-o", "out/scored.csv")
    assert done.code == 0, done.err
    assert "predicted 300 rows with churn:1" in done.out
    written = pd.read_csv(root / "out/scored.csv")
    assert list(written.columns) == ["tenure", "charges", "contract", "prediction"]
    assert written.prediction.tolist() == expected.tolist()
    assert [p.name for p in (root / "out").iterdir()] == ["scored.csv"]  # no temporary left


def test_without_output_it_prints_mlflows_answer_and_reads_parquet_and_json(scored, cli) -> None:
    root, frame, expected = scored
    frame.to_parquet(root / "rows.parquet")
    (root / "rows.json").write_text(json.dumps({"dataframe_records": frame.to_dict("records")}))
    for name in ("rows.parquet", "rows.json"):
        done = cli("models", "predict", "churn:1", "-i", name)
        assert done.code == 0, done.err
        assert json.loads(done.out) == {"predictions": expected.tolist()}


def test_large_files_are_checked_and_predicted_in_chunks(scored) -> None:
    root, frame, expected = scored
    predictor = loaded(root)
    calls: list[int] = []
    original = predictor.predict

    def counting(data: Any) -> Any:
        calls.append(len(data))
        return original(data)

    predictor.predict = counting
    result = batch.predict_frame(predictor, frame, "rows.csv", chunk=128)
    assert calls == [128, 128, 44]
    assert result.predictions.tolist() == expected.tolist()


def test_the_scoring_service_scores_through_an_alias_and_reports_its_progress(scored) -> None:
    from contextlib import contextmanager

    from mloop.project import Project

    root, _, expected = scored
    heard: list[tuple[str, int]] = []
    chunks: list[int] = []

    @contextmanager
    def progress(label: str, rows: int) -> Any:
        heard.append((label, rows))
        yield chunks.append

    project = Project.open(root)
    project.models.set_alias("churn", 1, "champion")
    out = root / "scored.parquet"
    result = project.scorer.score("churn@champion", root / "rows.csv", out, progress=progress)
    assert (result.ref, result.rows, result.written) == ("churn:1", 300, out)
    assert heard == [("churn:1", 300)] and sum(chunks) == 300
    assert pd.read_parquet(out).prediction.tolist() == expected.tolist()
    assert result.predictions.tolist() == expected.tolist() and result.unknown == ()


def loaded(root: Path) -> Any:
    from mloop.project import Project

    opened = Project.open(root)
    try:
        return opened.models.load_predictor("churn:1")
    finally:
        opened.close()


@pytest.mark.parametrize(
    ("rows", "output", "message"),
    [
        ("nope.csv", None, "no file nope.csv"),
        ("rows.csv", "out.txt", "cannot write out.txt: unknown format .txt"),
        ("bad-type.csv", None, "bad-type.csv: column 'tenure' (row 1): expected an integer"),
        ("missing.csv", None, "missing.csv: missing column 'contract'"),
        ("empty.csv", None, "cannot read empty.csv"),
        ("pipeline.py", None, "unknown format .py"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    scored, cli, rows: str, output: str | None, message: str
) -> None:
    root, frame, _ = scored
    bad = frame.head(3).copy()
    bad["tenure"] = bad["tenure"].astype(float)
    bad.loc[1, "tenure"] = 1.5
    bad.to_csv(root / "bad-type.csv", index=False)
    frame.drop(columns="contract").to_csv(root / "missing.csv", index=False)
    (root / "empty.csv").write_text("")
    (root / "pipeline.py").write_text("print('hi')\n")
    before = sorted(p.name for p in root.iterdir())
    args = ["models", "predict", "churn:1", "-i", rows]
    done = cli(*args, *(["-o", output] if output else []))
    assert done.code != 0
    assert message in done.err
    assert "hint:" in done.err
    assert sorted(p.name for p in root.iterdir()) == before


def test_a_401_digit_integer_in_a_csv_is_a_one_line_error_naming_the_column(scored, cli) -> None:
    root, _, _ = scored
    text = (root / "rows.csv").read_text().splitlines()
    first = text[1].split(",")
    first[0] = "1" + "0" * 400
    (root / "big.csv").write_text("\n".join([text[0], ",".join(first), *text[2:5]]) + "\n")
    done = cli("models", "predict", "churn:1", "-i", "big.csv")
    assert done.code == 1
    assert "big.csv: column 'tenure' (row 0): 1000000…000 (401 digits) is out of range" in done.err
    assert "internal error" not in done.err and "Traceback" not in done.err


def test_a_category_training_never_saw_is_predicted_with_a_warning(scored, cli) -> None:
    root, frame, _ = scored
    rows = frame.head(4).copy()
    rows.loc[[1, 3], "contract"] = "weekly"
    rows.loc[2, "contract"] = "daily\r\nX-Injected: 1"
    rows.to_csv(root / "new.csv", index=False)
    done = cli("models", "predict", "churn:1", "-i", "new.csv")
    assert done.code == 0, done.err
    assert len(json.loads(done.out)["predictions"]) == 4
    assert done.err.splitlines() == [
        "warning: new.csv: categories training never saw (predicted anyway): column 'contract': "
        "'weekly' (2 rows), 'daily\\r\\nX-Injected: 1' (1 row)"
    ]
    again = cli("models", "predict", "churn:1", "-i", "rows.csv")
    assert again.code == 0 and again.err == ""


@pytest.fixture
def nullable(project: Path) -> tuple[Path, pd.DataFrame, Any]:
    """sex:1, a pipeline whose text column `sex` has missing values in training (nullable)."""
    rng = np.random.default_rng(2)
    n = 120
    frame = pd.DataFrame(
        {
            "mass": rng.normal(4000, 500, n).round(1),
            "sex": rng.choice(np.array(["male", "female", None], dtype=object), n),
        }
    )
    label = (frame.mass > 4000).astype(int)
    encode = ColumnTransformer(
        [
            ("mass", StandardScaler(), ["mass"]),
            ("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"]),
        ]
    )
    model = Pipeline([("encode", encode), ("classify", LogisticRegression())]).fit(frame, label)
    with mloop.start_run("fit"):
        version = mloop.register_model(model, "sex", input_example=frame)
    assert version.signature is not None and version.signature.inputs[1].nullable
    return project, frame, model


def test_empty_cells_in_a_nullable_text_column_are_scored_from_every_format(nullable, cli) -> None:
    root, frame, model = nullable
    frame.to_csv(root / "rows.csv", index=False)  # missing: an empty cell
    frame.to_parquet(root / "rows.parquet")
    frame.to_json(root / "rows.json", orient="records")  # missing: null
    expected = model.predict(pd.read_csv(root / "rows.csv")).tolist()
    assert pd.read_csv(root / "rows.csv")["sex"].isna().any()
    for name in ("rows.csv", "rows.parquet", "rows.json"):
        done = cli("models", "predict", "sex:1", "-i", name)
        assert done.code == 0, f"{name}: {done.err}"
        assert json.loads(done.out) == {"predictions": expected}, name


def test_an_empty_cell_where_the_column_is_not_nullable_is_said_plainly(scored, cli) -> None:
    root, frame, _ = scored
    rows = frame.head(3).copy()
    rows.loc[1, "contract"] = None
    rows.to_csv(root / "holes.csv", index=False)
    done = cli("models", "predict", "churn:1", "-i", "holes.csv")
    assert done.code == 1
    first = done.err.splitlines()[0]
    assert first == (
        "error: holes.csv: column 'contract' (row 1): got a missing value, expected string "
        "(the column is not nullable)"
    )
    assert "hint: `mloop models show churn:1` lists the inputs" in done.err
