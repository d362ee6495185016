"""Run every benchmark, print a summary of ratios, exit non-zero if a target is missed.

    make bench                                  # = .venv/bin/python bench/run_all.py
    .venv/bin/python bench/run_all.py --only cli,tracking --rounds 5

A benchmark that cannot run (e.g. an mloop command not written yet) is SKIPPED and counts as a
miss: a target is met only when it was measured. Competitor venvs are created on first use
under bench/.venvs (one-off, about a minute); scratch data lives in bench/.work and is removed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import _common as c
import bench_cli
import bench_data
import bench_drift
import bench_endpoints
import bench_pipelines
import bench_serving
import bench_tracking
import bench_triggers

BENCHES = ("cli", "tracking", "data", "pipelines", "serving", "endpoints", "drift", "triggers")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    ap.add_argument("--rounds", type=int, default=7, help="rounds for cli, tracking and triggers")
    ap.add_argument("--data-rounds", type=int, default=5, help="rounds for 10k files and status")
    ap.add_argument("--data-rounds-big", type=int, default=3, help="rounds for the 1 GiB file")
    ap.add_argument("--serving-rounds", type=int, default=3, help="rounds for serving")
    ap.add_argument("--serving-seconds", type=int, default=10, help="wrk seconds per load level")
    ap.add_argument("--endpoints-rounds", type=int, default=3, help="rounds for endpoints")
    ap.add_argument(
        "--endpoints-window", type=int, default=6, help="wrk seconds per blue/green window"
    )
    ap.add_argument("--drift-rounds", type=int, default=3, help="rounds for drift")
    ap.add_argument("--hyperfine", action="store_true", help="cli: also time with hyperfine")
    args = ap.parse_args(argv)
    only = [b for b in args.only.split(",") if b]
    unknown = set(only) - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    # Venvs first, so their one-off install is not interleaved with timings.
    mlflow_py = c.mlflow_venv() / "bin" / "python"
    dvc_py = c.dvc_venv() / "bin" / "python"
    c.header(
        "mloop benchmarks",
        {
            "mlflow": c.installed_version(mlflow_py, "mlflow"),
            "dvc": c.installed_version(dvc_py, "dvc"),
            "dvc-data": c.installed_version(dvc_py, "dvc-data"),
            "hyperfine": c.tool_version(["hyperfine", "--version"]),
            "git": c.tool_version(["git", "--version"]),
            "wrk": c.tool_version(["wrk", "--version"]),
        },
    )
    results: list[c.Result | c.Skipped] = []
    started = time.perf_counter()
    for name in only:
        print()
        t0 = time.perf_counter()
        try:
            if name == "cli":
                results += bench_cli.run(args.rounds, args.hyperfine)
            elif name == "tracking":
                results += bench_tracking.run(args.rounds)
            elif name == "data":
                results += bench_data.run(rounds_big=args.data_rounds_big, rounds=args.data_rounds)
            elif name == "pipelines":
                results += bench_pipelines.run(args.data_rounds)
            elif name == "serving":
                results += bench_serving.run(args.serving_rounds, args.serving_seconds)
            elif name == "endpoints":
                results += bench_endpoints.run(
                    args.endpoints_rounds, args.serving_seconds, args.endpoints_window
                )
            elif name == "drift":
                results += bench_drift.run(args.drift_rounds)
            elif name == "triggers":
                results += bench_triggers.run(args.rounds)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            results.append(c.Skipped(name, "(whole benchmark)", f"FAILED: {exc}"[:80]))
        print(f"# {name}: {time.perf_counter() - t0:.0f} s")

    print(
        f"\n== summary (medians; ratios are medians of per-round ratios; "
        f"{time.perf_counter() - started:.0f} s in all) =="
    )
    bad = c.print_results(results)
    if bad:
        print(f"\n{bad} target(s) missed or not measured")
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
