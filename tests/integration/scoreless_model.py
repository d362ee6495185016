"""A classifier whose class scores fail (a bug in a user's model), served by
test_serve_scores.py: its answers must go out and be logged all the same, without scores."""

from __future__ import annotations

from typing import Any

import mloop


class BrokenScores(mloop.PythonModel):
    """Answers whether the first input is positive; `predict_proba` raises."""

    def predict(self, batch: Any) -> Any:
        import numpy as np

        return np.asarray(batch, dtype=float)[:, 0] > 0

    def predict_proba(self, batch: Any) -> Any:
        raise RuntimeError("scores are broken (on purpose)")
