"""Real servers for the tests, started once per test session (per xdist worker) on 127.0.0.1.

- `postgres_server`: a throwaway PostgreSQL 15 cluster made with the machine's `initdb` and
  `pg_ctl` (as the `postgres` user when the tests run as root, since initdb refuses root);
  `postgres_db` gives each test a fresh, empty database on it.
- `s3_server`: moto's S3-compatible server; it points the standard AWS environment variables
  (`AWS_ENDPOINT_URL`, dummy keys, region) at itself, so s3fs and boto3 reach it with no
  extra configuration, exactly as they would reach a real endpoint. `s3_prefix` gives each test
  a fresh bucket.

- `prometheus(targets)`: the Debian package's Prometheus scraping the given servers, for as
  long as the `with` block lasts (sending its alerts to an Alertmanager when given one).
- `alertmanager(webhook)`: the Debian package's Alertmanager, routing every alert at once to
  the `webhook` URL (a small HTTP server of the test's own).

Tests using them carry `pytest.mark.postgres` / `pytest.mark.s3` (declared in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STARTUP_TIMEOUT = 60.0
STARTUP_FAILURES = ("could not bind", "could not create any", "aborting startup", "PANIC")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it returns True; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready after {timeout:.0f} s")
        time.sleep(delay)  # the poll interval of a wait-for-condition, not a fixed wait
        delay = min(delay * 2, 0.2)


# PostgreSQL ---------------------------------------------------------------------------------
def _pg_connect(server_uri: str, dbname: str = "postgres") -> Any:
    import psycopg

    port = urlsplit(server_uri).port
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
    )


@contextlib.contextmanager
def postgres_database(server_uri: str) -> Iterator[str]:
    """Create a fresh database `t_<hex>` on the server, yield its URI, then drop it."""
    name = f"t_{uuid.uuid4().hex}"
    with _pg_connect(server_uri) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_uri.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with contextlib.suppress(Exception), _pg_connect(server_uri) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # closes its sessions


def _as_postgres(args: list[str]) -> list[str]:
    """initdb refuses to run as root: run the cluster as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _pg(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_postgres([str(PG_BIN / args[0]), *args[1:]]),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )


def _start_postgres(folder: Path) -> str:
    data, sockets, log = folder / "data", folder / "sockets", folder / "server.log"
    for attempt in range(3):
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = _pg(
            folder, "pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-W", "start"
        )
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}")
        uri = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

        def ready(uri: str = uri) -> bool:
            text = log.read_text(errors="replace") if log.exists() else ""
            if any(marker in text for marker in STARTUP_FAILURES):
                raise RuntimeError(text)
            try:
                _pg_connect(uri).close()
            except Exception:  # the server is still starting
                return False
            return True

        try:
            wait_for(ready, STARTUP_TIMEOUT, f"PostgreSQL on port {port}")
        except RuntimeError as exc:
            _pg(folder, "pg_ctl", "-D", str(data), "-m", "immediate", "stop")
            if "could not bind" in str(exc) and attempt < 2:  # another worker took the port
                log.unlink(missing_ok=True)
                continue
            raise
        _CLUSTERS[uri] = (folder, options)
        return uri
    raise AssertionError("unreachable")


_CLUSTERS: dict[str, tuple[Path, str]] = {}  # a running server's URI -> its folder, options


