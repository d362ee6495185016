"""Triggers: a new_data check over a watched folder of 10,000 files, 10 of them new, against a
bare listing of that folder.

The issue's target: the check costs at most 2x a directory listing, which it can only meet by
remembering each file's state (path, size, mtime -> digest, rows) in the metadata store and
reading only the 10 new files. Set-up (untimed): a project whose dataset `churn:1` holds 9,990
small CSV files in `landing/`, and one check that reads them all once (the cold check, shown
for information). Each round then removes the previous round's 10 new files, writes 10 new
ones (settled: mtime an hour ago), and times, in an order that alternates each round:

- **check**: `project.triggers.check_new_data` in this process (the controller's call): list
  the folder, read the remembered state of 10,000 files from SQLite, read and count the 10
  new files, write their state, compare digests with the dataset's;
- **listing**: `os.scandir` of the folder with a stat per file (what any change detection
  needs: a size and an mtime), the figure the target is about;
- for information, `os.scandir` names only, fsspec's `ls(detail=True)`, and the **first
  check of a restarted controller** (a new `TriggerService`: the remembered state of 10,000
  files is read back from the store, and the dataset's versions for their file digests; later
  checks keep both in memory). The digests come from one query of the dataset's file
  digests, not from churn:1's record (it holds a table profile for each of its 9,990 CSV
  files: reading it made this first check ~39x the listing).

Each figure is the median of the rounds; the ratio is the median of per-round ratios.

    .venv/bin/python bench/bench_triggers.py [--rounds 7] [--files 10000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import _common as c

NAME = "triggers"
TARGET = 2.0  # the check's time ÷ the listing's, at most
NEW = 10


def _csv(seed: int, rows: int = 20) -> str:
    return "id,x\n" + "".join(f"{seed},{i}\n" for i in range(rows))


def _write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def _listing(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(e.stat().st_size >= 0 for e in entries)


def _names(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for _ in entries)


def run(rounds: int = 7, files: int = 10_000, log=print) -> list[c.Result]:
    import fsspec

    from mloop.domain.trigger import parse_triggers
    from mloop.project import Project, init_project
    from mloop.services.automation.triggers import TriggerService

    work = c.fresh_dir(c.WORK / "triggers")
    root, _ = init_project(work / "proj")
    landing = root / "landing"
    landing.mkdir()
    old = time.time() - 3600
    for i in range(files - NEW):
        _write(landing / f"old-{i:05}.csv", _csv(i), old)
    project = Project.open(root)
    t0 = time.perf_counter()
    project.data.add("churn", [landing])
    log(
        f"-- triggers: {files:,} files in landing/, {files - NEW:,} held by churn:1 "
        f"(data add: {time.perf_counter() - t0:.1f} s); {NEW} new per round, {rounds} rounds"
    )
    spec = {"path": "landing/", "rows": 1_000_000, "dataset": "churn"}
    trigger = parse_triggers({"train": [{"new_data": spec}]})["train"][0]
    for i in range(NEW):
        _write(landing / f"new-0-{i}.csv", _csv(10**6 + i), old)
    t0 = time.perf_counter()
    cold = project.triggers.check_new_data(trigger)
    log(
        f"   cold check (reads all {files:,} files once): {time.perf_counter() - t0:.2f} s, "
        f"{len(cold.new_files)} new files, {cold.new_rows} rows"
    )
    fs = fsspec.filesystem("file")
    figures: dict[str, list[float]] = {
        "check": [],
        "listing": [],
        "names": [],
        "fsspec": [],
        "restart": [],
    }
    ratios: list[float] = []
    for r in range(1, rounds + 1):
        for i in range(NEW):
            (landing / f"new-{r - 1}-{i}.csv").unlink()
            _write(landing / f"new-{r}-{i}.csv", _csv(10**6 + 100 * r + i), old)
        c.sync_disk()
        got: dict[str, float] = {}
        order = ["check", "listing"] if r % 2 else ["listing", "check"]
        for side in [*order, "names", "fsspec", "restart"]:
            t0 = time.perf_counter()
            if side == "check":
                found = project.triggers.check_new_data(trigger)
                assert len(found.new_files) == NEW, found
            elif side == "listing":
                assert _listing(landing) == files
            elif side == "restart":
                again = TriggerService(project.metadata, project.data, root=root, actor="bench")
                assert len(again.check_new_data(trigger).new_files) == NEW
            elif side == "names":
                _names(landing)
            else:
                fs.ls(str(landing), detail=True)
            got[side] = time.perf_counter() - t0
        for side, seconds in got.items():
            figures[side].append(seconds)
        ratios.append(got["check"] / got["listing"])
        log(
            f"   round {r}: check {got['check'] * 1000:.1f} ms, listing "
            f"{got['listing'] * 1000:.1f} ms (names {got['names'] * 1000:.1f}, fsspec ls "
            f"{got['fsspec'] * 1000:.1f}, restarted check {got['restart'] * 1000:.1f}) "
            f"-> {ratios[-1]:.2f}x"
        )
    project.close()
    ms = {k: c.median(v) * 1000 for k, v in figures.items()}
    ratio = c.median(ratios)
    return [
        c.Result(
            NAME,
            f"check, {files:,} files, {NEW} new",
            f"{ms['check']:.1f} ms",
            f"scandir+stat {ms['listing']:.1f} ms",
            TARGET / ratio,  # >= 1 when the check costs at most TARGET listings
            c.spread([TARGET / x for x in ratios], "{:.2f}"),
            1.0,
            f"check <= {TARGET:g}x listing",
            display=f"{ratio:.2f}x listing ({min(ratios):.2f}–{max(ratios):.2f})",
        ),
        c.Result(
            NAME,
            "check vs fsspec ls (info)",
            f"{ms['check']:.1f} ms",
            f"fsspec ls {ms['fsspec']:.1f} ms",
            ms["fsspec"] / ms["check"],
            "-",
            None,
            "-",
            display=f"{ms['check'] / ms['fsspec']:.2f}x fsspec ls; names only {ms['names']:.1f} ms",
        ),
        c.Result(
            NAME,
            "first check after a restart (info)",
            f"{ms['restart']:.1f} ms",
            f"scandir+stat {ms['listing']:.1f} ms",
            ms["listing"] / ms["restart"],
            "-",
            None,
            "-",
            display=f"{ms['restart'] / ms['listing']:.2f}x listing",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--files", type=int, default=10_000)
    args = ap.parse_args(argv)
    c.header("bench_triggers")
    results = run(args.rounds, args.files)
    print()
    return 1 if c.print_results(results) else 0


if __name__ == "__main__":
    sys.exit(main())
