"""Serving an endpoint: what routing, a shadow and a blue/green switch cost the client.

Every figure is set against `mloop serve --endpoint` serving one version (a `direct`
deployment) in the same run. The model is bench_serving's (scikit-learn's LogisticRegression on
the breast-cancer data, 30 features), registered with `mloop.register_model` as versions 1 and
2 (the same fitted object: one bundle, which the server loads once and batches as one model,
so a split between them costs the routing alone) and 3 (another fit, other answers: a split
between 1 and 3 also pays the model's fixed cost per predict call twice as often, at half the
batch). Load comes from wrk on 127.0.0.1 (`-t1 -c1` and `-t2 -c32`, a warm-up first); every
server is started fresh in each round, in an order that rotates, and stopped by its PID with
SIGTERM.

Targets (the issue's): an `ab` deployment 50/50 over two versions loses at most 10% of the
direct deployment's req/s; a 100% shadow (`--strategy shadow --fraction 1.0`) at most 15% of
the client's req/s; the p99 of a wrk window during which `mloop deploy E bc:2 --strategy
blue_green` is issued and served is at most 2x the p99 of a steady window of the same length.

    .venv/bin/python bench/bench_endpoints.py [--rounds 3] [--seconds 10] [--window 6]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import _common as c
from bench_serving import LUA, stop, wrk

NAME = "endpoints"

# Trains once and registers: v1 and v2 are the same fitted model (one bundle: one model to the
# server, so a split between them measures routing alone), v3 another fit with other answers.
REGISTER = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    import mloop
    data = load_breast_cancer()
    names = [f"f{i}" for i in range(30)]
    frame = pd.DataFrame(data.data, columns=names)
    # fitted on the array, as bench_serving's model: the server then predicts on arrays (a model
    # fitted on a frame is fed frames, and sklearn's name checks cost ~10x the arithmetic)
    model = LogisticRegression(max_iter=10000).fit(data.data, data.target)
    other = LogisticRegression(max_iter=10000, C=0.001).fit(data.data, data.target)
    for fitted in (model, model, other):
        mloop.register_model(fitted, "bc", input_example=frame.head(2), project=sys.argv[1])
    row = [float(x) for x in data.data[0]]
    json.dump({"columns": names, "row": row}, open(sys.argv[2], "w"))
    """
)

# endpoint -> the `mloop deploy` commands that set it up (in order), and what it shows
ENDPOINTS: dict[str, list[list[str]]] = {
    "direct": [["bc:1"]],
    "ab": [["bc:1", "bc:2", "--strategy", "ab", "--weights", "50,50"]],
    "ab-diff": [["bc:1", "bc:3", "--strategy", "ab", "--weights", "50,50"]],
    "shadow": [["bc:1"], ["bc:2", "--strategy", "shadow", "--fraction", "1.0"]],
}


def mloop(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c.mloop_exe()), "-C", str(project), *args],
        env=c.bench_env(),
        capture_output=True,
        text=True,
        check=True,
    )


def prepare(work: Path) -> dict[str, object]:
    c.fresh_dir(work)
    project = work / "project"
    subprocess.run(
        [str(c.mloop_exe()), "init", "-q", str(project)],
        check=True,
        env=c.bench_env(),
        capture_output=True,
    )
    meta_path = work / "meta.json"
    subprocess.run(
        [str(c.project_python()), "-c", REGISTER, project, meta_path],
        check=True,
        env=c.bench_env(),
        capture_output=True,
        cwd=project,
    )
    meta = json.loads(meta_path.read_text())
    for endpoint, deploys in ENDPOINTS.items():
        for args in deploys:
            mloop(project, "deploy", endpoint, *args)
    split = {"dataframe_split": {"columns": meta["columns"], "data": [meta["row"]]}}
    body = json.dumps(split)
    (work / "split.lua").write_text(LUA.replace("BODY", body))
    return {"project": project, "body": body.encode()}


