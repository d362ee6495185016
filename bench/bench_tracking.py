"""Tracking: N metric values in one run, mloop against MLflow on SQLite.

mloop logs with one `mloop.log_metric` call per value. MLflow is measured three ways (see
workers/track_mlflow.py): one synchronous `log_metric` per value (its default), asynchronous
logging, and one `log_batch` of all N values. Each side runs in its own venv's interpreter as a
fresh subprocess per round (workers/), in a fresh folder, and prints its own timing; the four
sides run in an order that rotates each round, after one untimed warm-up round each. Ratios are
medians of per-round ratios: the logging calls alone (values/s, mloop against MLflow per call),
and the whole run (start_run, N values, end) against each MLflow way.

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
# A whole mloop run (start_run, N per-call values, end) ≥ 10 × faster than MLflow's whole run
# with one log_batch of the same N values.
WHOLE_RUN_TARGET = 10.0
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


def one_mlflow(work: Path, python: Path, n: int, mode: str) -> dict:
    folder = c.fresh_dir(work / f"mlflow-{mode}")
    return c.run_json([python, WORKERS / "track_mlflow.py", str(n), mode], cwd=folder)


# MLflow's three ways of logging the same values (workers/track_mlflow.py explains each).
MLFLOW_MODES = ("call", "async", "batch")


def run(rounds: int = 7, values: int = 2000, log=print) -> list[c.Result]:
    mlflow_python = c.mlflow_venv(log) / "bin" / "python"
    work = c.WORK / "tracking"
    log(
        f"-- tracking: {values} metric values in one run; mloop log_metric per call against MLflow "
        f"per call, async and log_batch; {rounds} interleaved rounds + 1 warm-up"
    )
    one_mloop(work, values, verify=True)
    for mode in MLFLOW_MODES:
        one_mlflow(work, mlflow_python, values, mode)
    ml: list[dict] = []
    mf: dict[str, list[dict]] = {mode: [] for mode in MLFLOW_MODES}
    sides = ["mloop", *MLFLOW_MODES]
    for r in range(rounds):
        order = sides[r % len(sides) :] + sides[: r % len(sides)]  # rotate who goes first
        got: dict[str, dict] = {}
        for side in order:
            if side == "mloop":
                got[side] = one_mloop(work, values, verify=True)
            else:
                got[side] = one_mlflow(work, mlflow_python, values, side)
        a = got["mloop"]
        ml.append(a)
        for mode in MLFLOW_MODES:
            mf[mode].append(got[mode])
        whole = a["seconds"] + a["start_run_s"]
        log(
            f"   round {r + 1}: mloop {a['seconds'] * 1000:.1f} ms "
            f"(calls {a['calls_s'] * 1000:.1f} + end {a['end_s'] * 1000:.1f}; "
            f"whole run {whole * 1000:.0f}) | mlflow whole run: "
            + ", ".join(f"{m} {got[m]['whole_s']:.3f} s" for m in MLFLOW_MODES)
        )
    shutil.rmtree(work, ignore_errors=True)
    return _report(ml, mf, values, log)


def _whole(row: dict) -> float:
    """mloop's worker times start_run apart from the rest; MLflow's reports the whole run."""
    return row["whole_s"] if "whole_s" in row else row["seconds"] + row["start_run_s"]


def _report(ml: list[dict], mf: dict[str, list[dict]], values: int, log) -> list[c.Result]:
    def col(rows: list[dict], key: str) -> list[float]:
        return [row[key] for row in rows]

    def ms(xs: list[float], fmt: str = "{:.1f}") -> list[str]:
        return [f"{fmt.format(c.median(xs) * 1000)} ms", c.spread([x * 1000 for x in xs], fmt)]

    call = mf["call"]
    ratios = [b["seconds"] / a["seconds"] for a, b in zip(ml, call, strict=True)]
    ml_vps = [values / s for s in col(ml, "seconds")]
    mf_vps = [values / s for s in col(call, "seconds")]
    ml_whole = [_whole(a) for a in ml]
    whole_ratios = {
        mode: [_whole(b) / _whole(a) for a, b in zip(ml, mf[mode], strict=True)]
        for mode in MLFLOW_MODES
    }
    rows = [
        ["mloop: log_metric × N + leave `with` (all stored, run ended)", *ms(col(ml, "seconds"))],
        ["   of which the log_metric calls", *ms(col(ml, "calls_s"))],
        ["   of which leaving the block (flush + end)", *ms(col(ml, "end_s"))],
        ["mloop: start_run (code + environment capture)", *ms(col(ml, "start_run_s"))],
        ["mloop: whole run (start_run + N values + end)", *ms(ml_whole)],
        ["mloop: `import mloop`", *ms(col(ml, "import_s"), "{:.0f}")],
        ["MLflow: log_metric × N, the calls alone", *ms(col(call, "seconds"), "{:.0f}")],
    ]
    rows += [
        [f"MLflow: whole run, {mode}", *ms([_whole(b) for b in mf[mode]], "{:.0f}")]
        for mode in MLFLOW_MODES
    ]
    rows.append(["MLflow: `import mlflow`", *ms(col(call, "import_s"), "{:.0f}")])
    log("")
    c.print_table([f"case (N = {values})", "median", "min–max"], rows)
    log(
        f"values/s of the logging calls: mloop {c.median(ml_vps):,.0f}/s, MLflow per call "
        f"{c.median(mf_vps):,.0f}/s → {c.median(ratios):.0f}× ({c.spread(ratios, '{:.0f}')})"
    )
    for mode in MLFLOW_MODES:
        rs = whole_ratios[mode]
        log(
            f"whole run, mloop per call vs MLflow {mode}: {c.median(rs):.1f}× "
            f"({c.spread(rs, '{:.1f}')})"
        )
    log(
        f"verified: every mloop round stored all {values} values (steps 0..{values - 1}), "
        "read back by `mloop runs show --json` and the SDK in fresh processes; MLflow's workers "
        "read back their N values"
    )
    results = [
        c.Result(
            NAME,
            f"log_metric ×{values}, values/s",
            f"{c.median(ml_vps):,.0f}/s",
            f"{c.median(mf_vps):,.0f}/s",
            c.median(ratios),
            c.spread(ratios, "{:.0f}"),
            TARGET,
            f"≥ {TARGET:.0f}×",
        )
    ]
    labels = {"call": "per call", "async": "async", "batch": "log_batch"}
    for mode in MLFLOW_MODES:
        rs = whole_ratios[mode]
        target = WHOLE_RUN_TARGET if mode == "batch" else None
        results.append(
            c.Result(
                NAME,
                f"  whole run vs MLflow {labels[mode]}",
                f"{c.median(ml_whole) * 1000:.0f} ms",
                f"{c.median([_whole(b) for b in mf[mode]]) * 1000:.0f} ms",
                c.median(rs),
                c.spread(rs, "{:.1f}"),
                target,
                f"≥ {target:.0f}×" if target else "info",
            )
        )
    return results


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
