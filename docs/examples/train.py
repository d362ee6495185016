"""A training script as a data scientist writes it: read a versioned dataset, log a run.

Run it from inside an mloop project after `mloop data add sales data/sales.csv`:

    python train.py --alpha 0.5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import mloop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--dataset", default="sales")
    args = parser.parse_args()

    with mloop.start_run("ridge", params={"alpha": args.alpha, "dataset": args.dataset}):
        frame = mloop.data.get(args.dataset).to_pandas()  # recorded as the run's input
        x = frame[["price", "promo"]].to_numpy(dtype=float)
        y = frame["units"].to_numpy(dtype=float)
        x1 = np.column_stack([x, np.ones(len(x))])
        # Ridge regression in closed form: (X'X + aI)^-1 X'y
        weights = np.linalg.solve(x1.T @ x1 + args.alpha * np.eye(3), x1.T @ y)
        for epoch in range(20):
            rmse = float(np.sqrt(np.mean((x1 @ weights - y) ** 2))) * (1 + 1 / (epoch + 1))
            mloop.log_metric("rmse", rmse, step=epoch)
        mloop.set_tag("model", "ridge")
        with tempfile.TemporaryDirectory() as folder:  # keep the working tree clean
            path = Path(folder) / "weights.txt"
            np.savetxt(path, weights)
            mloop.log_artifact(path, name="model/weights.txt")
        print(f"alpha={args.alpha} rmse={rmse:.3f}")


if __name__ == "__main__":
    main()
