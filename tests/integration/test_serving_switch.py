"""An endpoint's server switching versions under load loses no request, with 1 and 2 workers.

The servers are real processes (`python -m tests.integration.serving_helpers endpoint`) that
follow a plan file the test rewrites: the source function the workers poll reads it, as it
will read the store. Clients on 127.0.0.1 keep sending while the table switches; every answer
is counted by the `mloop-model` header it carries.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from mloop.server.slots import ServedVersion, weighted
from tests.integration.serving_helpers import split_body, write_plan
from tests.integration.test_serving import Served, data, metric
from tests.servers import wait_for

V1 = [("cancer:1", "stable", 100)]
V2 = [("cancer:2", "stable", 100)]
SPLIT = [("cancer:1", "stable", 50), ("cancer:2", "canary", 50)]


class Load:
    """Client threads on keep-alive connections, each sending until told to stop or the shared
    budget of requests is spent; every outcome is kept."""

    def __init__(self, url: str, clients: int = 4, budget: int = 3000, seconds: float = 20) -> None:
        rows, names, _ = data(1)
        self.body = split_body(rows, names)
        self.url = url
        self.models: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.last = ""
        self.budget = budget
        self.deadline = time.monotonic() + seconds
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _send(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopped.is_set() and time.monotonic() < self.deadline:
                with self.lock:
                    if self.budget == 0:
                        return
                    self.budget -= 1
                try:
                    answer = client.post(self.url + "/invocations", json=self.body)
                except httpx.TransportError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))
                    continue
                with self.lock:
                    self.statuses[answer.status_code] += 1
                    self.last = answer.headers.get("mloop-model", "")
                    self.models[self.last] += 1

    def seen(self, model: str) -> int:
        with self.lock:
            return self.models[model]

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(60)


def answered_by(load: Load, model: str) -> None:
    """Wait until the clients' last answers come from `model` (every worker switched)."""
    start = load.seen(model)
    wait_for(lambda: load.seen(model) >= start + 50 and load.last == model, 20, model)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_blue_green_switches_under_load_fail_no_request(tmp_path: Path, workers: str) -> None:
    plan = tmp_path / "plan.json"
    write_plan(plan, V1)
    served = Served("endpoint", "--plan", str(plan), "--workers", workers)
    try:
        load = Load(served.url)
        answered_by(load, "cancer:1")
        for _ in range(3):  # green takes all traffic at once, then blue again
            write_plan(plan, V2)
            answered_by(load, "cancer:2")
            write_plan(plan, V1)
            answered_by(load, "cancer:1")
        load.stop()
    finally:
        assert served.stop() == 0
    assert load.errors == []
    assert set(load.statuses) == {200}, load.statuses
    assert load.models["cancer:1"] > 0 and load.models["cancer:2"] > 0
    assert set(load.models) == {"cancer:1", "cancer:2"}


def test_per_version_metrics_add_up_across_workers(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    write_plan(plan, SPLIT)
    served = Served("endpoint", "--plan", str(plan), "--workers", "2")
    try:
        load = Load(served.url, budget=600)
        for thread in load.threads:
            thread.join(60)
        for model, role in (("cancer:1", "stable"), ("cancer:2", "canary")):
            labels = {"endpoint": "cancer", "model": model, "role": role}
            scraped = metric(served.url, "mloop_model_requests_total", status="200", **labels)
            assert scraped == load.models[model] > 0
            histogram = metric(served.url, "mloop_model_request_duration_seconds_count", **labels)
            assert histogram == load.models[model]
            assert metric(served.url, "mloop_model_errors_total", **labels) == 0
    finally:
        assert served.stop() == 0
    assert sum(load.models.values()) == 600 and load.errors == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_with_two_versions_finishes_both_slow_requests(
    tmp_path: Path, workers: str
) -> None:
    plan = tmp_path / "plan.json"
    write_plan(plan, SPLIT, sticky="header:user")
    served = Served("endpoint", "--plan", str(plan), "--delay", "2.0", "--workers", workers)
    choose = weighted(tuple(ServedVersion(*version) for version in SPLIT))
    keys = {SPLIT[choose(f"u{i}".encode())][0]: f"u{i}" for i in range(50)}  # one per version
    rows, names, _ = data(1)
    answers: list[httpx.Response] = []

    def post(user: str) -> None:
        headers = {"user": user}
        body = split_body(rows, names)
        answers.append(
            httpx.post(served.url + "/invocations", json=body, headers=headers, timeout=30)
        )

    threads = [threading.Thread(target=post, args=(user,)) for user in keys.values()]
    for thread in threads:
        thread.start()
    wait_for(lambda: metric(served.url, "mloop_requests_in_flight") == 2, 10, "two slow requests")
    served.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert served.process.wait(timeout=30) == 0
    assert sorted(a.status_code for a in answers) == [200, 200]
    assert {a.headers["mloop-model"] for a in answers} == {"cancer:1", "cancer:2"}
    assert {a.headers["mloop-variant"] for a in answers} == {"stable", "canary"}
