"""Evidently's side of bench_drift: `Report([DataDriftPreset()]).run(cur, ref)` and
`snapshot.dict()` (the research's protocol), timed after one warm-up, in this process. Prints
one JSON line with the per-column scores and verdicts Evidently reported.

    python drift_evidently.py REF.npy CUR.npy
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset


def frame(path: str) -> pd.DataFrame:
    columns = np.load(path, allow_pickle=False)
    return pd.DataFrame({f"f{i}": column for i, column in enumerate(columns)})


def run(ref: pd.DataFrame, cur: pd.DataFrame) -> dict:
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    return snapshot.dict()


def verdicts(result: dict, columns: list[str]) -> tuple[list[float], list[bool], list[str]]:
    """Per column: ValueDrift's score, and drifted as Evidently decides it (a distance at or
    above its threshold, a p-value below it)."""
    found: dict[str, tuple[float, bool, str]] = {}
    for metric in result["metrics"]:
        config = metric.get("config") or {}
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        method, threshold = str(config["method"]), float(config["threshold"])
        score = float(metric["value"])
        drifted = score < threshold if "p_value" in method else score >= threshold
        found[str(config["column"])] = (score, drifted, method)
    missing = [c for c in columns if c not in found]
    if missing:
        raise SystemExit(f"no ValueDrift for {missing} in Evidently's result")
    rows = [found[c] for c in columns]
    return [r[0] for r in rows], [r[1] for r in rows], sorted({r[2] for r in rows})


def main() -> None:
    ref, cur = frame(sys.argv[1]), frame(sys.argv[2])
    run(ref, cur)  # warm-up
    start = time.perf_counter()
    result = run(ref, cur)
    seconds = time.perf_counter() - start
    scores, drifted, methods = verdicts(result, list(ref.columns))
    print(json.dumps({"full_s": seconds, "scores": scores, "drifted": drifted, "method": methods}))


if __name__ == "__main__":
    main()
