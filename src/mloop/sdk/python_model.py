"""`mloop.PythonModel`: the base class for a model written in Python, stored with its code.

The class lives in the flavors layer (`mloop.flavors.python_model`), where the python flavor
saves and loads it; the SDK re-exports it so users write `class Churn(mloop.PythonModel)`.

    import mloop

    class Churn(mloop.PythonModel):
        artifacts = {"weights": "weights.npy"}

        def __init__(self, cut: float = 0.5) -> None:
            self.cut = cut

        def load_context(self, artifacts):
            self.weights = numpy.load(artifacts["weights"])

        def predict(self, batch):
            return (numpy.asarray(batch) @ self.weights > self.cut).astype(int)
"""

from __future__ import annotations

from mloop.flavors.python_model import PythonModel

__all__ = ["PythonModel"]
