"""Make the tour's labels: the true outcome of every request the endpoint answered, as it
would arrive days later from the business (here it is known already: the holdout's column).

    python docs/examples/labels.py answered.parquet data/churn-holdout.csv labels.csv

`answered.parquet` is `mloop monitor export`'s file (one row per answered row, its inputs in
`feature.NAME` columns); each answer is matched to the holdout row it was made from by those
inputs, and its `request_id` written beside the holdout's `churned`.
"""

from __future__ import annotations

import sys

import pandas as pd


def main() -> int:
    answered_path, holdout_path, out = sys.argv[1:4]
    answered = pd.read_parquet(answered_path)
    holdout = pd.read_csv(holdout_path)
    inputs = [c for c in holdout.columns if c != "churned"]
    answered = answered.rename(columns={f"feature.{c}": c for c in inputs})
    truth = answered.merge(holdout.drop_duplicates(inputs), on=inputs)
    labels = truth[["request_id", "churned"]].drop_duplicates("request_id")  # a shadow's too
    labels.to_csv(out, index=False)
    print(f"{len(labels)} labels for {answered['request_id'].nunique()} answered requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
