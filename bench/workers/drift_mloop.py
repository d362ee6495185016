"""mloop's side of bench_drift: per-column drift of CUR against REF (.npy files, columns as
rows), timed after one warm-up, in this process. Prints one JSON line.

    python drift_mloop.py REF.npy CUR.npy
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from mloop.domain import drift as d


def full(ref: np.ndarray, cur: np.ndarray) -> list[d.DriftResult]:
    """Both sides summarised, then compared: what Evidently does on every run."""
    refs = [d.reference_summary(column) for column in ref]
    return [d.drift(r, d.summarise(column, r.edges)) for r, column in zip(refs, cur, strict=True)]


def window(refs: list[d.FeatureSummary], cur: np.ndarray) -> list[d.DriftResult]:
    """The reference summarised once before (as monitoring keeps it): the window's side only."""
    return [d.drift(r, d.summarise(column, r.edges)) for r, column in zip(refs, cur, strict=True)]


def update(refs: list[d.FeatureSummary], history: int, rng: np.random.Generator) -> float:
    """Median seconds to add 1,000 new rows of every column to windows that already hold
    `history` rows each and compare every column again (20 updates in a row)."""
    base = min(history, 1_000_000)
    running = [d.summarise(rng.normal(size=base), r.edges) for r in refs]
    first = running
    for _ in range(history // base - 1):  # a longer history: the same rows counted again
        running = [w + f for w, f in zip(running, first, strict=True)]
    assert all(w.rows == history for w in running)
    times = []
    for _ in range(20):
        rows = rng.normal(size=(len(refs), 1000))
        start = time.perf_counter()
        running = [
            w + d.summarise(new, r.edges) for w, new, r in zip(running, rows, refs, strict=True)
        ]
        verdicts = [d.drift(r, w) for r, w in zip(refs, running, strict=True)]
        times.append(time.perf_counter() - start)
        assert len(verdicts) == len(refs)
    return float(np.median(times))


def main() -> None:
    ref = np.load(sys.argv[1], allow_pickle=False)
    cur = np.load(sys.argv[2], allow_pickle=False)
    full(ref, cur)  # warm-up: imports, first calls
    start = time.perf_counter()
    results = full(ref, cur)
    full_s = time.perf_counter() - start
    refs = [d.reference_summary(column) for column in ref]
    window(refs, cur)
    start = time.perf_counter()
    window(refs, cur)
    window_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    updates = {str(h): update(refs, h, rng) for h in (1_000, 1_000_000, 100_000_000)}
    print(
        json.dumps(
            {
                "full_s": full_s,
                "window_s": window_s,
                "update_s": updates,
                "method": sorted({str(r.method) for r in results}),
                "scores": [r.score for r in results],
                "drifted": [r.drifted for r in results],
            }
        )
    )


if __name__ == "__main__":
    main()
