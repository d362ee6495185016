"""`mloop serve --endpoint` as a user runs it: real server processes on one store follow
`mloop deploy`, a canary climbs its steps on real traffic and is promoted, a canary that errs is
rolled back by the analysis over every server's reports, a blue/green switch drops no request,
and every answer names the endpoint, version and variant that gave it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import mloop
from mloop.project import Project
from tests.conftest import CliResult
from tests.servers import wait_for

ROWS = [[0.5, -1.0, 2.0]]
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
sys.path.insert(0, str(EXAMPLES))
from flaky_model import Flaky  # noqa: E402 - the tour's broken version, imported as users do


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def models(
    request: pytest.FixtureRequest, make_project: Callable[..., Path], cli: Callable[..., CliResult]
) -> Path:
    """A project with churn:1 and churn:2 and the endpoint `web` serving churn:1, on SQLite and
    on PostgreSQL (the store several machines' servers share)."""
    from sklearn.linear_model import LogisticRegression

    project = make_project(store=request.param)
    x = np.random.default_rng(0).normal(size=(60, 3))
    for i in range(2):
        mloop.register_model(LogisticRegression().fit(x, x[:, i] > 0), "churn", input_example=x[:2])
    assert cli("deploy", "web", "churn:1").code == 0
    return project


@contextmanager
def serving(root: Path, *args: str) -> Iterator[str]:
    """`mloop serve --endpoint web` as its own process; its log goes to a file (a model that
    fails logs a traceback per request: an unread pipe would fill and stall the server)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-m", "mloop", "serve", "--endpoint", "web", "--port", "0", *args]
    log = root.parent / f"serve-{len(list(root.parent.glob('serve-*.log')))}.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            command, cwd=root, stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if "http://" not in line:
            process.kill()
            raise AssertionError(line + log.read_text()[-3000:])
        try:
            yield line.split(" at ")[1].split(" ")[0]
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, log.read_text()[-3000:]


class Traffic:
    """A client on its own thread sending predicts until stopped; counts answers by version."""

    def __init__(self, *urls: str) -> None:
        self.urls = urls
        self.by_model: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.headers: dict[str, str] = {}
        self.recent: deque[str] = deque(maxlen=50)  # the versions of the last 50 answers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        clients = [httpx.Client(base_url=url, timeout=30) for url in self.urls]
        body = {"inputs": ROWS}
        sent = 0
        while not self._stop.is_set() and sent < 20_000:
            client = clients[sent % len(clients)]
            sent += 1
            try:
                answer = client.post("/invocations", json=body)
            except httpx.HTTPError:
                self.errors += 1
                continue
            self.statuses[answer.status_code] += 1
            self.by_model[answer.headers.get("mloop-model", "?")] += 1
            self.recent.append(answer.headers.get("mloop-model", "?"))
            self.headers = dict(answer.headers)


def _state(cli: Callable[..., CliResult]) -> dict[str, Any]:
    result = cli("endpoints", "status", "web", "--json")
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def test_a_canary_climbs_on_real_traffic_and_is_promoted(
    models: Path, cli: Callable[..., CliResult]
) -> None:
    with serving(models) as one, serving(models) as two, Traffic(one, two) as traffic:
        wait_for(lambda: traffic.by_model["churn:1"] > 20, 60, "traffic to churn:1")
        assert traffic.headers["mloop-endpoint"] == "web"
        assert traffic.headers["mloop-variant"] == "stable"
        deployed = cli(
            "deploy",
            "web",
            "churn:2",
            "--strategy",
            "canary",
            "--steps",
            "20,60",
            "--interval",
            "2s",
            "--min-requests",
            "10",
        )
        assert deployed.code == 0, deployed.err
        watched = cli("endpoints", "status", "web", "--watch", "--timeout", "120")
        assert watched.code == 0, watched.out + watched.err
        assert "ready" in watched.out and "advanced" in watched.out
        assert watched.out.rstrip().endswith("endpoint web: promoted (churn:2 100%)")
        status = _state(cli)
        assert status["state"] == "promoted", status
        assert status["versions"] == [
            {"model": "churn:2", "role": "stable", "weight": 100, **_numbers(status, 0)}
        ]
        verdicts = [s["verdict"] for s in status["analysis"] if s["verdict"]]
        assert verdicts[-2:] == ["pass", "pass"]
        settled = Counter(traffic.by_model)
        wait_for(lambda: traffic.by_model["churn:2"] > settled["churn:2"] + 50, 60, "traffic on v2")
    assert traffic.errors == 0
    assert set(traffic.statuses) == {200}, traffic.statuses


def _numbers(status: dict[str, Any], index: int) -> dict[str, Any]:
    """The traffic numbers of version `index`, whatever they are (they vary run to run)."""
    keys = ("requests", "errors", "success_rate", "p99", "outcomes", "outcome_mean")
    keys += ("agreement_rate", "dropped")
    return {k: status["versions"][index][k] for k in keys}


@pytest.mark.parametrize(
    ("broken", "gate"),
    [(Flaky(every=20), "success_rate"), (Flaky(every=0, delay=0.6), "p99")],
    ids=["5pct-5xx", "600ms-slower"],
)
def test_a_failing_canary_is_rolled_back_by_the_analysis(
    models: Path, cli: Callable[..., CliResult], broken: Flaky, gate: str
) -> None:
    """A canary answering 5xx on 5% of requests, or 600 ms late, ends at 0% with a rollback
    naming the failed gate, within `threshold + 1` intervals of its first traffic."""
    x = np.random.default_rng(0).normal(size=(4, 3))
    mloop.register_model(broken, "churn", input_example=x)  # churn:3
    threshold = 2
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serving(models, "--trust")) for _ in range(2)]
        # several clients: a slow canary holds each of them 0.6 s per answer it gives
        clients = [stack.enter_context(Traffic(*urls)) for _ in range(8)]
        wait_for(lambda: sum(t.by_model["churn:1"] for t in clients) > 40, 60, "churn:1 traffic")
        deployed = cli(
            "deploy", "web", "churn:3", "--strategy", "canary", "--steps", "50",
            "--interval", "3s", "--min-requests", "5", "--threshold", str(threshold),
        )  # fmt: skip
        assert deployed.code == 0, deployed.err
        watched = cli("endpoints", "status", "web", "--watch", "--timeout", "120")
        assert watched.code == 1, watched.out + watched.err
        assert "rolled_back" in watched.out and gate in watched.out
        status = _state(cli)
        assert status["state"] == "rolled_back", status["reason"]
        assert f"{gate} failed {threshold} intervals in a row" in status["reason"]
        assert [(v["model"], v["weight"]) for v in status["versions"]] == [
            ("churn:1", 100),
            ("churn:3", 0),
        ]
        analysed = [s for s in status["analysis"] if s["verdict"]]
        assert threshold <= len(analysed) <= threshold + 1, analysed
        assert sum(t.by_model["churn:3"] for t in clients) > 0  # it had its share before
        # every server follows the rollback within its poll: then churn:3 answers no more
        wait_for(
            lambda: all(set(t.recent) == {"churn:1"} for t in clients), 30, "the servers to follow"
        )
        after = [Counter(t.by_model) for t in clients]
        wait_for(lambda: clients[0].by_model["churn:1"] > after[0]["churn:1"] + 50, 60, "v1 again")
        assert [t.by_model["churn:3"] for t in clients] == [a["churn:3"] for a in after]
    assert all(t.errors == 0 for t in clients)
    event = Project.open().endpoints.history("web")[0]
    assert event.actor == "rollout" and event.action == "endpoint.rolled_back"
    assert gate in event.reason and event.details["analysis"]["verdict"] == "fail"


def test_a_version_that_cannot_load_fails_its_rollout_and_gets_no_request(
    models: Path, cli: Callable[..., CliResult]
) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3))
    mloop.register_model(Flaky(every=5), "churn", input_example=x)  # churn:3, needs --trust
    with serving(models) as url, Traffic(url) as traffic:
        wait_for(lambda: traffic.by_model["churn:1"] > 20, 60, "traffic to churn:1")
        assert cli("deploy", "web", "churn:3", "--strategy", "canary").code == 0
        wait_for(lambda: _state(cli)["state"] != "progressing", 60, "the rollout to fail")
        status = _state(cli)
        assert status["state"] == "failed"
        assert "churn:3 failed its readiness check" in status["reason"]
        assert "trust" in status["reason"]
        ready = httpx.get(url + "/readyz").json()
        assert ready["deployment"] == "current"
        more = traffic.by_model["churn:1"]
        wait_for(lambda: traffic.by_model["churn:1"] > more + 20, 60, "churn:1 still serving")
    assert traffic.by_model["churn:3"] == 0
    assert set(traffic.statuses) == {200} and traffic.errors == 0


def test_blue_green_switches_under_load_with_no_failed_request(
    models: Path, cli: Callable[..., CliResult]
) -> None:
    with (
        serving(models, "--workers", "2") as one,
        serving(models) as two,
        Traffic(one, two) as traffic,
    ):
        wait_for(lambda: traffic.by_model["churn:1"] > 20, 60, "traffic to churn:1")
        assert cli("deploy", "web", "churn:2", "--strategy", "blue_green").code == 0
        # each worker of each server follows within its poll: then green answers everything
        wait_for(lambda: set(traffic.recent) == {"churn:2"}, 60, "every worker on green")
        switched = Counter(traffic.by_model)
        wait_for(lambda: traffic.by_model["churn:2"] > switched["churn:2"] + 100, 60, "more")
        assert traffic.by_model["churn:1"] == switched["churn:1"]  # all at once, not a share
        assert cli("endpoints", "rollback", "web").code == 0
        wait_for(lambda: set(traffic.recent) == {"churn:1"}, 60, "every worker back on blue")
    assert traffic.errors == 0
    assert set(traffic.statuses) == {200}, traffic.statuses
