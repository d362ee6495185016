"""Drift: 100,000 × 20 numeric columns, reference against current, mloop against Evidently.

The research's protocol (perf-baselines.md §5): two tables of 100,000 rows × 20 float64
columns drawn from normal(0, 1) (seed 0), the current one with columns f0..f4 shifted by +0.5.
They are written once to bench/.work/drift as .npy files, which both sides load untimed. Each
side is a fresh process of its own venv per round (workers/drift_*.py): Evidently 0.7.23's
`Report([DataDriftPreset()]).run(cur, ref)` + `snapshot.dict()` in bench/.venvs/evidently, and
mloop's `domain.drift` in the project venv; each warms up once, then times one run. The two run
in an order that alternates each round. Ratios are medians of per-round ratios.

mloop is timed twice per round: **full** (both sides summarised, then compared: the same work
Evidently does each time, and the figure the target is about) and **window** (the reference
summarised once beforehand, as monitoring keeps it: the cost of each later check). Both must
give Evidently's verdict on every column. The **update** case adds 1,000 new rows of all 20
columns to windows already holding 1,000 / 1,000,000 / 100,000,000 rows and compares every
column again: its cost must not grow with the history and stay under 5 ms.

    .venv/bin/python bench/bench_drift.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import _common as c

NAME = "drift"
EVIDENTLY_PINS = ["evidently==0.7.23", "pandas==2.3.3"]  # 0.7.23 fails to import on pandas 3
TARGET = 20.0  # Evidently's time ÷ mloop's full time
UPDATE_LIMIT_S = 0.005
ROWS, COLUMNS, SHIFTED = 100_000, 20, 5
WORKERS = c.BENCH / "workers"

MAKE_DATA = f"""
import numpy as np, sys
rng = np.random.default_rng(0)
ref = rng.normal(size=({ROWS}, {COLUMNS}))
cur = rng.normal(size=({ROWS}, {COLUMNS}))
cur[:, :{SHIFTED}] += 0.5
np.save(sys.argv[1], np.ascontiguousarray(ref.T))
np.save(sys.argv[2], np.ascontiguousarray(cur.T))
"""


def evidently_venv(log=print):
    return c.ensure_venv("evidently", EVIDENTLY_PINS, log)


def run(rounds: int = 3, log=print) -> list[c.Result]:
    ev_python = evidently_venv(log) / "bin" / "python"
    work = c.fresh_dir(c.WORK / "drift")
    ref, cur = work / "ref.npy", work / "cur.npy"
    subprocess.run([str(c.project_python()), "-c", MAKE_DATA, ref, cur], check=True)
    log(
        f"-- drift: {ROWS:,} × {COLUMNS} normal columns, f0..f{SHIFTED - 1} shifted by +0.5; "
        f"Evidently DataDriftPreset vs mloop, {rounds} alternating rounds (each warms up once)"
    )
    ml: list[dict] = []
    ev: list[dict] = []
    for r in range(rounds):
        sides = ["mloop", "evidently"] if r % 2 == 0 else ["evidently", "mloop"]
        got = {}
        for side in sides:
            if side == "mloop":
                argv = [c.project_python(), WORKERS / "drift_mloop.py", ref, cur]
            else:
                argv = [ev_python, WORKERS / "drift_evidently.py", ref, cur]
            got[side] = c.run_json(argv)
        a, b = got["mloop"], got["evidently"]
        ml.append(a)
        ev.append(b)
        log(
            f"   round {r + 1}: mloop full {a['full_s'] * 1000:.0f} ms, window "
            f"{a['window_s'] * 1000:.0f} ms, update "
            + "/".join(f"{s * 1000:.2f}" for s in a["update_s"].values())
            + f" ms | Evidently {b['full_s']:.2f} s | verdicts "
            + ("same" if a["drifted"] == b["drifted"] else "DIFFER")
        )
    shutil.rmtree(work, ignore_errors=True)
    return _report(ml, ev, log)


def _report(ml: list[dict], ev: list[dict], log) -> list[c.Result]:
    full = [b["full_s"] / a["full_s"] for a, b in zip(ml, ev, strict=True)]
    window = [b["full_s"] / a["window_s"] for a, b in zip(ml, ev, strict=True)]
    same = all(a["drifted"] == b["drifted"] for a, b in zip(ml, ev, strict=True))
    gaps = [
        abs(x - y)
        for a, b in zip(ml, ev, strict=True)
        for x, y in zip(a["scores"], b["scores"], strict=True)
    ]
    flagged = [f"f{i}" for i, d in enumerate(ev[0]["drifted"]) if d]
    agree = "the same on every column in every round" if same else "DIFFER"
    log("")
    c.print_table(
        ["case", "median", "min–max"],
        [
            [
                "Evidently DataDriftPreset + snapshot.dict()",
                f"{c.median([b['full_s'] for b in ev]):.2f} s",
                c.spread([b["full_s"] for b in ev], "{:.2f}"),
            ],
            [
                "mloop full (both sides summarised + compared)",
                f"{c.median([a['full_s'] for a in ml]) * 1000:.0f} ms",
                c.spread([a["full_s"] * 1000 for a in ml], "{:.0f}"),
            ],
            [
                "mloop window (reference summarised before)",
                f"{c.median([a['window_s'] for a in ml]) * 1000:.0f} ms",
                c.spread([a["window_s"] * 1000 for a in ml], "{:.0f}"),
            ],
        ]
        + [
            [
                f"mloop update: +1,000 rows × 20 onto {int(h):,} rows",
                f"{c.median([a['update_s'][h] for a in ml]) * 1000:.2f} ms",
                c.spread([a["update_s"][h] * 1000 for a in ml], "{:.2f}"),
            ]
            for h in ml[0]["update_s"]
        ],
    )
    log(
        f"methods: mloop {ml[0]['method']}, Evidently {ev[0]['method']}; Evidently flagged "
        f"{', '.join(flagged) or 'nothing'}; verdicts {agree}; "
        f"largest score gap {max(gaps):.4f} (mloop's Wasserstein is read from 1,000 quantile bins)"
    )
    results = [
        c.Result(
            NAME,
            f"{ROWS // 1000}k × {COLUMNS} drift vs Evidently (full)",
            f"{c.median([a['full_s'] for a in ml]) * 1000:.0f} ms",
            f"{c.median([b['full_s'] for b in ev]):.2f} s",
            c.median(full) if same else 0.0,
            c.spread(full, "{:.0f}"),
            TARGET,
            f"≥ {TARGET:.0f}×, same verdicts",
            "" if same else "verdicts DIFFER",
        ),
        c.Result(
            NAME,
            "  reference summarised before (window only)",
            f"{c.median([a['window_s'] for a in ml]) * 1000:.0f} ms",
            f"{c.median([b['full_s'] for b in ev]):.2f} s",
            c.median(window),
            c.spread(window, "{:.0f}"),
            None,
            "info",
        ),
    ]
    worst = max(c.median([a["update_s"][h] for a in ml]) for h in ml[0]["update_s"])
    histories = ", ".join(
        f"{c.median([a['update_s'][h] for a in ml]) * 1000:.2f}" for h in ml[0]["update_s"]
    )
    results.append(
        c.Result(
            NAME,
            "update: +1,000 rows × 20 columns (1k/1M/100M history)",
            f"{histories} ms",
            "",
            UPDATE_LIMIT_S / worst,
            "",
            1.0,
            f"< {UPDATE_LIMIT_S * 1000:.0f} ms",
            f"worst {worst * 1000:.2f} ms",
        )
    )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    ev_python = evidently_venv() / "bin" / "python"
    c.header("bench_drift", {"evidently": c.installed_version(ev_python, "evidently")})
    results = run(args.rounds)
    print()
    return 1 if c.print_results(results) else 0


if __name__ == "__main__":
    sys.exit(main())
