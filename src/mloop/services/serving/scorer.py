"""Scoring a file with a model version: `mloop models predict` as one service call.

The steps and their order are the point: a wrong output name and a wrong input fail before the
model is loaded (loading can take seconds), rows are checked and predicted in chunks
(`batch.predict_frame`), and the output appears whole or not at all (`batch.write_predictions`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.services.registry.models import ModelService
from mloop.services.serving.batch import output_format, predict_frame, read_rows, write_predictions
from mloop.services.serving.requests import UnknownCategory

# (the version scoring, e.g. "churn:3"; how many rows) -> a context whose value hears each
# chunk's row count: the CLI's progress bar.
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What scoring a file did: `predictions` are also in `written` when an output was given."""

    ref: str
    rows: int
    predictions: Any
    unknown: tuple[UnknownCategory, ...]  # categories training never saw, with their counts
    written: Path | None


def _no_progress(label: str, rows: int) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda count: None)


class BatchScorer:
    """Scores the rows of a file (.csv, .parquet, .json) with a registered model version."""

    def __init__(self, models: ModelService) -> None:
        self.models = models

    def score(
        self,
        ref: str,
        source: Path,
        out: Path | None = None,
        *,
        trust: bool = False,
        progress: Progress | None = None,
    ) -> BatchResult:
        """Predict every row of `source` with `ref` (`NAME:V` or `NAME@ALIAS`), checked as the
        model server checks a request; write the rows with their predictions to `out` if given.

        Example:
            >>> scorer.score("churn@champion", Path("new.csv")).rows  # doctest: +SKIP
            1000
        """
        if out is not None:
            output_format(out)  # a wrong name fails before any work
        version = self.models.get(ref)
        frame = read_rows(source, version.signature)  # and so does a wrong input, before loading
        predictor = self.models.load_predictor(version.ref, trust=trust)
        label = f"{predictor.name}:{predictor.version}"
        with (progress or _no_progress)(label, len(frame)) as advance:
            scored = predict_frame(predictor, frame, source.name, on_rows=advance)
        if out is not None:
            write_predictions(scored.predictions, frame, out)
        return BatchResult(label, len(frame), scored.predictions, scored.unknown, out)
