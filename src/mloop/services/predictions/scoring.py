"""Class scores for the prediction log, computed by its writer when it flushes.

The server hands `PredictionLog.record` the model's `scores` function (`LoadedModel.scores`:
a batch -> its classes and a rows x classes array; None for a model without `predict_proba`),
and the writer calls it once per flush over the stacked rows of each version, in this process,
where the model is loaded already. Asking on the request path would add a second model call
to every answer, and deriving the answer from the scores would change it (an SVC's
Platt-scaled probabilities do not always agree with its `predict`).

Scoring never holds the log back: a flush spends at most `seconds` on it (half the flush
interval by default), in chunks of `CHUNK` rows that let the server's event loop run between
two calls. Rows past the budget, and the rows of a model whose scoring raised (said once per
model in the server's log), are logged without scores (null) and counted in `unscored`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from mloop.domain.prediction import score_column

if TYPE_CHECKING:
    from mloop.services.predictions.encode import Score

log = logging.getLogger("mloop.predictions")
CHUNK = 4096  # rows scored per model call: the loop runs between two calls


class Scoring:
    """The writer's scoring: a budget per flush, the rows it could not score, failures said.

    Example:
        >>> scoring = Scoring(seconds=5.0)
        >>> scoring.start()  # at each flush
        >>> score = scoring.of("churn:3", loaded.scores)  # doctest: +SKIP
        >>> score(batch, rows)  # doctest: +SKIP
        {'score.false': array([...]), 'score.true': array([...])}
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.unscored = 0  # rows of models with scores, logged without them
        self._left = 0.0
        self._failed: set[str] = set()  # models whose failure to score was said

    def start(self) -> None:
        """A new flush: its budget is whole again."""
        self._left = self.seconds

    def spend(self, seconds: float) -> None:
        self._left -= seconds

    def of(self, model: str, scorer: Any) -> Score:
        """`encode`'s `score` for `model`: its rows' scores by chunk while the flush's budget
        lasts (rows past it get none: null)."""
        import numpy as np

        def score(data: Any, rows: int) -> dict[str, Any]:
            columns: dict[str, Any] = {}
            done = 0
            while done < rows and self._left > 0:
                end = min(done + CHUNK, rows)
                chunk = data if (done, end) == (0, rows) else _slice(data, done, end)
                started = time.perf_counter()
                try:
                    classes, values = scorer(chunk)
                    if values.shape != (end - done, len(classes)):
                        raise ValueError(f"{values.shape} scores for {end - done} rows")
                except Exception:
                    self._say_failed(model)
                    break
                finally:
                    self.spend(time.perf_counter() - started)
                for n, name in enumerate(map(score_column, classes)):
                    if name not in columns:
                        columns[name] = np.full(rows, np.nan)
                    columns[name][done:end] = values[:, n]
                done = end
                time.sleep(0)  # the server's loop takes its turn between two chunks
            self.unscored += rows - done
            if not done:
                return {}
            if done < rows:  # the rows past the budget (or a failure) hold no score: null
                import pyarrow as pa

                return {n: pa.array(v, from_pandas=True) for n, v in columns.items()}
            return columns

        return score

    def _say_failed(self, model: str) -> None:
        if model not in self._failed:
            self._failed.add(model)
            log.exception(
                "prediction log: %s failed to give class scores; its rows are logged without "
                "them (said once)",
                model,
            )


def _slice(data: Any, start: int, end: int) -> Any:
    """Rows `start` to `end` of a batch as the model takes it (a DataFrame or an array)."""
    return data.iloc[start:end] if hasattr(data, "iloc") else data[start:end]
