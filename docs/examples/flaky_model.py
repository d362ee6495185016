"""Register a broken version of the churn model for the tour: it predicts "stays" for everyone
and fails one predict call in `--every` (a bad deploy, a resource leak...), or answers `--delay`
seconds late (a slow dependency), so a canary of it is rolled back by the analysis.

    python docs/examples/flaky_model.py --every 10     # prints the version it registered
    python docs/examples/flaky_model.py --every 0 --delay 0.6    # never fails, 600 ms slow

It is an `mloop.PythonModel` (stored with its code): loading it runs that code, so whoever
serves it passes --trust.
"""

from __future__ import annotations

import argparse
from typing import Any

import mloop


class Flaky(mloop.PythonModel):
    """Predicts 0 for every row, raises on every `every`-th predict call (never with 0), and
    takes `delay` seconds more over each."""

    def __init__(self, every: int = 10, delay: float = 0.0) -> None:
        self.every = every
        self.delay = delay
        self.calls = 0

    def predict(self, batch: Any) -> Any:
        import time

        import numpy as np

        self.calls += 1
        if self.delay:
            time.sleep(self.delay)  # the slowness this version stands for
        if self.every and self.calls % self.every == 0:
            raise RuntimeError("out of memory (on purpose: this is the tour's broken version)")
        return np.zeros(len(batch), dtype=int)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=10, help="fail one call in N (10; 0 never)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds more per call (0)")
    parser.add_argument("--quiet", action="store_true", help="print only the version")
    args = parser.parse_args()
    if args.quiet:
        import warnings

        warnings.simplefilter("ignore")  # the needs-trust warning: the tour knows
    import pandas as pd

    rows = pd.read_csv("data/churn-holdout.csv").drop(columns=["churned"]).head(20)
    version = mloop.register_model(Flaky(args.every, args.delay), "churn", input_example=rows)
    print(version.ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