class Server:
    """`mloop serve --endpoint E --port 0`; its URL read from the line it prints when ready."""

    def __init__(self, work: Path, project: Path, endpoint: str) -> None:
        self.log = work / f"serve-{endpoint}.log"
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [
                    str(c.mloop_exe()),
                    "-C",
                    str(project),
                    "serve",
                    "--endpoint",
                    endpoint,
                    "--port",
                    "0",
                ],
                env=c.bench_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "http://" in text:
                self.url = "http://" + text.split("http://", 1)[1].split()[0]
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)  # poll interval of a wait-for-condition
        stop(self.proc)
        raise RuntimeError(f"{endpoint}: no URL; its output ends:\n{text[-2000:]}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def answered_by(self, body: bytes) -> str:
        request = urllib.request.Request(  # noqa: S310 - 127.0.0.1
            self.url + "/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - 127.0.0.1
            return str(answer.headers["mloop-model"])

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as answer:  # noqa: S310
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )


def throughputs(
    work: Path, ready: dict, names: list[str], seconds: int, slices: int, turn: int
) -> dict[str, dict[str, object]]:
    """One round: every endpoint's server started at once, then each load level in `slices`
    cycles; each cycle loads every server in turn (an order that rotates) for its share of
    `seconds`. The servers compared thus take their load within seconds of each other, again
    and again, so a slow spell of this shared machine falls on both sides of a ratio instead
    of on one server's whole run. Per server and level: req/s of each slice, and over all its
    slices req/s, the median p99 and the server's CPU per answer."""
    project, body = Path(str(ready["project"])), bytes(ready["body"])
    script = work / "split.lua"
    share = max(1, round(seconds / slices))
    with contextlib.ExitStack() as stack:
        servers = {n: stack.enter_context(Server(work, project, n)) for n in names}
        for server in servers.values():
            wrk(server.url + "/invocations", script, 1, 4, 3)  # warm-up
        result: dict[str, dict[str, object]] = {n: {} for n in names}
        for level, threads, conns in (("c1", 1, 1), ("c32", 2, 32)):
            runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
            for k in range(slices):
                shift = (turn + k) % len(names)
                for name in names[shift:] + names[:shift]:
                    server = servers[name]
                    before = server.cpu()
                    figures = wrk(server.url + "/invocations", script, threads, conns, share)
                    figures["cpu_s"] = server.cpu() - before
                    runs[name].append(figures)
            for name, found in runs.items():
                answers = sum(f["rps"] * share for f in found)
                result[name][level] = {
                    "rps": answers / (share * slices),
                    "slices": [f["rps"] for f in found],
                    "p99_ms": c.median([f["p99_ms"] for f in found]),
                    # the server's own CPU per answer: steadier than req/s on a shared machine
                    "cpu_us": sum(f["cpu_s"] for f in found) / answers * 1e6,
                }
        expected = {"direct": {"bc:1"}, "shadow": {"bc:1"}, "ab": {"bc:1", "bc:2"}}
        for name, server in servers.items():
            seen = Counter(server.answered_by(body) for _ in range(40))
            wanted = expected.get(name, {"bc:1", "bc:3"})
            if set(seen) != wanted:
                raise RuntimeError(f"{name}: answered by {dict(seen)}, expected {wanted}")
            if name == "shadow":
                result[name]["mirrored"] = server.metric("mloop_shadow_requests_total")
                result[name]["dropped"] = server.metric("mloop_shadow_dropped_total")
    return result


def blue_green(
    work: Path, ready: dict, name: str, level: str, window: int, switch_first: bool
) -> dict[str, float]:
    """One fresh endpoint on bc:1; a steady wrk window and a window with the switch to bc:2
    (issued 1 s in), back to back, in the order given. Returns both p99s and when green took
    traffic (from a light poller, one request each 20 ms, that reads `mloop-model`)."""
    project, body = Path(str(ready["project"])), bytes(ready["body"])
    mloop(project, "deploy", name, "bc:1")
    threads, conns = (1, 1) if level == "c1" else (2, 32)
    script = work / "split.lua"
    with Server(work, project, name) as server:
        url = server.url + "/invocations"
        wrk(url, script, 1, 4, 2)  # warm-up
        out: dict[str, float] = {}

        def switch_window() -> None:
            marks: dict[str, float] = {}
            done = threading.Event()

            def switch() -> None:
                time.sleep(1.0)  # 1 s into the window
                marks["issued"] = time.monotonic()
                mloop(project, "deploy", name, "bc:2", "--strategy", "blue_green")
                marks["deployed"] = time.monotonic()
                while not done.is_set():
                    if server.answered_by(body) == "bc:2":
                        marks["green"] = time.monotonic()
                        return
                    time.sleep(0.02)  # poll interval of a wait-for-condition

            worker = threading.Thread(target=switch)
            started = time.monotonic()
            worker.start()
            figures = wrk(url, script, threads, conns, window)
            ended = time.monotonic()
            done.set()
            worker.join(timeout=60)
            if "green" not in marks or marks["green"] > ended:
                raise RuntimeError(f"{name}: green did not take traffic within the window")
            out["switch_p99_ms"] = figures["p99_ms"]
            out["switch_rps"] = figures["rps"]
            out["switch_max_ms"] = figures["max_ms"]
            out["deploy_s"] = marks["deployed"] - marks["issued"]
            out["green_after_s"] = marks["green"] - marks["issued"]
            out["green_at_s"] = marks["green"] - started

        def steady_window() -> None:
            figures = wrk(url, script, threads, conns, window)
            out["steady_p99_ms"] = figures["p99_ms"]
            out["steady_rps"] = figures["rps"]
            out["steady_max_ms"] = figures["max_ms"]

        for step in (
            (switch_window, steady_window) if switch_first else (steady_window, switch_window)
        ):
            step()
        if server.answered_by(body) != "bc:2":
            raise RuntimeError(f"{name}: not serving bc:2 after the switch")
    return out


def run(
    rounds: int = 3, seconds: int = 10, window: int = 6, slices: int = 4
) -> list[c.Result | c.Skipped]:
    work = c.WORK / "endpoints"
    print("-- endpoints: registering bc:1..3 and deploying the endpoints")
    ready = prepare(work)
    names = list(ENDPOINTS)
    figures: dict[str, list[dict]] = {n: [] for n in names}
    switches: dict[str, list[dict[str, float]]] = {"c1": [], "c32": []}
    for r in range(rounds):
        measured = throughputs(work, ready, names, seconds, slices, r)
        for name in names:
            result = measured[name]
            figures[name].append(result)
            extra = ""
            if "mirrored" in result:
                extra = (
                    f" | shadow copies {result['mirrored']:.0f}, dropped {result['dropped']:.0f}"
                )
            c1, c32 = result["c1"], result["c32"]
            print(
                f"   round {r + 1} {name:<8} c1 {c1['rps']:6.0f} req/s p99 {c1['p99_ms']:6.2f} ms"
                f" cpu {c1['cpu_us']:4.0f} us/req | c32 {c32['rps']:6.0f} req/s"
                f" p99 {c32['p99_ms']:6.2f} ms cpu {c32['cpu_us']:4.0f} us/req{extra}"
            )
        for level in ("c1", "c32") if r % 2 == 0 else ("c32", "c1"):
            switch_first = (r + (level == "c32")) % 2 == 1
            bg = blue_green(work, ready, f"bg-{r + 1}-{level}", level, window, switch_first)
            switches[level].append(bg)
            print(
                f"   round {r + 1} blue/green {level:<3} steady p99 {bg['steady_p99_ms']:6.2f} ms"
                f" max {bg['steady_max_ms']:.0f} ms ({bg['steady_rps']:.0f} req/s) | switch p99"
                f" {bg['switch_p99_ms']:6.2f} ms max {bg['switch_max_ms']:.0f} ms"
                f" ({bg['switch_rps']:.0f} req/s) | deploy {bg['deploy_s']:.2f} s, green answers"
                f" {bg['green_after_s']:.2f} s after it was issued"
                f" ({'switch' if switch_first else 'steady'} window first)"
            )
    after = [b["green_after_s"] for b in switches["c1"] + switches["c32"]]
    print(
        f"   green answered {c.median(after):.2f} s ({c.spread(after, '{:.2f}')}) after"
        " `mloop deploy --strategy blue_green` was issued (median, every round and level)"
    )
    return _results(figures, switches, rounds)


def _results(figures: dict, switches: dict, rounds: int) -> list[c.Result | c.Skipped]:
    results: list[c.Result | c.Skipped] = []

    def med(name: str, level: str) -> float:
        return c.median([f[level]["rps"] for f in figures[name]])

    cases = (
        ("ab", "ab 50/50, bc:1 = bc:2, vs direct", 0.9, "<= 10% loss"),
        ("ab-diff", "ab 50/50, bc:1 vs bc:3, vs direct", None, "info"),
        ("shadow", "shadow 100%, client req/s vs direct", 0.85, "<= 15% loss"),
    )
    for level in ("c1", "c32"):
        for name, case, target, text in cases:
            kept = [  # each slice against direct's of the same cycle, every round
                mine / theirs
                for i in range(rounds)
                for mine, theirs in zip(
                    figures[name][i][level]["slices"],
                    figures["direct"][i][level]["slices"],
                    strict=True,
                )
            ]
            lost = c.median([1 - k for k in kept])
            results.append(
                c.Result(
                    NAME,
                    f"{level}: {case}",
                    f"{med(name, level):.0f}/s",
                    f"{med('direct', level):.0f}/s",
                    c.median(kept),
                    c.spread(kept, "{:.2f}"),
                    target,
                    text,
                    display=f"{c.median(kept):.2f}x, loss {lost:.0%} ({c.spread(kept, '{:.2f}')})",
                )
            )
    for level in ("c1", "c32"):  # where the time goes: the server's CPU per answer
        for name, *_ in cases:
            more = [
                figures[name][i][level]["cpu_us"] / figures["direct"][i][level]["cpu_us"]
                for i in range(rounds)
            ]
            results.append(
                c.Result(
                    NAME,
                    f"{level}: server CPU per answer, {name} vs direct",
                    f"{c.median([f[level]['cpu_us'] for f in figures[name]]):.0f} us",
                    f"{c.median([f[level]['cpu_us'] for f in figures['direct']]):.0f} us",
                    c.median(more),
                    c.spread(more, "{:.2f}"),
                    None,
                    "info",
                    display=f"{c.median(more):.2f}x direct's ({c.spread(more, '{:.2f}')})",
                )
            )
    for level in ("c1", "c32"):
        found = switches[level]
        ratios = [b["switch_p99_ms"] / b["steady_p99_ms"] for b in found]
        inverse = [1 / x for x in ratios]  # higher = better, for the verdict
        results.append(
            c.Result(
                NAME,
                f"{level}: p99 of a blue/green switch window vs steady",
                f"{c.median([b['switch_p99_ms'] for b in found]):.2f} ms",
                f"{c.median([b['steady_p99_ms'] for b in found]):.2f} ms",
                c.median(inverse),
                c.spread(inverse, "{:.2f}"),
                0.5,
                "<= 2x",
                display=f"{c.median(ratios):.2f}x steady ({c.spread(ratios, '{:.2f}')})",
            )
        )
        slowest = [b["switch_max_ms"] / b["steady_max_ms"] for b in found]
        results.append(
            c.Result(
                NAME,
                f"{level}: slowest answer, switch window vs steady",
                f"{c.median([b['switch_max_ms'] for b in found]):.1f} ms",
                f"{c.median([b['steady_max_ms'] for b in found]):.1f} ms",
                c.median(slowest),
                c.spread(slowest, "{:.2f}"),
                None,
                "info",
                display=f"{c.median(slowest):.2f}x steady ({c.spread(slowest, '{:.2f}')})",
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="wrk seconds per load level")
    ap.add_argument("--window", type=int, default=6, help="wrk seconds per blue/green window")
    ap.add_argument(
        "--slices", type=int, default=4, help="cycles a load level's seconds are cut into"
    )
    args = ap.parse_args(argv)
    c.header(NAME, {"wrk": c.tool_version(["wrk", "--version"])})
    started = time.perf_counter()
    results = run(args.rounds, args.seconds, args.window, args.slices)
    print()
    bad = c.print_results(results)
    print(f"# {NAME}: {time.perf_counter() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