@contextlib.contextmanager
def postgres_outage(server_uri: str) -> Iterator[None]:
    """The session's PostgreSQL server stopped (its clients disconnected) for the `with` block,
    then started again on the same port, for a test of what a client does meanwhile."""
    folder, options = _CLUSTERS[server_uri]
    data, log = folder / "data", folder / "server.log"
    stopped = _pg(folder, "pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    if stopped.returncode != 0:
        raise RuntimeError(f"pg_ctl stop failed: {stopped.stderr}")
    try:
        yield
    finally:
        started = _pg(
            folder, "pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start"
        )
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 cluster for this session; yields `postgresql+psycopg://postgres@…/postgres`."""
    folder = Path(tempfile.mkdtemp(prefix="mloop-pg-"))
    try:
        (folder / "sockets").mkdir()
        if os.geteuid() == 0:
            for path in (folder, folder / "sockets"):
                shutil.chown(path, "postgres", "postgres")
        init = _pg(
            folder,
            "initdb",
            "-D",
            str(folder / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
        uri = _start_postgres(folder)
        try:
            yield uri
        finally:
            _pg(folder, "pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database `t_<hex>` on the session's server; returns its URI."""
    with postgres_database(postgres_server) as uri:
        yield uri


# S3 (moto) ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server; yields its endpoint URL, which AWS_ENDPOINT_URL names for every client."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Port 0: the OS picks a free port as the server binds, so two xdist workers cannot race
    # for one (with a port chosen beforehand, a lost race would leave start() waiting forever).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    endpoint = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    try:
        wait_for(ready, STARTUP_TIMEOUT, f"moto S3 on port {port}")
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_prefix(s3_server: str) -> str:
    """A fresh bucket on the moto server; returns `s3://BUCKET/objects`."""
    import boto3

    bucket = f"t-{uuid.uuid4().hex}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/objects"


# Prometheus ---------------------------------------------------------------------------------
@contextlib.contextmanager
def prometheus(
    targets: list[str],
    interval: str = "1s",
    rules: list[Path] | None = None,
    alertmanager: str | None = None,
) -> Iterator[str]:
    """A real Prometheus (the Debian package) scraping `targets` (base URLs), evaluating the
    rule files `rules` and sending what fires to `alertmanager` (a base URL); yields its URL.

    Started per use on a free port with its own data folder, and stopped by its PID.
    """
    hosts = [urlsplit(t).netloc for t in targets]
    config = (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        "scrape_configs:\n  - job_name: mloop\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(h) for h in hosts)}]\n"
        + (f"rule_files: [{', '.join(repr(str(r)) for r in rules)}]\n" if rules else "")
    )
    if alertmanager is not None:
        config += (
            "alerting:\n  alertmanagers:\n    - static_configs:\n"
            f"        - targets: [{urlsplit(alertmanager).netloc!r}]\n"
        )
    with _daemon(
        "prometheus",
        config,
        lambda folder, port: [
            f"--config.file={folder / 'config.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    ) as url:
        yield url


@contextlib.contextmanager
def alertmanager(
    webhook: str, wait: str = "1s", repeat: str = "1h", token: str | None = None
) -> Iterator[str]:
    """A real Alertmanager (the Debian package) sending every alert to `webhook` (a URL that
    takes its JSON posts), grouped by alert and feature, after `wait`, again every `repeat`
    while it fires, with `Authorization: Bearer TOKEN` when given one; yields its URL.

    Clustering is off (it would listen on every interface), and it is stopped by its PID.
    """
    config = (
        "route:\n  receiver: test\n  group_by: [alertname, feature]\n"
        f"  group_wait: {wait}\n  group_interval: {wait}\n  repeat_interval: {repeat}\n"
        "receivers:\n  - name: test\n    webhook_configs:\n"
        f"      - url: {webhook!r}\n        send_resolved: false\n"
    )
    if token is not None:
        config += f"        http_config: {{authorization: {{credentials: {token!r}}}}}\n"
    with _daemon(
        "prometheus-alertmanager",
        config,
        lambda folder, port: [
            f"--config.file={folder / 'config.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
    ) as url:
        yield url


@contextlib.contextmanager
def _daemon(name: str, config: str, arguments: Callable[[Path, int], list[str]]) -> Iterator[str]:
    """Run the Debian package's `name` with `config` in a folder of its own on a free port,
    until it answers /-/ready; yield its URL; stop it by its PID."""
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} is not installed: `make system` installs it")
    folder = Path(tempfile.mkdtemp(prefix=f"mloop-{name}-"))
    (folder / "config.yml").write_text(config)
    port = free_port()
    with (folder / "daemon.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, *arguments(folder, port)], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            log_text = (folder / "daemon.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_text}")
        import httpx

        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, STARTUP_TIMEOUT, f"{name} on port {port}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
