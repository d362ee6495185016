"""CLI cold start: whole-process wall time of mloop commands vs DVC's and MLflow's, and what
mloop imports to answer.

Every command runs as a fresh process; one warm-up each, then ROUNDS rounds in which every
command runs once (the order rotates each round), so all commands see the same machine
conditions. Ratios are medians of per-round ratios.

    .venv/bin/python bench/bench_cli.py --rounds 7 [--hyperfine]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import _common as c

NAME = "cli"
# mloop --help ≤ 2 × dvc --version; mloop runs list ≤ 1/8 × mlflow --version.
MAX_VS_DVC = 2.0
MAX_VS_MLFLOW = 1 / 8

# Must not be imported by `mloop --help` or `mloop runs list` (a stated requirement).
FORBIDDEN = ("pandas", "sqlalchemy.orm", "mloop.server", "fastapi", "uvicorn", "starlette")
# Worth naming when they appear (the heavy or optional libraries mloop depends on).
NOTABLE = (
    "numpy", "pyarrow", "pandas", "sqlalchemy", "alembic", "rich", "yaml", "pydantic",
    "fsspec", "blake3", "psycopg", "ray", "httpx", "ctypes", "concurrent.futures", "sqlite3",
    "logging", "subprocess", "importlib.metadata", "email", "uuid", "json",
)  # fmt: skip

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def commands(project: Path) -> dict[str, tuple[list[str | Path], Path]]:
    dvc = c.dvc_venv() / "bin" / "dvc"
    mlflow = c.mlflow_venv() / "bin" / "mlflow"
    mloop = c.mloop_exe()
    return {
        "python -c pass": ([c.project_python(), "-c", "pass"], project),
        "mloop --help": ([mloop, "--help"], project),
        "dvc --version": ([dvc, "--version"], project),
        "mloop runs list": ([mloop, "runs", "list"], project),
        "mlflow --version": ([mlflow, "--version"], project),
    }


def import_report(argv: list[str], cwd: Path) -> dict:
    """`python -X importtime` of an mloop command: modules imported and where the time goes."""
    script = c.mloop_exe()
    proc = subprocess.run(
        [str(c.project_python()), "-X", "importtime", str(script), *argv],
        cwd=cwd,
        env=c.bench_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mloop {' '.join(argv)} failed: {proc.stderr[-2000:]}")
    modules: list[str] = []
    top: list[tuple[int, str]] = []
    heaviest_self: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if not m:
            continue
        self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
        modules.append(name)
        heaviest_self.append((self_us, name))
        if indent == 1:  # a top-level import (importtime puts one space before depth 0)
            top.append((cum_us, name))
    found = set(modules)
    forbidden = sorted(m for m in found if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    notable = [n for n in NOTABLE if n in found]
    top.sort(reverse=True)
    heaviest_self.sort(reverse=True)
    mloop_modules = sorted(m for m in found if m == "mloop" or m.startswith("mloop."))
    return {
        "count": len(found),
        "total_ms": sum(us for us, _ in top) / 1000,
        "forbidden": forbidden,
        "notable": notable,
        "top": top[:10],
        "self": heaviest_self[:10],
        "mloop_modules": mloop_modules,
    }


def hyperfine(cmds: dict[str, tuple[list[str | Path], Path]], runs: int, work: Path) -> None:
    """Cross-check with hyperfine (not interleaved: hyperfine runs each command's batch in turn)."""
    out = work / "hyperfine.json"
    argv = ["hyperfine", "-N", "--warmup", "1", "--runs", str(runs), "--export-json", str(out)]
    for name, (cmd, _) in cmds.items():
        argv += ["-n", name, " ".join(str(a) for a in cmd)]
    subprocess.run(
        argv,
        cwd=next(iter(cmds.values()))[1],
        env=c.bench_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    data = json.loads(out.read_text())
    rows = [
        [r["command"], f"{r['median']:.3f}", f"{r['mean']:.3f}", f"{r['min']:.3f}–{r['max']:.3f}"]
        for r in data["results"]
    ]
    print(f"\nhyperfine cross-check (-N, 1 warm-up, {runs} runs, each command's runs in a row):")
    c.print_table(["command", "median s", "mean s", "min–max s"], rows)


def run(rounds: int = 7, use_hyperfine: bool = False, log=print) -> list[c.Result]:
    work = c.fresh_dir(c.WORK / "cli")
    project = work / "project"
    project.mkdir()
    c.run_timed([c.mloop_exe(), "init"], cwd=project)
    cmds = commands(project)
    log(f"-- cli: cold start, {rounds} interleaved rounds + 1 warm-up, project at {project}")

    # Correctness first: each command works, and the empty project lists no runs.
    listed = c.run_timed([c.mloop_exe(), "runs", "list", "--json"], cwd=project, capture=True)
    assert json.loads(listed.stdout) == [], f"runs list in an empty project: {listed.stdout!r}"
    for _name, (cmd, cwd) in cmds.items():  # warm-up (also compiles mloop's .pyc)
        c.run_timed(cmd, cwd=cwd)

    names = list(cmds)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    rss: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            cmd, cwd = cmds[n]
            p = c.run_timed(cmd, cwd=cwd)
            times[n].append(p.wall)
            cpu[n].append(p.cpu)
            rss[n].append(p.rss_mib)

    floor = times["python -c pass"]
    rows = [
        [
            n,
            f"{c.median(times[n]):.3f}",
            c.spread(times[n]),
            f"{c.median(cpu[n]):.3f}",
            f"{c.median(rss[n]):.0f}",
            f"{c.median([a / b for a, b in zip(times[n], floor, strict=True)]):.1f}",
        ]
        for n in names
    ]
    log("")
    c.print_table(
        ["command", "median s", "min–max s", "CPU s", "RSS MiB", "× python -c pass"], rows
    )

    def paired(a: str, b: str) -> list[float]:
        return [y / x for x, y in zip(times[a], times[b], strict=True)]

    vs_dvc = paired("mloop --help", "dvc --version")  # dvc time / mloop time
    vs_mlflow = paired("mloop runs list", "mlflow --version")
    log(
        f"mloop --help takes {1 / c.median(vs_dvc):.2f}× `dvc --version` (target ≤ {MAX_VS_DVC}×); "
        f"mloop runs list takes 1/{c.median(vs_mlflow):.1f} of `mlflow --version` "
        f"(target ≤ 1/{1 / MAX_VS_MLFLOW:.0f})"
    )

    failures = []
    for argv in (["--help"], ["runs", "list"]):
        rep = import_report(argv, project)
        label = "mloop " + " ".join(argv)
        log(
            f"\nimports of `{label}`: {rep['count']} modules, top-level imports "
            f"{rep['total_ms']:.0f} ms under -X importtime; notable: "
            f"{', '.join(rep['notable']) or '-'}"
        )
        log(
            "   heaviest top-level imports (cumulative ms): "
            + ", ".join(f"{name} {us / 1000:.1f}" for us, name in rep["top"][:8])
        )
        log(
            "   heaviest single modules (self ms): "
            + ", ".join(f"{name} {us / 1000:.1f}" for us, name in rep["self"][:8])
        )
        log(f"   mloop modules: {len(rep['mloop_modules'])}")
        if rep["forbidden"]:
            failures.append(f"`{label}` imports {', '.join(rep['forbidden'])}")
            log(f"   FORBIDDEN imports: {', '.join(rep['forbidden'])}")
        else:
            log(f"   none of {', '.join(FORBIDDEN)} imported: ok")

    if use_hyperfine:
        hyperfine(cmds, rounds, work)
    shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise AssertionError("; ".join(failures))

    mloop_help = c.median(times["mloop --help"])
    mloop_list = c.median(times["mloop runs list"])
    # Shown as mloop's time over the other's (per round), the way the targets are written.
    share_dvc = [1 / x for x in vs_dvc]
    return [
        c.Result(
            NAME,
            "mloop --help vs dvc --version",
            f"{mloop_help:.3f} s",
            f"{c.median(times['dvc --version']):.3f} s",
            c.median(vs_dvc),
            c.spread(vs_dvc, "{:.2f}"),
            1 / MAX_VS_DVC,
            f"mloop ≤ {MAX_VS_DVC:.0f}× dvc",
            display=f"mloop = {c.median(share_dvc):.2f}× dvc ({c.spread(share_dvc, '{:.2f}')})",
        ),
        c.Result(
            NAME,
            "mloop runs list vs mlflow --version",
            f"{mloop_list:.3f} s",
            f"{c.median(times['mlflow --version']):.3f} s",
            c.median(vs_mlflow),
            c.spread(vs_mlflow, "{:.1f}"),
            1 / MAX_VS_MLFLOW,
            f"mloop ≤ 1/{1 / MAX_VS_MLFLOW:.0f} mlflow",
            display=f"mloop = 1/{c.median(vs_mlflow):.1f} of mlflow "
            f"(1/{min(vs_mlflow):.1f}–1/{max(vs_mlflow):.1f})",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--hyperfine", action="store_true", help="also time with hyperfine")
    args = ap.parse_args(argv)
    dvc_py = c.dvc_venv() / "bin" / "python"
    mlflow_py = c.mlflow_venv() / "bin" / "python"
    c.header(
        "bench_cli",
        {
            "dvc": c.installed_version(dvc_py, "dvc"),
            "mlflow": c.installed_version(mlflow_py, "mlflow"),
        },
    )
    try:
        results = run(args.rounds, args.hyperfine)
    except AssertionError as exc:
        print(f"FAILED: {exc}")
        return 1
    print()
    return 1 if c.print_results(results) else 0


if __name__ == "__main__":
    sys.exit(main())
