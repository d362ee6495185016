"""Tracking ingest: N × `mloop.log_metric` in one run vs N × `mlflow.log_metric` (SQLite).

Each side runs in its own venv's interpreter as a fresh subprocess per round (workers/), in a fresh
folder, and prints its own timing; rounds interleave the two (alternating which goes first), after
one untimed warm-up round each. The ratio is the median of per-round ratios of values/s.

    .venv/bin/python bench/bench_tracking.py --rounds 7 [--values 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import _common as c

NAME = "tracking"
TARGET = 100.0  # mloop values/s ≥ 100 × MLflow's
WORKERS = c.BENCH / "workers"

VERIFY = """
import json, sys
from mloop.project import Project
run_id, n = sys.argv[1], int(sys.argv[2])
history = Project.open().tracking.metric_history(run_id, "loss")
print(json.dumps({"stored": len(history), "steps": [m.step for m in history]}))
"""


def verify_mloop(project: Path, run_id: str, n: int) -> None:
    """Fresh processes (so nothing can still be buffered) read back what mloop stored."""
    shown = c.run_timed(
        [c.mloop_exe(), "runs", "show", run_id, "--json"], cwd=project, capture=True
    )
    run = json.loads(shown.stdout)
    assert run["status"] == "finished", f"run status {run['status']!r}"
    loss = run["metrics"]["loss"]
    assert loss["step"] == n - 1, f"latest step {loss['step']} != {n - 1}"
    assert abs(loss["value"] - 1.0 / n) < 1e-12, f"latest value {loss['value']}"
    got = c.run_json([c.project_python(), "-c", VERIFY, run_id, str(n)], cwd=project)
    assert got["stored"] == n, f"mloop stored {got['stored']} of {n} values"
    assert sorted(got["steps"]) == list(range(n)), "steps are not 0..N-1"


def one_mloop(work: Path, n: int, verify: bool) -> dict:
    project = c.fresh_dir(work / "mloop")
    c.run_timed([c.mloop_exe(), "init"], cwd=project)  # project creation: not timed
    out = c.run_json([c.project_python(), WORKERS / "track_mloop.py", str(n)], cwd=project)
    if verify:
        verify_mloop(project, out["run_id"], n)
    return out


def one_mlflow(work: Path, python: Path, n: int) -> dict:
    folder = c.fresh_dir(work / "mlflow")
    return c.run_json([python, WORKERS / "track_mlflow.py", str(n)], cwd=folder)


def run(rounds: int = 7, values: int = 2000, log=print) -> list[c.Result]:
    mlflow_python = c.mlflow_venv(log) / "bin" / "python"
    work = c.WORK / "tracking"
    log(f"-- tracking: {values} × log_metric in one run, {rounds} interleaved rounds + 1 warm-up")
    one_mloop(work, values, verify=True)
    one_mlflow(work, mlflow_python, values)
    ml: list[dict] = []
    mf: list[dict] = []
    for r in range(rounds):
        pair = [
            lambda: one_mloop(work, values, verify=True),
            lambda: one_mlflow(work, mlflow_python, values),
        ]
        if r % 2:
            b, a = pair[1](), pair[0]()
        else:
            a, b = pair[0](), pair[1]()
        ml.append(a)
        mf.append(b)
        log(
            f"   round {r + 1}: mloop {a['seconds'] * 1000:.1f} ms "
            f"(calls {a['calls_s'] * 1000:.1f} + end {a['end_s'] * 1000:.1f}; "
            f"start_run {a['start_run_s'] * 1000:.0f}) | "
            f"mlflow {b['seconds']:.3f} s  → {b['seconds'] / a['seconds']:.0f}×"
        )
    shutil.rmtree(work, ignore_errors=True)

    def col(rows: list[dict], key: str) -> list[float]:
        return [row[key] for row in rows]

    ratios = [b["seconds"] / a["seconds"] for a, b in zip(ml, mf, strict=True)]
    ml_s, mf_s = col(ml, "seconds"), col(mf, "seconds")
    ml_vps = [values / s for s in ml_s]
    mf_vps = [values / s for s in mf_s]
    with_start = [a["seconds"] + a["start_run_s"] for a in ml]
    ratios_with_start = [
        b["seconds"] / (a["seconds"] + a["start_run_s"]) for a, b in zip(ml, mf, strict=True)
    ]
    rows = [
        [
            "mloop: log_metric × N + leave `with` (all stored, run ended)",
            f"{c.median(ml_s) * 1000:.1f} ms",
            c.spread([s * 1000 for s in ml_s], "{:.1f}"),
            f"{c.median(ml_vps):,.0f}",
        ],
        [
            "   of which the log_metric calls",
            f"{c.median(col(ml, 'calls_s')) * 1000:.1f} ms",
            c.spread([s * 1000 for s in col(ml, "calls_s")], "{:.1f}"),
            "",
        ],
        [
            "   of which leaving the block (flush + end)",
            f"{c.median(col(ml, 'end_s')) * 1000:.1f} ms",
            c.spread([s * 1000 for s in col(ml, "end_s")], "{:.1f}"),
            "",
        ],
        [
            "mloop: start_run (not in the figure above)",
            f"{c.median(col(ml, 'start_run_s')) * 1000:.0f} ms",
            c.spread([s * 1000 for s in col(ml, "start_run_s")], "{:.0f}"),
            "",
        ],
        [
            "mloop: `import mloop`",
            f"{c.median(col(ml, 'import_s')) * 1000:.0f} ms",
            c.spread([s * 1000 for s in col(ml, "import_s")], "{:.0f}"),
            "",
        ],
        [
            "MLflow SQLite: mlflow.log_metric × N",
            f"{c.median(mf_s):.3f} s",
            c.spread(mf_s),
            f"{c.median(mf_vps):,.0f}",
        ],
        [
            "MLflow: start_run (not timed, as in the research)",
            f"{c.median(col(mf, 'start_run_s')) * 1000:.0f} ms",
            c.spread([s * 1000 for s in col(mf, "start_run_s")], "{:.0f}"),
            "",
        ],
        [
            "MLflow: `import mlflow`",
            f"{c.median(col(mf, 'import_s')) * 1000:.0f} ms",
            c.spread([s * 1000 for s in col(mf, "import_s")], "{:.0f}"),
            "",
        ],
    ]
    log("")
    c.print_table([f"case (N = {values})", "median", "min–max", "values/s"], rows)
    log(
        f"ratio (median of per-round ratios): mloop {c.median(ratios):.0f}× MLflow's values/s "
        f"({c.spread(ratios, '{:.0f}')}); counting mloop's start_run too: "
        f"{c.median(ratios_with_start):.1f}× ({c.spread(ratios_with_start, '{:.1f}')})"
    )
    log(
        f"verified: every mloop round stored all {values} values (steps 0..{values - 1}), "
        "read back by `mloop runs show --json` and the SDK in fresh processes"
    )
    return [
        c.Result(
            NAME,
            f"log_metric ×{values}, values/s",
            f"{c.median(ml_vps):,.0f}/s",
            f"{c.median(mf_vps):,.0f}/s",
            c.median(ratios),
            c.spread(ratios, "{:.0f}"),
            TARGET,
            f"≥ {TARGET:.0f}×",
        ),
        c.Result(
            NAME,
            "  same, mloop incl. start_run",
            f"{c.median(with_start) * 1000:.0f} ms",
            f"{c.median(mf_s) * 1000:.0f} ms",
            c.median(ratios_with_start),
            c.spread(ratios_with_start, "{:.1f}"),
            None,
            "info",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--values", type=int, default=2000)
    args = ap.parse_args(argv)
    mlflow_python = c.mlflow_venv() / "bin" / "python"
    c.header("bench_tracking", {"mlflow": c.installed_version(mlflow_python, "mlflow")})
    results = run(args.rounds, args.values)
    print()
    return 1 if c.print_results(results) else 0


if __name__ == "__main__":
    sys.exit(main())
