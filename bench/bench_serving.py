"""Serving one row per request: mloop against MLflow, BentoML and a minimal FastAPI app.

One model for all (scikit-learn's LogisticRegression on the breast-cancer data, 30 features,
trained once and saved with skops), each server in its own venv, one worker unless stated.
Load comes from wrk on 127.0.0.1 (`-t1 -c1` and `-t2 -c32`, a warm-up first), every server
started fresh in turn each round so they share the machine's conditions. mloop runs with every
feature on: Prometheus metrics, signature checks, limits, micro-batching.

Targets (the issue's): at c1 and c32, >= 10x MLflow's req/s and >= 3x BentoML's; at c32 with
micro-batching >= 1.5x the FastAPI app; p99 at c1 <= 1.5x the FastAPI app's; `--workers 2` at
c32 >= 1.7x one worker. The prediction log (on by default) costs <= 10% of req/s against the log
off, and its class scores (computed by its writer at each flush) <= 5% against scores off;
`--scores` measures those three set-ups of mloop alone, without the competitors, side by side:
each round starts the three servers at once and cuts each load level into `--slices` cycles in
which they take turns, and a ratio is that of two servers' slices in the same cycle.

    .venv/bin/python bench/bench_serving.py [--rounds 3] [--seconds 10] [--scores [--slices 4]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import _common as c

NAME = "serving"
SCORES = ("mloop", "mloop-noscores", "mloop-nolog")  # `--scores`: the log's parts
SKLEARN = "scikit-learn==1.9.1"
SKOPS = "skops==0.16.0"
BENTOML_PIN = "bentoml==1.4.40"
FASTAPI_PINS = ["fastapi==0.165.0", "uvicorn==0.54.0"]

TRAIN = textwrap.dedent(
    """
    import json, sys
    import numpy as np, skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    data = load_breast_cancer()
    model = LogisticRegression(max_iter=10000).fit(data.data, data.target)
    skops.io.dump(model, sys.argv[1])
    row = [float(x) for x in data.data[0]]
    names = [f"f{i}" for i in range(30)]
    json.dump({"columns": names, "row": row, "expected": int(model.predict([row])[0])},
              open(sys.argv[2], "w"))
    """
)

MLFLOW_SAVE = textwrap.dedent(
    """
    import sys, skops.io, mlflow.sklearn
    model = skops.io.load(sys.argv[1], trusted=skops.io.get_untrusted_types(file=sys.argv[1]))
    mlflow.sklearn.save_model(model, sys.argv[2])
    """
)

FASTAPI_APP = textwrap.dedent(
    """
    import json, os
    import numpy as np, skops.io
    from fastapi import FastAPI, Request, Response
    path = os.environ["MODEL"]
    model = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    app = FastAPI()

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        body = json.loads(await request.body())
        rows = np.asarray(body["dataframe_split"]["data"], dtype=float)
        out = json.dumps({"predictions": model.predict(rows).tolist()})
        return Response(out, media_type="application/json")

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}
    """
)

BENTO_SERVICE = textwrap.dedent(
    """
    import numpy as np
    import bentoml

    @bentoml.service
    class BreastCancer:
        def __init__(self) -> None:
            self.model = bentoml.sklearn.load_model("breast_cancer:latest")

        @bentoml.api
        def predict(self, data: list[list[float]]) -> list[int]:
            return self.model.predict(np.asarray(data)).tolist()


    # The same model behind BentoML's adaptive batching: concurrent requests' rows are stacked
    # along dimension 0 and predicted in one call (BentoML's own micro-batching, on by choice).
    @bentoml.service
    class BreastCancerBatched:
        def __init__(self) -> None:
            self.model = bentoml.sklearn.load_model("breast_cancer:latest")

        @bentoml.api(batchable=True)  # BentoML's defaults for the batch size and latency
        def predict(self, data: np.ndarray) -> np.ndarray:
            return self.model.predict(data)
    """
)

BENTO_IMPORT = textwrap.dedent(
    """
    import sys, skops.io, bentoml
    model = skops.io.load(sys.argv[1], trusted=skops.io.get_untrusted_types(file=sys.argv[1]))
    bentoml.sklearn.save_model("breast_cancer", model)
    """
)

LUA = textwrap.dedent(
    """
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = [==[BODY]==]
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - 127.0.0.1
                if answer.status < 500:
                    return
        except OSError:
            time.sleep(0.2)  # poll interval of a wait-for-condition
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wrk(url: str, script: Path, threads: int, conns: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    # "Latency  avg  stdev  max  +/-stdev": the slowest answer of the run
    slowest = _ms(re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses under load")
    return {"rps": rps, "p99_ms": p99, "max_ms": slowest}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def mloop_project(work: Path) -> tuple[Path, dict[str, object], Path]:
    """The model trained and registered in a fresh mloop project, and the body wrk sends:
    (the skops file, what TRAIN wrote of the data, the project)."""
    model, meta_path = work / "model.skops", work / "meta.json"
    subprocess.run([str(c.project_python()), "-c", TRAIN, model, meta_path], check=True)
    meta = json.loads(meta_path.read_text())
    project = work / "mloop"
    mloop = c.mloop_exe()
    subprocess.run(
        [str(mloop), "init", "-q", str(project)], check=True, env=c.bench_env(), capture_output=True
    )
    trusted = subprocess.run(
        [
            str(c.project_python()),
            "-c",
            "import sys, skops.io; print(' '.join(skops.io.get_untrusted_types(file=sys.argv[1])))",
            model,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    flags = [arg for t in trusted for arg in ("--trusted-type", t)]
    subprocess.run(
        [str(mloop), "models", "register", "bc", "--path", str(model), *flags],
        cwd=project,
        check=True,
        env=c.bench_env(),
        capture_output=True,
    )
    split = {"dataframe_split": {"columns": meta["columns"], "data": [meta["row"]]}}
    (work / "split.lua").write_text(LUA.replace("BODY", json.dumps(split)))
    return model, meta, project


def prepare(work: Path) -> dict[str, object]:
    c.fresh_dir(work)
    mlflow = c.ensure_venv("mlflow-serve", [c.MLFLOW_PIN, SKLEARN, SKOPS])
    bento = c.ensure_venv("bentoml", [BENTOML_PIN, SKLEARN, SKOPS])
    fast = c.ensure_venv("fastapi", [*FASTAPI_PINS, SKLEARN, SKOPS, "numpy"])
    model, meta, project = mloop_project(work)
    subprocess.run(
        [str(mlflow / "bin/python"), "-c", MLFLOW_SAVE, model, work / "mlflow-model"],
        check=True,
        env=c.bench_env(),
        capture_output=True,
    )
    env = c.bench_env(BENTOML_HOME=str(work / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    subprocess.run(
        [str(bento / "bin/python"), "-c", BENTO_IMPORT, model],
        check=True,
        env=env,
        capture_output=True,
    )
    (work / "bento_service.py").write_text(BENTO_SERVICE)
    (work / "fastapi_app.py").write_text(FASTAPI_APP)
    (work / "bento.lua").write_text(LUA.replace("BODY", json.dumps({"data": [meta["row"]]})))
    return {"mlflow": mlflow, "bento": bento, "fast": fast, "project": project, "meta": meta}


def servers(work: Path, ready: dict[str, object]) -> dict[str, dict[str, object]]:
    """name -> how to start it, where to poll, where to send load, which body."""
    env = c.bench_env(
        BENTOML_HOME=str(work / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        MODEL=str(work / "model.skops"),
    )

    def with_bin(venv: object) -> dict[str, str]:
        # `mlflow models serve` starts `uvicorn` by name: its venv's bin goes first on PATH.
        return {**env, "PATH": f"{Path(str(venv)) / 'bin'}{os.pathsep}{env.get('PATH', '')}"}

    return {
        "mlflow": {
            "cmd": lambda p: [
                Path(str(ready["mlflow"])) / "bin/mlflow",
                "models",
                "serve",
                "-m",
                work / "mlflow-model",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(p),
            ],
            "health": "/health",
            "path": "/invocations",
            "lua": "split.lua",
            "env": with_bin(ready["mlflow"]),
        },
        **{
            label: {
                "cmd": lambda p, service=service: [
                    Path(str(ready["bento"])) / "bin/bentoml",
                    "serve",
                    f"bento_service:{service}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(p),
                ],
                "health": "/readyz",
                "path": "/predict",
                "lua": "bento.lua",
                "env": with_bin(ready["bento"]),
            }
            for label, service in (
                ("bentoml", "BreastCancer"),
                ("bentoml-batch", "BreastCancerBatched"),
            )
        },
        "fastapi": {
            "cmd": lambda p: [
                Path(str(ready["fast"])) / "bin/uvicorn",
                "fastapi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--workers",
                "1",
                "--no-access-log",
            ],
            "health": "/health",
            "path": "/invocations",
            "lua": "split.lua",
            "env": with_bin(ready["fast"]),
        },
        **mloop_servers(Path(str(ready["project"])), env),
    }


def mloop_servers(project: Path, env: dict[str, str]) -> dict[str, dict[str, object]]:
    """mloop's set-ups: one worker or two, batching or not, the prediction log's parts off."""
    mloop = c.mloop_exe()
    return {
        label: {
            "cmd": lambda p, extra=extra: [
                mloop,
                "-C",
                project,
                "serve",
                "bc:1",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                *extra,
            ],
            "health": "/readyz",
            "path": "/invocations",
            "metrics": "/metrics",
            "lua": "split.lua",
            "env": {**env, **more},
        }
        for label, extra, more in (
            ("mloop", [], {}),
            ("mloop-2w", ["--workers", "2"], {}),
            ("mloop-nb", ["--no-batching"], {}),
            ("mloop-nb-2w", ["--no-batching", "--workers", "2"], {}),
            # the prediction log off (it is on by default): what logging costs
            ("mloop-nolog", [], {"MLOOP_PREDICTIONS_SAMPLE_RATE": "0"}),
            # the log without class scores (on by default): what scoring at each flush costs
            ("mloop-noscores", [], {"MLOOP_PREDICTIONS_SCORES": "false"}),
        )
    }


@contextlib.contextmanager
def started(work: Path, name: str, spec: dict[str, object]) -> Iterator[str]:
    """The server `spec` describes, on a free port, until it answers its health check: its
    base URL; stopped by its PID at the end."""
    port = free_port()
    log = work / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(a) for a in spec["cmd"](port)],  # type: ignore[operator]
            cwd=work,
            env=spec["env"],  # type: ignore[arg-type]
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base + str(spec["health"]), proc)
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name}: {exc}; its output ends:\n{tail}") from None
        yield base
    finally:
        stop(proc)


def measure(
    work: Path, name: str, spec: dict[str, object], seconds: int
) -> dict[str, dict[str, float]]:
    with started(work, name, spec) as base:
        script = work / str(spec["lua"])
        url = base + str(spec["path"])
        wrk(url, script, 1, 4, 3)  # warm-up
        c1 = wrk(url, script, 1, 1, seconds)
        if "metrics" not in spec:
            return {"c1": c1, "c32": wrk(url, script, 2, 32, seconds)}
        before = _server_counts(base + str(spec["metrics"]))
        c32 = wrk(url, script, 2, 32, seconds)
        after = _server_counts(base + str(spec["metrics"]))
        cpu, answers = (a - b for a, b in zip(after, before, strict=True))
        return {"c1": c1, "c32": {**c32, "cpu_us": 1e6 * cpu / answers}}


def interleaved(
    work: Path, specs: dict[str, dict[str, object]], seconds: int, slices: int, turn: int
) -> dict[str, dict[str, dict[str, object]]]:
    """One round of mloop set-ups compared with each other: every server started at once,
    then each load level in `slices` cycles, each cycle loading every server in turn (an
    order that rotates) for its share of `seconds`. The set-ups compared take their load
    within seconds of each other, again and again, so a slow spell of this shared machine
    falls on both sides of a ratio rather than on one server's whole run."""
    share = max(1, round(seconds / slices))
    names = list(specs)
    with contextlib.ExitStack() as stack:
        bases = {n: stack.enter_context(started(work, n, specs[n])) for n in names}
        for name, base in bases.items():
            wrk(base + str(specs[name]["path"]), work / str(specs[name]["lua"]), 1, 4, 3)
        result: dict[str, dict[str, dict[str, object]]] = {n: {} for n in names}
        for level, threads, conns in (("c1", 1, 1), ("c32", 2, 32)):
            runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
            for k in range(slices):
                shift = (turn + k) % len(names)
                for name in names[shift:] + names[:shift]:
                    spec, base = specs[name], bases[name]
                    before = _server_counts(base + str(spec["metrics"]))
                    found = wrk(
                        base + str(spec["path"]), work / str(spec["lua"]), threads, conns, share
                    )
                    after = _server_counts(base + str(spec["metrics"]))
                    found["cpu_s"], found["answers"] = (
                        x - y for x, y in zip(after, before, strict=True)
                    )
                    runs[name].append(found)
            for name, found in runs.items():
                result[name][level] = {
                    "rps": c.median([f["rps"] for f in found]),
                    "slices": [f["rps"] for f in found],
                    "p99_ms": c.median([f["p99_ms"] for f in found]),
                    "cpu_us": 1e6
                    * sum(f["cpu_s"] for f in found)
                    / sum(f["answers"] for f in found),
                }
    return result


def _server_counts(url: str) -> tuple[float, float]:
    """The server's CPU seconds (every thread: the log's writer too) and its answers so far,
    from its /metrics: CPU per answer holds still where req/s moves with the machine's load."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - 127.0.0.1
        text = answer.read().decode()
    cpu = answers = 0.0
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            cpu = float(line.split()[-1])
        elif line.startswith("mloop_requests_total{") and 'status="200"' in line:
            answers += float(line.split()[-1])
    return cpu, answers


def run(
    rounds: int = 3, seconds: int = 10, scores: bool = False, slices: int = 4
) -> list[c.Result | c.Skipped]:
    work = c.WORK / "serving"
    if scores:  # the prediction log's parts only: no competitor, more rounds worth it
        print("-- serving: the prediction log with class scores, without, and off")
        c.fresh_dir(work)
        specs = mloop_servers(mloop_project(work)[2], c.bench_env())
        specs = {n: specs[n] for n in SCORES}
    else:
        print("-- serving: preparing the model and the competitors' venvs")
        specs = servers(work, prepare(work))
    names = list(specs)
    figures: dict[str, list[dict[str, dict[str, float]]]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        together = interleaved(work, specs, seconds, slices, r) if scores else {}
        for name in order:
            result = together.get(name) or measure(work, name, specs[name], seconds)
            figures[name].append(result)
            print(
                f"   round {r + 1} {name:<14} c1 {result['c1']['rps']:8.0f} req/s "
                f"p99 {result['c1']['p99_ms']:7.2f} ms | c32 {result['c32']['rps']:8.0f} req/s "
                f"p99 {result['c32']['p99_ms']:7.2f} ms | load {os.getloadavg()[0]:.2f}"
            )
    return _log_results(figures, rounds) if scores else _results(figures, rounds)


def _ratio(figures: dict, a: str, b: str, level: str, key: str, rounds: int) -> list[float]:
    """Per round; where a round was cut into slices (`interleaved`), per slice of a cycle."""
    mine, theirs = figures[a], figures[b]
    if key == "rps" and "slices" in mine[0][level]:
        return [
            x / y
            for i in range(rounds)
            for x, y in zip(mine[i][level]["slices"], theirs[i][level]["slices"], strict=True)
        ]
    return [mine[i][level][key] / theirs[i][level][key] for i in range(rounds)]


def _results(figures: dict, rounds: int) -> list[c.Result | c.Skipped]:
    results: list[c.Result | c.Skipped] = []

    def med(name: str, level: str, key: str = "rps") -> float:
        return c.median([f[level][key] for f in figures[name]])

    for level in ("c1", "c32"):
        for other, target in (("mlflow", 10.0), ("bentoml", 3.0), ("bentoml-batch", None)):
            ratios = _ratio(figures, "mloop", other, level, "rps", rounds)
            results.append(
                c.Result(
                    NAME,
                    f"{level}: req/s vs {other}",
                    f"{med('mloop', level):.0f}/s",
                    f"{med(other, level):.0f}/s",
                    c.median(ratios),
                    c.spread(ratios, "{:.1f}"),
                    target,
                    f">= {target:g}x" if target else "info",
                )
            )
    ratios = _ratio(figures, "mloop", "fastapi", "c32", "rps", rounds)
    results.append(
        c.Result(
            NAME,
            "c32 batching: req/s vs FastAPI",
            f"{med('mloop', 'c32'):.0f}/s",
            f"{med('fastapi', 'c32'):.0f}/s",
            c.median(ratios),
            c.spread(ratios, "{:.2f}"),
            1.5,
            ">= 1.5x",
        )
    )
    p99 = _ratio(figures, "fastapi", "mloop", "c1", "p99_ms", rounds)  # higher = mloop better
    shown = [1 / x for x in p99]
    results.append(
        c.Result(
            NAME,
            "c1 p99 vs FastAPI",
            f"{med('mloop', 'c1', 'p99_ms'):.2f} ms",
            f"{med('fastapi', 'c1', 'p99_ms'):.2f} ms",
            c.median(p99),
            c.spread(p99, "{:.2f}"),
            1 / 1.5,
            "<= 1.5x FastAPI's",
            display=f"{c.median(shown):.2f}x FastAPI's ({c.spread(shown, '{:.2f}')})",
        )
    )
    results += _log_results(figures, rounds)
    for two, one, case in (
        ("mloop-2w", "mloop", "c32: 2 workers vs 1"),
        ("mloop-nb-2w", "mloop-nb", "c32 no batching: 2 workers vs 1"),
    ):
        ratios = _ratio(figures, two, one, "c32", "rps", rounds)
        results.append(
            c.Result(
                NAME,
                case,
                f"{med(two, 'c32'):.0f}/s",
                f"{med(one, 'c32'):.0f}/s",
                c.median(ratios),
                c.spread(ratios, "{:.2f}"),
                1.7,
                ">= 1.7x",
            )
        )
    return results


def _log_results(figures: dict, rounds: int) -> list[c.Result | c.Skipped]:
    """What the prediction log costs (scores included), and what its class scores add."""
    results: list[c.Result | c.Skipped] = []
    for level, on, off, case, target in (
        ("c1", "mloop", "mloop-nolog", "prediction log on vs off", 0.9),
        ("c32", "mloop", "mloop-nolog", "prediction log on vs off", 0.9),
        ("c32", "mloop", "mloop-noscores", "class scores on vs off", 0.95),
    ):
        ratios = _ratio(figures, on, off, level, "rps", rounds)
        results.append(
            c.Result(
                NAME,
                f"{level}: {case}",
                f"{c.median([f[level]['rps'] for f in figures[on]]):.0f}/s",
                f"{c.median([f[level]['rps'] for f in figures[off]]):.0f}/s",
                c.median(ratios),
                c.spread(ratios, "{:.3f}"),
                target,
                f">= {target:g}x",
            )
        )
    for on, off, case in (
        ("mloop", "mloop-nolog", "prediction log on vs off"),
        ("mloop", "mloop-noscores", "class scores on vs off"),
    ):
        spent = [f["c32"]["cpu_us"] for f in figures[on]]
        base = [f["c32"]["cpu_us"] for f in figures[off]]
        ratios = [b / a for a, b in zip(spent, base, strict=True)]  # higher = on costs less
        results.append(
            c.Result(
                NAME,
                f"c32: {case}, server CPU per answer",
                f"{c.median(spent):.0f} µs",
                f"{c.median(base):.0f} µs",
                c.median(ratios),
                c.spread(ratios, "{:.3f}"),
                None,
                "info",
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument(
        "--scores",
        action="store_true",
        help="only what the prediction log and its class scores cost (mloop alone)",
    )
    ap.add_argument(
        "--slices",
        type=int,
        default=4,
        help="with --scores: cycles a load level's seconds are cut into, the servers side by side",
    )
    args = ap.parse_args(argv)
    c.header(NAME, {"wrk": c.tool_version(["wrk", "--version"])})
    began = time.perf_counter()
    results = run(args.rounds, args.seconds, args.scores, args.slices)
    print()
    bad = c.print_results(results)
    print(f"# {NAME}: {time.perf_counter() - began:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
