"""Batch scoring: the rows of a file through the same signature checks as the model server.

`mloop models predict churn@champion --input new.csv -o scored.csv` is what a nightly scoring
job runs; MLflow's counterpart is `mlflow models predict`. A file is read as the server reads
a body (a .csv as a `text/csv` request, a .json as a JSON body), then checked and predicted in
chunks by the server's `RequestReader`, so a large file never becomes one huge request, an
error names the file, the row and the column, and a value the server takes is taken here. The
output is written under a temporary name and renamed into place: a failed run leaves no
half-written file behind.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from mloop.domain.model import Signature
from mloop.errors import InvalidInput, NotFound, ValidationFailed
from mloop.services.serving.predictor import Predictor, failure
from mloop.services.serving.requests import RequestReader, UnknownCategory, jsonable, parse_body
from mloop.services.serving.tables import read_csv

FORMATS = (".csv", ".parquet", ".json")
CHUNK_ROWS = 10_000


def read_rows(path: Path, signature: Signature | None = None) -> Any:
    """A DataFrame from a CSV, a Parquet file, or JSON (a list of records, or an MLflow body);
    a CSV's text columns (by `signature`) are read as text.

    Example:
        >>> read_rows(Path("new.csv")).columns  # doctest: +SKIP
    """
    import pandas as pd

    if not path.is_file():
        raise NotFound(f"no file {path}", "give the path of a .csv, .parquet or .json file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, signature, str(path))  # its errors name the file
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".json":
            return _json_frame(parse_body(path.read_bytes()), path)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", _FIX) from None
    except InvalidInput as exc:  # from parse_body, which speaks of a request's body
        reason = exc.message.removeprefix("the body is ")
        raise InvalidInput(f"cannot read {path}: {reason}", _FIX) from None
    raise InvalidInput(f"cannot read {path}: unknown format {suffix or '(no suffix)'}", _FIX)


_FIX = "give a .csv (with a header row), a .parquet, or a .json list of records"


def _json_frame(payload: Any, path: Path) -> Any:
    import pandas as pd

    if isinstance(payload, dict):  # an MLflow body, as saved from a request
        if "dataframe_split" in payload:
            split = payload["dataframe_split"]
            return pd.DataFrame(split.get("data"), columns=split.get("columns"))
        for key in ("dataframe_records", "instances", "inputs"):
            if key in payload:
                payload = payload[key]
                break
    if isinstance(payload, dict):
        return pd.DataFrame(payload)
    if isinstance(payload, list) and all(isinstance(r, dict) for r in payload):
        return pd.DataFrame(payload)
    raise InvalidInput(f"cannot read {path}: expected a list of records (objects)", _FIX)


@dataclass(frozen=True, slots=True)
class Scored:
    """The predictions for every row, and the categories training never saw (all chunks)."""

    predictions: Any
    unknown: tuple[UnknownCategory, ...] = ()


def predict_frame(
    predictor: Predictor,
    frame: Any,
    where: str,
    chunk: int = CHUNK_ROWS,
    on_rows: Callable[[int], None] | None = None,
) -> Scored:
    """Predictions for every row of `frame`, checked against the signature chunk by chunk;
    `on_rows` hears how many rows each chunk predicted (the CLI's progress bar).

    Example:
        >>> predict_frame(loaded, frame, "new.csv").predictions  # doctest: +SKIP
        array([0, 1, 1])
    """
    if not len(frame):
        raise InvalidInput(f"{where} has no rows to predict")
    reader = RequestReader(predictor.signature, predictor.wants_frame, predictor.categories)
    parts: list[Any] = []
    unknown: Counter[tuple[str, str]] = Counter()
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start : start + chunk]
        label = where if len(frame) <= chunk else f"{where}, rows from {start}"
        try:
            batch = reader.frame(part, label)
        except ValidationFailed as exc:
            if exc.hint:
                raise
            hint = f"`mloop models show {predictor.name}:{predictor.version}` lists the inputs"
            raise ValidationFailed(exc.message, hint) from None
        for found in batch.unknown:
            unknown[found.column, found.value] += found.count
        try:
            parts.append(predictor.predict(batch.data))
        except Exception as exc:
            raise failure(predictor, exc, label) from exc
        if on_rows is not None:
            on_rows(len(part))
    counted = tuple(UnknownCategory(c, v, n) for (c, v), n in unknown.most_common())
    if isinstance(parts[0], np.ndarray):
        return Scored(np.concatenate(parts), counted)
    import pandas as pd

    return Scored(pd.concat(parts, ignore_index=True), counted)


def output_format(out: Path) -> str:
    """The output's format from its suffix; checked before any work is done."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(
            f"cannot write {out}: unknown format {suffix or '(no suffix)'}",
            "name the output .csv, .parquet or .json",
        )
    return suffix


def write_predictions(predictions: Any, frame: Any, out: Path, column: str = "prediction") -> None:
    """The input rows with a `prediction` column (.csv, .parquet), or MLflow's JSON (.json)."""
    suffix = output_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".json":
            body = {"predictions": jsonable(predictions)}
            temporary.write_bytes(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
        else:
            scored = frame.copy()
            if hasattr(predictions, "columns"):  # a model answering several columns per row
                for name in predictions.columns:
                    scored[f"{column}_{name}"] = predictions[name].to_numpy()
            else:
                scored[column] = np.asarray(predictions).tolist()
            if suffix == ".csv":
                scored.to_csv(temporary, index=False)
            else:
                scored.to_parquet(temporary, index=False)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
