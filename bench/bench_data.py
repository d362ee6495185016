"""Data versioning: `mloop data add` / `mloop data status` vs `dvc add` / `dvc status`.

Protocol (shared/research/perf-baselines.md §4): random data is written once per run under
bench/.work/data; every round makes a fresh DVC repo (`git init` + `dvc init`) and a fresh mloop
project (`mloop init`), moves the data in by rename (so each tool's per-repo hash cache is empty
and every round is a true first add), times the add as a whole process, and moves the data back.
The two tools alternate which goes first. Dirty pages are written back (sync) outside the timed
region before every timed command. Page cache warm throughout.

    (a) one 1 GiB file                   3 rounds   target: mloop ≥ 5× faster
    (b) 10,000 files × 20 KiB            5 rounds   target: mloop ≥ 3× faster
    (c) status, nothing changed, on (b)  1 warm-up + 5 rounds   target: mloop ≥ 5× faster

Beside each wall-clock ratio (the target) the log gives the ratio of CPU time (user + system, from
wait4). On a machine other work is loading, CPU time moves far less than wall time, so it is the
figure to compare two versions of mloop by; it is not the target (DVC runs several threads, so
its CPU time exceeds its wall time).

    .venv/bin/python bench/bench_data.py [--cases big,small,status] [--rounds-big 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import _common as c

NAME = "data"
TARGET_BIG = 5.0
TARGET_SMALL = 3.0
TARGET_STATUS = 5.0
BIG_BYTES = 1 << 30
SMALL_COUNT = 10_000
SMALL_BYTES = 20 << 10
CHUNK = 16 << 20
SETTLE_SECONDS = 10.0


def mloop_data_available() -> str | None:
    """None when `mloop data add` and `mloop data status` exist, else why not."""
    for sub in ("add", "status"):
        p = c.run_timed([c.mloop_exe(), "data", sub, "--help"], check=False, capture=True)
        if p.returncode != 0:
            return f"`mloop data {sub}` not available yet"
    return None


# --- data ------------------------------------------------------------------------------------


def make_big(path: Path) -> None:
    if path.exists() and path.stat().st_size == BIG_BYTES:
        return
    with open(path, "wb") as f:
        for _ in range(BIG_BYTES // CHUNK):
            f.write(os.urandom(CHUNK))


def make_small(folder: Path) -> None:
    if folder.is_dir() and len(os.listdir(folder)) == SMALL_COUNT:
        return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i in range(SMALL_COUNT):
        (folder / f"f{i:05d}.bin").write_bytes(os.urandom(SMALL_BYTES))


# --- one add per tool ------------------------------------------------------------------------


def dvc_repo(folder: Path, dvc: Path) -> Path:
    c.fresh_dir(folder)
    c.run_timed(["git", "init", "-q"], cwd=folder)
    c.run_timed([dvc, "init", "-q"], cwd=folder)
    return folder


def mloop_project(folder: Path) -> Path:
    c.fresh_dir(folder)
    c.run_timed([c.mloop_exe(), "init"], cwd=folder)
    return folder


def check_mloop(project: Path, name: str, files: int, size: int) -> None:
    shown = c.run_timed([c.mloop_exe(), "data", "show", name, "--json"], cwd=project, capture=True)
    data = json.loads(shown.stdout)
    version = data["version"] if isinstance(data.get("version"), dict) else data
    assert version["file_count"] == files, f"mloop {name}: {version['file_count']} files"
    assert version["total_size"] == size, f"mloop {name}: {version['total_size']} bytes"
    assert len(version["files"]) == files, f"mloop {name}: {len(version['files'])} listed"
    clean = mloop_status(project, name)
    assert clean, f"mloop data status {name}: not clean right after add"


def mloop_status(project: Path, name: str | None = None) -> bool:
    argv: list[str | Path] = [c.mloop_exe(), "data", "status", "--json"]
    if name:
        argv.insert(3, name)
    out = json.loads(c.run_timed(argv, cwd=project, capture=True).stdout)
    return all(d["clean"] for d in out) and bool(out)


def settle(seconds: float = SETTLE_SECONDS) -> None:
    """Let the filesystem calm down before the next timed command: sync, then wait.

    This machine's root filesystem is ext4 mounted with `discard`. Measured: right after
    thousands of files were deleted, creating 10,000 small files cost 3.7–4.9 s (almost all of
    it system CPU time) instead of 0.55 s, and it took up to ~10 s of idle time to recover,
    with no visible disk activity meanwhile. `dvc add` itself unlinks ~10,000 temporary files,
    so without this pause whichever tool ran second in a round was 2–4× slower.
    """
    c.sync_disk()
    time.sleep(seconds)


def time_add(
    tool: str, source: Path, repo: Path, dvc: Path, files: int, size: int
) -> tuple[float, float]:
    """Fresh repo at `repo`, move `source` in, time the add, check it, move `source` back;
    returns (wall, CPU) seconds.

    The repo (with the tool's cache copy of the data) is left for the caller to delete later.
    """
    target_name = source.name
    dataset = source.stem  # a valid dataset name: tiny, big, files
    if tool == "dvc":
        dvc_repo(repo, dvc)
        argv: list[str | Path] = [dvc, "add", "-q", target_name]
    else:
        mloop_project(repo)
        argv = [c.mloop_exe(), "data", "add", dataset, target_name, "-m", "bench"]
    inside = repo / target_name
    os.rename(source, inside)
    try:
        c.sync_disk()
        proc = c.run_timed(argv, cwd=repo)
        if tool == "dvc":
            assert (repo / f"{target_name}.dvc").is_file(), "dvc wrote no .dvc file"
        else:
            check_mloop(repo, dataset, files, size)
    finally:
        os.rename(inside, source)
    return proc.wall, proc.cpu


def log_cpu(log, label: str, ml_cpu: list[float], dv_cpu: list[float]) -> None:
    ratios = [d / m for m, d in zip(ml_cpu, dv_cpu, strict=True)]
    log(
        f"   {label} CPU: mloop {c.median(ml_cpu):.3f} s, dvc {c.median(dv_cpu):.3f} s"
        f"  → {c.median(ratios):.2f}× ({c.spread(ratios, '{:.1f}')})"
    )


def compare_add(
    label: str,
    source: Path,
    work: Path,
    dvc: Path,
    rounds: int,
    files: int,
    size: int,
    log,
    keep_repos: bool,
) -> tuple[list[float], list[float]]:
    """`keep_repos`: delete the repos only at the end (many small files: deleting them makes
    the disk slow for seconds), else after each add (a big file: deleting one is cheap, and
    keeping gigabytes of fresh copies around makes every further copy slower — measured here:
    1 GiB copies went 0.55 → 2.9 s when kept, and stayed at 0.55 s when each was deleted)."""
    ml: list[float] = []
    dv: list[float] = []
    cpu: dict[str, list[float]] = {"mloop": [], "dvc": []}
    repos = work / f"repos-{source.stem}"
    c.fresh_dir(repos)
    settle()
    try:
        for r in range(rounds):
            order = ["dvc", "mloop"] if r % 2 == 0 else ["mloop", "dvc"]
            got = {}
            for tool in order:
                repo = repos / f"{tool}-{r}"
                got[tool], used = time_add(tool, source, repo, dvc, files, size)
                cpu[tool].append(used)
                if not keep_repos:
                    shutil.rmtree(repo)
                settle()  # the other tool must not pay for this one's deletes (see settle)
            ml.append(got["mloop"])
            dv.append(got["dvc"])
            log(
                f"   {label} round {r + 1}: mloop {got['mloop']:.3f} s | dvc {got['dvc']:.3f} s"
                f"  → {got['dvc'] / got['mloop']:.1f}×"
            )
        log_cpu(log, label, cpu["mloop"], cpu["dvc"])
    finally:
        shutil.rmtree(repos, ignore_errors=True)
    return ml, dv


def warm_up(work: Path, dvc: Path) -> None:
    """One tiny add with each tool: compiles .pyc files, loads both tools into the page cache."""
    tiny = work / "tiny.txt"
    tiny.write_text("warm-up\n")
    for tool in ("dvc", "mloop"):
        time_add(tool, tiny, work / f"warm-{tool}", dvc, 1, tiny.stat().st_size)
        shutil.rmtree(work / f"warm-{tool}")
    tiny.unlink()


def status_case(small: Path, work: Path, dvc: Path, rounds: int, log):
    """Both tools track their own copy of the 10,000 files; time a no-change status."""
    repo = dvc_repo(work / "status-dvc", dvc)
    project = mloop_project(work / "status-mloop")
    os.rename(small, repo / small.name)
    shutil.copytree(repo / small.name, project / small.name)
    try:
        c.run_timed([dvc, "add", "-q", small.name], cwd=repo)
        c.run_timed([c.mloop_exe(), "data", "add", small.stem, small.name], cwd=project)
        settle()
        cmds = {
            "dvc": ([dvc, "status"], repo),
            "mloop": ([c.mloop_exe(), "data", "status"], project),
        }
        for argv, cwd in cmds.values():  # warm-up
            c.run_timed(argv, cwd=cwd)
        ml: list[float] = []
        dv: list[float] = []
        cpu: dict[str, list[float]] = {"mloop": [], "dvc": []}
        for r in range(rounds):
            order = ["dvc", "mloop"] if r % 2 == 0 else ["mloop", "dvc"]
            procs = {t: c.run_timed(cmds[t][0], cwd=cmds[t][1]) for t in order}
            got = {t: p.wall for t, p in procs.items()}
            for t, p in procs.items():
                cpu[t].append(p.cpu)
            ml.append(got["mloop"])
            dv.append(got["dvc"])
            log(
                f"   status round {r + 1}: mloop {got['mloop']:.3f} s | dvc {got['dvc']:.3f} s"
                f"  → {got['dvc'] / got['mloop']:.1f}×"
            )
        log_cpu(log, "status", cpu["mloop"], cpu["dvc"])
        # Correctness: both say nothing changed, and mloop still sees all 10,000 files.
        out = c.run_timed([dvc, "status"], cwd=repo, capture=True).stdout
        assert "up to date" in out, f"dvc status: {out!r}"
        status = json.loads(
            c.run_timed(
                [c.mloop_exe(), "data", "status", "--json"], cwd=project, capture=True
            ).stdout
        )
        assert [d["clean"] for d in status] == [True], f"mloop data status: {status}"
        assert status[0]["unchanged"] == SMALL_COUNT, f"mloop status: {status[0]['unchanged']}"
    finally:
        os.rename(repo / small.name, small)
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(project, ignore_errors=True)
    return ml, dv


def result(case: str, ml: list[float], dv: list[float], target: float) -> c.Result:
    ratios = [d / m for m, d in zip(ml, dv, strict=True)]
    return c.Result(
        NAME,
        case,
        f"{c.median(ml):.3f} s ({c.spread(ml)})",
        f"{c.median(dv):.3f} s ({c.spread(dv)})",
        c.median(ratios),
        c.spread(ratios, "{:.1f}"),
        target,
        f"≥ {target:.0f}× faster",
    )


def run(
    cases: tuple[str, ...] = ("big", "small", "status"),
    rounds_big: int = 3,
    rounds: int = 5,
    log=print,
) -> list[c.Result | c.Skipped]:
    missing = mloop_data_available()
    if missing:
        log(f"-- data: SKIPPED: {missing}")
        return [c.Skipped(NAME, case, missing) for case in cases]
    dvc = c.dvc_venv(log) / "bin" / "dvc"
    work = c.WORK / "data"
    work.mkdir(parents=True, exist_ok=True)
    results: list[c.Result | c.Skipped] = []
    try:
        warm_up(work, dvc)
        if "big" in cases:
            big = work / "big.bin"
            log("-- data (a): writing 1 GiB of random data")
            make_big(big)
            c.sync_disk()
            ml, dv = compare_add(
                "1 GiB", big, work, dvc, rounds_big, 1, BIG_BYTES, log, keep_repos=False
            )
            big.unlink()
            results.append(result("add 1 GiB file", ml, dv, TARGET_BIG))
            mb = BIG_BYTES / 1e6
            log(f"   rates: mloop {mb / c.median(ml):,.0f} MB/s, dvc {mb / c.median(dv):,.0f} MB/s")
        if "small" in cases or "status" in cases:
            small = work / "files"
            log(f"-- data (b): writing {SMALL_COUNT:,} random files × {SMALL_BYTES >> 10} KiB")
            make_small(small)
            c.sync_disk()
            if "small" in cases:
                ml, dv = compare_add(
                    "10k files",
                    small,
                    work,
                    dvc,
                    rounds,
                    SMALL_COUNT,
                    SMALL_COUNT * SMALL_BYTES,
                    log,
                    keep_repos=True,
                )
                results.append(result(f"add {SMALL_COUNT:,} × 20 KiB", ml, dv, TARGET_SMALL))
                log(
                    f"   rates: mloop {SMALL_COUNT / c.median(ml):,.0f} files/s, "
                    f"dvc {SMALL_COUNT / c.median(dv):,.0f} files/s"
                )
            if "status" in cases:
                log("-- data (c): status with nothing changed, 10,000 files")
                ml, dv = status_case(small, work, dvc, rounds, log)
                results.append(result("status, nothing changed", ml, dv, TARGET_STATUS))
    finally:
        shutil.rmtree(work, ignore_errors=True)  # 1 GiB of scratch: never leave it behind
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="big,small,status", help="comma-separated subset")
    ap.add_argument("--rounds-big", type=int, default=3, help="rounds for the 1 GiB file")
    ap.add_argument("--rounds", type=int, default=5, help="rounds for the small files and status")
    args = ap.parse_args(argv)
    cases = tuple(x for x in args.cases.split(",") if x)
    dvc_py = c.dvc_venv() / "bin" / "python"
    c.header(
        "bench_data",
        {
            "dvc": c.installed_version(dvc_py, "dvc"),
            "dvc-data": c.installed_version(dvc_py, "dvc-data"),
        },
    )
    results = run(cases, args.rounds_big, args.rounds)
    print()
    return 1 if c.print_results(results) else 0


if __name__ == "__main__":
    sys.exit(main())
