"""The server's monitor runs in a process of its own, never in a serving one: a real `mloop
serve --endpoint` that logs its predictions forks it (and its keeper) before any worker, at a
lower priority. A monitor killed while the server serves is counted and started again; it stops
when the server stops, and when the server is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import ROWS, models  # noqa: F401 - a fixture
from tests.servers import wait_for

MONITOR = "monitoring_interval: 1s\n"


@contextmanager
def server(root: Path, workers: int) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    """`mloop serve --endpoint web` as its own process, monitored every second: the process
    and a client of it, once its monitor has made a pass; stopped (and whatever it left behind
    killed) at the end."""
    settings = root / "mloop.yaml"
    settings.write_text(settings.read_text() + MONITOR)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-m", "mloop", "serve", "--endpoint", "web", "--port", "0"]
    log = root.parent / "serve.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    ours = {pid: _started(pid) for pid in _tree(process.pid)}
    try:
        assert "http://" in line, line + log.read_text()[-3000:]
        with httpx.Client(base_url=line.split(" at ")[1].split(" ")[0]) as client:
            wait_for(lambda: _monitor(client)["mloop_monitor_passes_total"] >= 1, 30, "a pass")
            yield process, client
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        _kill(ours)  # what a killed server left behind (its workers) is ours to end


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (pid -> child pids)."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended since it was listed
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found.setdefault(parent, []).append(int(entry.name))
    return found


def _tree(pid: int) -> set[int]:
    """The processes descended from `pid`."""
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _named(name: str) -> set[int]:
    """The live processes named `name` (as `ps` and `top` show them)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                comm = _comm(int(entry.name))
            except OSError:
                continue  # ended since it was listed
            if comm == name:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: only its exit status waits to be read)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _started(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot): a pid reused by another process differs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _kill(pids: dict[int, str | None]) -> None:
    """SIGKILL those of `pids` that still run, never a process that reused one's pid."""
    for pid, started in pids.items():
        if started is not None and _started(pid) == started and _alive(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _monitor(client: httpx.Client) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("mloop_monitor_"):
                found[sample.name] = sample.value
    return found


def _gone(pids: set[int]) -> bool:
    return not any(_alive(pid) for pid in pids)


@pytest.fixture(params=[1, 2], ids=["1 worker", "2 workers"])
def served(
    request: pytest.FixtureRequest,
    models: Path,  # noqa: F811 - the fixture imported above
) -> Iterator[tuple[subprocess.Popen[str], httpx.Client, int]]:
    """A monitored server with one worker (serving in the process that forks the monitor) and
    with two (a supervisor forks both): the process, a client, the number of workers."""
    with server(models, request.param) as (process, client):
        yield process, client, request.param


def test_the_monitor_runs_in_its_own_process_is_kept_and_stops_with_the_server(
    served: tuple[subprocess.Popen[str], httpx.Client, int],
    models: Path,  # noqa: F811
) -> None:
    process, client, workers = served
    tree = _tree(process.pid)
    (monitor,) = _named("mloop-monitor") & tree
    (keeper,) = _named("mloop-mon-keep") & tree
    assert _parent(keeper) == process.pid and _parent(monitor) == keeper
    serving = {process.pid} if workers == 1 else set(_children()[process.pid]) - {keeper}
    assert len(serving) == workers and monitor not in serving
    assert all(_nice(monitor) > _nice(pid) for pid in serving)  # serving gets the CPU first

    # a monitor that dies is counted and started again; the server serves all along
    errors = _monitor(client)["mloop_monitor_errors_total"]
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: bool(_named("mloop-monitor") & _tree(keeper) - {monitor}), 30, "again")
    wait_for(lambda: _monitor(client)["mloop_monitor_errors_total"] > errors, 30, "counted")
    assert client.post("/invocations", json={"inputs": ROWS}).status_code == 200
    (again,) = _named("mloop-monitor") & _tree(keeper)
    passes = _monitor(client)["mloop_monitor_passes_total"]
    wait_for(lambda: _monitor(client)["mloop_monitor_passes_total"] > passes, 30, "a pass")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    wait_for(lambda: _gone({keeper, again}), 30, "the monitor stopped with the server")
    said = (models.parent / "serve.log").read_text()
    assert "monitor of endpoint web: its process ended (killed by SIGKILL)" in said, said


def test_the_monitor_does_not_outlive_a_killed_server(
    served: tuple[subprocess.Popen[str], httpx.Client, int],
) -> None:
    process = served[0]
    monitors = (_named("mloop-monitor") | _named("mloop-mon-keep")) & _tree(process.pid)
    assert len(monitors) == 2
    process.kill()
    process.wait(timeout=30)
    wait_for(lambda: _gone(monitors), 30, "the monitor gone with its server")


def test_the_workers_of_a_killed_supervisor_stop_and_store_what_they_logged(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
) -> None:
    """SIGKILL reaches only the supervisor; its workers are told (SIGTERM) and stop as for a
    graceful stop, storing the requests they logged, instead of serving on as orphans."""
    with server(models, 2) as (process, client):
        answered = set()
        for _ in range(30):
            answer = client.post("/invocations", json={"inputs": ROWS})
            assert answer.status_code == 200
            answered.add(answer.headers["mloop-request-id"])
        monitors = _named("mloop-monitor") | _named("mloop-mon-keep")
        workers = _tree(process.pid) - monitors
        assert len(workers) == 2
        process.kill()
        process.wait(timeout=30)
        wait_for(lambda: _gone(workers), 30, "the workers stopped with their supervisor")
    done = cli("monitor", "export", "web", "--since", "1h", "-o", "log.parquet")
    assert done.code == 0, done.err
    logged = pq.read_table(models / "log.parquet").column("request_id").to_pylist()
    assert set(logged) == answered
