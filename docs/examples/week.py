"""Make a week of the churn project's customers as the world is now: the tour's stand-in for the
labelled rows a warehouse lands every week, and for today's traffic.

    python docs/examples/week.py landing/week-50.csv --seed 50 --rows 300
    python docs/examples/week.py today.csv --seed 51 --rows 2000 --old-app 0.05

Rows come from the template's own generator (`mloop init --template classification`), then are
drawn again with more weight on month-to-month contracts and higher monthly charges: more
customers on short contracts and dearer plans, which moves both inputs (drift) while every
label still follows the same rule (a covariate shift, values inside the old ranges), so the
data passes the pipeline's validation and the registry's `data_validation` gate.
`--old-app SHARE` sends that share of month-to-month rows as `monthly`, the spelling of an old
version of the app: a category no training data holds, which a model must take in its stride.
"""

from __future__ import annotations

import argparse

import numpy as np

from mloop.templates import find


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the CSV file to write")
    parser.add_argument("--rows", type=int, default=300, help="rows to write (300)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (0)")
    parser.add_argument(
        "--old-app", type=float, default=0.0, help="share of month-to-month rows sent as 'monthly'"
    )
    args = parser.parse_args()
    pool = find("classification").make_data(args.rows * 4, args.seed)
    weight = np.where(pool["contract"] == "month-to-month", 2.0, 1.0) * (
        1.0 + 0.3 * (pool["monthly_charges"] - 70.0) / 50.0
    )
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(len(pool), args.rows, replace=False, p=weight / weight.sum())
    rows = pool.iloc[np.sort(picked)].reset_index(drop=True)
    if args.old_app:
        old = (rows["contract"] == "month-to-month") & (rng.random(len(rows)) < args.old_app)
        rows.loc[old, "contract"] = "monthly"
    rows.to_csv(args.out, index=False)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
