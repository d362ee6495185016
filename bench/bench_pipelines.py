"""Pipelines: an unchanged re-run against `dvc repro`, the cost of one step, and a sweep's use
of both cores.

(a) Six stages (ingest, validate, prepare, train, evaluate, register) written once as an mloop
    pipeline and once as a `dvc.yaml` over the same scripts; both run once, then ROUNDS rounds
    time a whole-process re-run with nothing changed: `mloop run train` vs `dvc repro`.
    Target: mloop faster. mloop must not import pandas or scikit-learn to find nothing changed.
(b) A chain of empty steps run without the cache on the local executor, in-process: the cost
    per step (a run record, its inputs and outputs stored). Target: under 10 ms.
(c) Four CPU-bound trials (~8 s each): `mloop sweep` on the process executor with the trials
    side by side, against the same sweep one trial at a time (`--parallel 1`), as whole
    processes (the ~2 s of start-up and tracing count on both sides). Target: at most 0.6×.

    .venv/bin/python bench/bench_pipelines.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import _common as c

NAME = "pipelines"
STEP_BUDGET_MS = 10.0
SWEEP_MAX_SHARE = 0.6

STAGES = textwrap.dedent(
    '''
    """The six stages as plain functions, shared by the mloop pipeline and the DVC stages."""
    import json
    import sys

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression


    def ingest(path):
        return pd.read_csv(path)


    def validate(frame):
        assert frame["x"].notna().all()
        return frame


    def prepare(frame):
        return frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]


    def train(frame, c):
        return LogisticRegression(C=c).fit(frame[["x"]], frame["y"])


    def evaluate(model, frame):
        return {"accuracy": float(model.score(frame[["x"]], frame["y"]))}


    def register(metrics):
        return {"registered": True, **metrics}


    if __name__ == "__main__":  # DVC runs each stage as a script over files
        import pickle

        stage = sys.argv[1]
        if stage == "ingest":
            ingest("data.csv").to_parquet("out/ingest.parquet")
        elif stage == "validate":
            validate(pd.read_parquet("out/ingest.parquet")).to_parquet("out/valid.parquet")
        elif stage == "prepare":
            a, b = prepare(pd.read_parquet("out/valid.parquet"))
            a.to_parquet("out/train.parquet")
            b.to_parquet("out/test.parquet")
        elif stage == "train":
            with open("out/model.pkl", "wb") as fh:
                pickle.dump(train(pd.read_parquet("out/train.parquet"), 1.0), fh)
        elif stage == "evaluate":
            with open("out/model.pkl", "rb") as fh:
                model = pickle.load(fh)
            with open("out/metrics.json", "w") as fh:
                json.dump(evaluate(model, pd.read_parquet("out/test.parquet")), fh)
        elif stage == "register":
            with open("out/metrics.json") as fh:
                metrics = json.load(fh)
            with open("out/registered.json", "w") as fh:
                json.dump(register(metrics), fh)
    '''
)

PIPELINE = textwrap.dedent(
    """
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import mloop
    import stages


    @mloop.step
    def ingest(raw) -> pd.DataFrame:
        return raw.to_pandas()


    @mloop.step
    def validate(frame: pd.DataFrame) -> pd.DataFrame:
        return stages.validate(frame)


    @mloop.step
    def prepare(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return stages.prepare(frame)


    @mloop.step
    def train(frame: pd.DataFrame, c: float) -> LogisticRegression:
        return stages.train(frame, c)


    @mloop.step
    def evaluate(model: LogisticRegression, frame: pd.DataFrame) -> dict:
        metrics = stages.evaluate(model, frame)
        mloop.log_metrics(metrics)
        return metrics


    @mloop.step
    def register(metrics: dict) -> dict:
        return stages.register(metrics)


    @mloop.pipeline(metric="accuracy")
    def pipeline(c: float = 1.0):
        train_set, test_set = prepare(validate(ingest(mloop.dataset("points"))))
        register(evaluate(train(train_set, c=c), test_set))


    @mloop.step
    def empty(previous: int) -> int:
        return previous + 1


    @mloop.pipeline
    def chain(length: int = 30):
        value = 0
        for _ in range(length):
            value = empty(value)


    @mloop.step
    def burn(seed: int) -> int:
        total = 0
        for i in range(160_000_000):
            total = (total + i * seed) % 1_000_003
        mloop.log_metric("score", float(total % 97))
        return total


    @mloop.pipeline(metric="score")
    def burner(seed: int = 1):
        burn(seed)
    """
)

# The same six stages for DVC: (name, dependencies, outputs); every stage also depends on
# the script itself.
DVC_STAGES = (
    ("ingest", ["data.csv"], ["out/ingest.parquet"]),
    ("validate", ["out/ingest.parquet"], ["out/valid.parquet"]),
    ("prepare", ["out/valid.parquet"], ["out/train.parquet", "out/test.parquet"]),
    ("train", ["out/train.parquet"], ["out/model.pkl"]),
    ("evaluate", ["out/model.pkl", "out/test.parquet"], ["out/metrics.json"]),
    ("register", ["out/metrics.json"], ["out/registered.json"]),
)


def dvc_yaml() -> str:
    lines = ["stages:"]
    for name, deps, outs in DVC_STAGES:
        lines += [
            f"  {name}:",
            f"    cmd: python stages.py {name}",
            f"    deps: [{', '.join(['stages.py', *deps])}]",
            f"    outs: [{', '.join(outs)}]",
        ]
    return "\n".join(lines) + "\n"


def write_data(folder: Path) -> None:
    rows = ["x,y"] + [f"{(i * 37) % 101 / 10},{int((i * 37) % 101 > 50)}" for i in range(400)]
    (folder / "data.csv").write_text("\n".join(rows) + "\n")


def make_mloop_project(root: Path) -> None:
    c.fresh_dir(root)
    mloop = c.mloop_exe()
    subprocess.run([str(mloop), "init", "-q", str(root)], check=True, env=c.bench_env())
    (root / "stages.py").write_text(STAGES)
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "mloop.yaml").write_text(
        "project: bench\npipelines:\n  train: pipeline:pipeline\n  chain: pipeline:chain\n"
        "  burner: pipeline:burner\n"
    )
    write_data(root)
    for argv in (["data", "add", "points", "data.csv"], ["run", "train"]):
        subprocess.run(
            [str(mloop), *argv], cwd=root, check=True, env=c.bench_env(), capture_output=True
        )


def make_dvc_project(root: Path, dvc_bin: Path) -> None:
    c.fresh_dir(root)
    env = c.bench_env()
    (root / "stages.py").write_text(STAGES)
    (root / "dvc.yaml").write_text(dvc_yaml())
    (root / "out").mkdir()
    write_data(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run([str(dvc_bin), "init", "-q"], cwd=root, check=True, env=env)
    # The stages run with the project's interpreter (pandas, scikit-learn), as a user's would.
    env["PATH"] = f"{c.project_python().parent}:{env['PATH']}"
    subprocess.run(
        [str(dvc_bin), "repro", "-q"], cwd=root, check=True, env=env, capture_output=True
    )


def bench_repro(rounds: int) -> list[c.Result]:
    work = c.WORK / "pipelines"
    dvc_bin = c.dvc_venv() / "bin" / "dvc"
    mloop_root, dvc_root = work / "mloop", work / "dvc"
    make_mloop_project(mloop_root)
    make_dvc_project(dvc_root, dvc_bin)
    env = c.bench_env()
    env["PATH"] = f"{c.project_python().parent}:{env['PATH']}"
    mloop_cmd = [c.mloop_exe(), "run", "train", "--json"]
    dvc_cmd = [dvc_bin, "repro", "-q"]
    c.run_timed(mloop_cmd, cwd=mloop_root, env=env)  # warm-up: replay records its plan
    c.run_timed(dvc_cmd, cwd=dvc_root, env=env)
    ours, theirs, ratios = [], [], []
    for r in range(rounds):
        pair = [("mloop", mloop_cmd, mloop_root), ("dvc", dvc_cmd, dvc_root)]
        if r % 2:
            pair.reverse()
        timed = {}
        for who, cmd, cwd in pair:
            proc = c.run_timed(cmd, cwd=cwd, env=env, capture=who == "mloop")
            timed[who] = proc.wall
            if who == "mloop":
                states = {s["state"] for s in json.loads(proc.stdout)["steps"]}
                assert states == {"cached"}, states
        ours.append(timed["mloop"])
        theirs.append(timed["dvc"])
        ratios.append(timed["dvc"] / timed["mloop"])
        print(
            f"   re-run round {r + 1}: mloop {timed['mloop']:.3f} s | dvc repro "
            f"{timed['dvc']:.3f} s  → {ratios[-1]:.1f}×"
        )
    probe = subprocess.run(
        [
            str(c.project_python()),
            "-c",
            "import sys\nfrom mloop.cli.main import main\nmain(['run','train','--json'])\n"
            "print('pandas' in sys.modules, 'sklearn' in sys.modules, file=sys.stderr)",
        ],
        cwd=mloop_root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = probe.stderr.strip().splitlines()[-1]
    print(f"   pandas, sklearn imported by the re-run: {imported}")
    assert imported == "False False", "a re-run with nothing changed imported pandas/sklearn"
    return [
        c.Result(
            NAME,
            "re-run, nothing changed (6 steps)",
            f"{c.median(ours):.3f} s",
            f"{c.median(theirs):.3f} s",
            c.median(ratios),
            c.spread(ratios, "{:.1f}"),
            1.0,
            "faster than dvc repro",
        )
    ]


def bench_step_overhead(rounds: int) -> list[c.Result]:
    root = c.WORK / "pipelines" / "mloop"
    code = textwrap.dedent(
        """
        import json, sys, time
        sys.path.insert(0, ".")
        from mloop.project import Project
        pipelines = Project.open().pipelines
        graph = pipelines.graph("chain", {"length": 30})
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            result = pipelines.run_graph(graph, executor="local", use_cache=False)
            times.append((time.perf_counter() - start) / 30)
            assert result.ok
        print(json.dumps(times))
        """
    ).replace("ROUNDS", str(rounds))
    out = subprocess.run(
        [str(c.project_python()), "-c", code],
        cwd=root,
        env=c.bench_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    per_step = json.loads(out.stdout.strip().splitlines()[-1])
    ms = [t * 1000 for t in per_step]
    print(
        f"   empty step, no cache, local executor: {c.median(ms):.2f} ms per step "
        f"({c.spread(ms, '{:.2f}')})"
    )
    ratios = [STEP_BUDGET_MS / m for m in ms]
    return [
        c.Result(
            NAME,
            "empty step overhead",
            f"{c.median(ms):.2f} ms",
            f"{STEP_BUDGET_MS:.0f} ms",
            c.median(ratios),
            c.spread(ratios, "{:.1f}"),
            1.0,
            "< 10 ms a step",
            display=f"{c.median(ms):.2f} ms ({c.spread(ms, '{:.2f}')})",
        )
    ]


def bench_sweep(rounds: int) -> list[c.Result]:
    root = c.WORK / "pipelines" / "mloop"
    mloop = c.mloop_exe()
    base = [
        mloop,
        "sweep",
        "burner",
        "-p",
        "seed=1,2,3,4",
        "--executor",
        "process",
        "--no-cache",
        "--json",
    ]
    together, one_by_one, shares = [], [], []
    for r in range(rounds):
        pair = [("parallel", base), ("serial", [*base, "--parallel", "1"])]
        if r % 2:
            pair.reverse()
        timed = {}
        for who, cmd in pair:
            timed[who] = c.run_timed(cmd, cwd=root).wall
        together.append(timed["parallel"])
        one_by_one.append(timed["serial"])
        shares.append(timed["parallel"] / timed["serial"])
        print(
            f"   sweep round {r + 1}: side by side {timed['parallel']:.2f} s | one at a time "
            f"{timed['serial']:.2f} s  → {shares[-1]:.2f}× the time"
        )
    ratios = [SWEEP_MAX_SHARE / s for s in shares]
    return [
        c.Result(
            NAME,
            "4-trial sweep, process executor",
            f"{c.median(together):.2f} s",
            f"{c.median(one_by_one):.2f} s",
            c.median(ratios),
            c.spread(ratios, "{:.2f}"),
            1.0,
            "≤ 0.6× one at a time",
            display=f"{c.median(shares):.2f}× the time ({c.spread(shares, '{:.2f}')})",
        )
    ]


def run(rounds: int = 5) -> list[c.Result | c.Skipped]:
    print("-- pipelines (a): re-run with nothing changed, mloop run vs dvc repro")
    results: list[c.Result | c.Skipped] = list(bench_repro(rounds))
    print("-- pipelines (b): overhead of an empty step")
    results += bench_step_overhead(rounds)
    print("-- pipelines (c): a 4-trial sweep on the process executor")
    results += bench_sweep(max(3, rounds - 2))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    c.header("pipelines", {"dvc": c.installed_version(c.dvc_venv() / "bin" / "python", "dvc")})
    started = time.perf_counter()
    results = run(args.rounds)
    print()
    bad = c.print_results(results)
    print(f"# {NAME}: {time.perf_counter() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
