"""Write a small sales table to play with: `python make_sales.py data/sales.csv [--seed N]`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    price = rng.uniform(5, 20, args.rows).round(2)
    promo = rng.integers(0, 2, args.rows)
    region = rng.choice(["north", "south", "east", "west"], args.rows)
    units = (120 - 4 * price + 15 * promo + rng.normal(0, 5, args.rows) + args.seed * 3).round()
    args.path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"price": price, "promo": promo, "region": region, "units": units})
    frame.to_csv(args.path, index=False)
    print(f"wrote {len(frame)} rows to {args.path}")


if __name__ == "__main__":
    main()
