"""`mloop serve` against clients that are slow, greedy or never finish, as real processes on
127.0.0.1 talking to real sockets: request bodies are read outside the predict slots and under
their own time-out; request heads are bounded in size and time; open connections are bounded;
every option is checked; a token from the environment does not stay in the process."""

from __future__ import annotations

import os
import resource
import secrets
import select
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import wait_for

MLOOP = [sys.executable, "-m", "mloop"]
ROW = b'{"dataframe_records":[{"a":1.0,"b":2.0,"n":3}]}'


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with `clf:1`, a logistic regression on three columns (as the probes used)."""
    from sklearn.linear_model import LogisticRegression

    import mloop
    from mloop.project import init_project

    folder, _ = init_project(tmp_path_factory.mktemp("limits") / "proj")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"a": rng.normal(size=60), "b": rng.normal(size=60), "n": rng.integers(0, 9, 60)}
    )
    model = LogisticRegression().fit(frame, frame.a > 0)
    mloop.register_model(model, "clf", input_example=frame.head(), project=folder)
    return folder


@dataclass
class Server:
    process: subprocess.Popen[str]
    host: str
    port: int
    log: IO[str]  # the server's stderr

    def __post_init__(self) -> None:
        self.opened: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        self.opened.append(sock)
        return sock

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()


@contextmanager
def serving(
    root: Path,
    *options: str,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """`mloop serve clf:1 --port 0 OPTIONS` until the block ends; stopped with SIGTERM."""
    command = [*MLOOP, "serve", "clf:1", "--port", "0", *options]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env={**clean, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            preexec_fn=preexec,
        )
        assert process.stdout is not None
        server = None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 60)
            line = process.stdout.readline() if ready else ""
            assert " at http://" in line, f"not serving: {line!r} {log.seek(0)} {log.read()}"
            host, port = line.split(" at http://")[1].split()[0].rsplit(":", 1)
            server = Server(process, host, int(port), log)
            yield server
        finally:
            for sock in server.opened if server else []:
                sock.close()
            process.terminate()
            process.wait(30)


def request(path: str = "/invocations", body: bytes = ROW, extra: bytes = b"") -> bytes:
    """A raw HTTP/1.1 POST of `body` (kept alive) with `extra` header lines."""
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n%s\r\n" % (path.encode(), len(body), extra)
    ) + body


def answer_of(sock: socket.socket, timeout: float = 10) -> tuple[bytes, bool]:
    """What the server sends on `sock` until it closes it, and whether it did within `timeout`."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return b"".join(chunks), False
    return b"".join(chunks), True


class Answers:
    """The answers on one kept-alive connection, one at a time (Content-Length ends each)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes:
        self.sock.settimeout(10)
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head = self.buffer.partition(b"\r\n\r\n")[0]
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        end = len(head) + 4 + length
        while len(self.buffer) < end:
            self._read()
        answer, self.buffer = self.buffer[:end], self.buffer[end:]
        return answer

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server after {self.buffer[:200]!r}")
        self.buffer += chunk


def trickle(sock: socket.socket, data: bytes, every: float = 0.2) -> tuple[bytes, bool]:
    """Send `data` one byte each `every` seconds until the server answers; then its answer."""
    for byte in data:
        readable, _, _ = select.select([sock], [], [], every)  # the answer, or the next byte
        if readable:
            break
        sock.sendall(bytes([byte]))
    return answer_of(sock)


def status_of(answer: bytes) -> int:
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0


def in_flight(server: Server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mloop_requests_in_flight":
                return float(sample.value)
    return 0.0


def refusals(server: Server, status: int) -> float:
    """How many answers of `status` /metrics counts under endpoint "other" (refusals made
    below the app, where no route was read)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            wanted = {"endpoint": "other", "status": str(status)}
            if sample.name == "mloop_requests_total" and sample.labels == wanted:
                return float(sample.value)
    return 0.0


def predict(server: Server, timeout: float = 5, token: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(server.url + "/invocations", content=ROW, headers=headers, timeout=timeout)


# (a) bodies --------------------------------------------------------------------------------
def test_clients_stalled_in_their_bodies_do_not_hold_the_predict_slots(root: Path) -> None:
    # 8 slots, 8 places in the queue: 12 clients that send one byte of a 400-byte body and
    # then nothing used to take every slot and part of the queue, and a normal request waited
    # behind them for the whole --timeout.
    with serving(root, "--max-concurrency", "8", "--max-queue", "8") as server:
        stalled = [server.connect() for _ in range(12)]
        for sock in stalled:
            sock.sendall(request(body=b" " * 400)[:-399])
        wait_for(lambda: in_flight(server) == 12, 30, "12 requests reading their bodies")
        answer = predict(server)
        assert answer.status_code == 200, answer.text
        assert list(answer.json()) == ["predictions"]


def test_a_body_slower_than_the_body_timeout_gets_408_and_its_connection_closed(
    root: Path,
) -> None:
    with serving(root, "--body-timeout", "1") as server:
        stalled, trickling = server.connect(), server.connect()
        stalled.sendall(request(body=b" " * 400)[:-399])
        trickling.sendall(request(body=b" " * 400)[:-400])
        assert predict(server).status_code == 200  # meanwhile
        for answer, closed in (trickle(trickling, b" " * 400), answer_of(stalled)):
            assert status_of(answer) == 408 and closed, answer
            assert b'"code":"request_timeout"' in answer and b"--body-timeout" in answer
        assert predict(server).status_code == 200


def test_bodies_held_at_once_are_bounded_and_one_past_the_budget_gets_503(root: Path) -> None:
    # Bodies are read before a slot is taken, so without a budget every open connection could
    # hold a body of the largest size at once. A holds 50 KB of its 60 KB body while a 60 KB
    # body would pass the 100 KiB budget: it is turned away; a small one still fits.
    big = b" " * 60_000 + ROW  # leading blanks: still valid JSON
    limits = ("--max-body-size", "64KiB", "--max-body-memory", "100KiB")
    with serving(root, *limits) as server:
        holder = server.connect()
        holder.sendall(request(body=big)[: -(len(big) - 50_000)])

        def refused() -> bool:
            sock = server.connect()
            sock.sendall(request(body=big))
            answer, closed = answer_of(sock)
            if status_of(answer) == 200:
                return False
            assert status_of(answer) == 503 and closed, answer
            assert b"retry-after: 1" in answer.lower() and b"--max-body-memory" in answer
            return True

        wait_for(refused, 30, "a 60 KB body refused while 50 KB of another are held")
        assert predict(server).status_code == 200  # a small body still fits
        holder.sendall(big[50_000:])
        assert status_of(Answers(holder).next()) == 200
        sock = server.connect()  # the budget is given back once a request ends
        sock.sendall(request(body=big))
        assert status_of(Answers(sock).next()) == 200


# (b) request heads and connections -----------------------------------------------------------
def test_a_request_head_over_the_limit_gets_431_and_its_connection_closed(root: Path) -> None:
    with serving(root, "--max-header-size", "8KiB") as server:
        fits = server.connect()
        answers = Answers(fits)
        fits.sendall(request(extra=b"X-Fill: %s\r\n" % (b"a" * 6000)))
        assert status_of(answers.next()) == 200
        # The limit is per request: 100 small requests in one write, 15 KiB, all answered.
        fits.sendall((b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + request()) * 50)
        assert [status_of(answers.next()) for _ in range(100)] == [200] * 100
        for extra, path in ((b"X-Big: %s\r\n" % (b"a" * 9000), "/invocations"), (b"", "/" * 9000)):
            sock = server.connect()
            sock.sendall(request(path, extra=extra))
            answer, closed = answer_of(sock)
            assert status_of(answer) == 431 and closed, answer
            assert b"8192 bytes" in answer and b"--max-header-size" in answer
        # A header that never ends: the server stops reading it at the limit and hangs up,
        # long before the 256 MiB this client would send (that took 89 s and 500 MB).
        endless = server.connect()
        endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # once the server closed
            for _ in range(256):
                endless.sendall(b"a" * 2**20)
        assert predict(server).status_code == 200
        assert refusals(server, 431) == 3  # each refusal is counted in /metrics


def test_a_request_head_slower_than_the_header_timeout_is_cut_off(root: Path) -> None:
    with serving(root, "--header-timeout", "1") as server:
        silent, line, headers = (server.connect() for _ in range(3))
        line.sendall(b"GET /hea")
        headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answers = {
            "silent": answer_of(silent),
            "line": answer_of(line),
            "headers": answer_of(headers),
            # one byte each 0.2 s keeps a connection busy but does not reset the clock
            "trickling": trickle(server.connect(), b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 99),
        }
        assert answers.pop("silent") == (b"", True)  # nothing came: closed without a word
        for what, (answer, closed) in answers.items():
            assert status_of(answer) == 408 and closed, what
            assert b"--header-timeout" in answer
        assert predict(server).status_code == 200
        assert refusals(server, 408) == 3  # the silent one got no answer, so no count


def test_past_max_connections_new_ones_are_turned_away_and_open_ones_go_on(root: Path) -> None:
    with serving(root, "--max-connections", "50", "--header-timeout", "60") as server:
        established = server.connect()
        held = [server.connect() for _ in range(60)]  # 49 more fit; 11 do not
        for sock in held:
            sock.sendall(b"G")  # a request line never finished

        def refused() -> list[socket.socket]:
            readable, _, _ = select.select(held, [], [], 0)
            return readable

        wait_for(lambda: len(refused()) == 11, 30, "11 connections turned away")
        for sock in refused():
            answer, closed = answer_of(sock)
            assert status_of(answer) == 503 and closed
            assert b"retry-after: 1" in answer and b"--max-connections" in answer
        answers = Answers(established)
        for _ in range(2):  # the established connection is served, and kept alive
            established.sendall(request())
            assert status_of(answers.next()) == 200
        assert len(refused()) == 11  # the 49 others are still open
        for sock in held:
            sock.close()
        wait_for(lambda: _answers(server), 30, "a new connection served again")
        # each refusal is counted (and any of the polls just above that came too early)
        assert refusals(server, 503) >= 11


def _answers(server: Server) -> bool:
    try:
        return predict(server).status_code == 200
    except httpx.TransportError:
        return False


def test_with_few_file_descriptors_the_server_serves_fewer_connections_not_none(
    root: Path,
) -> None:
    # 256 file descriptors and the default --max-connections 1024: accepting on until EMFILE
    # would drop every new client; the server fits its limit to the descriptors instead.
    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with serving(root, preexec=few_descriptors) as server:
        assert "serving at most 128 connections per worker" in server.stderr()
        assert "ulimit -n" in server.stderr()
        held = [server.connect() for _ in range(200)]
        for sock in held:
            sock.sendall(b"G")
        wait_for(
            lambda: len(select.select(held, [], [], 0)[0]) == 72, 30, "72 connections turned away"
        )
        for sock in held:
            sock.close()
        wait_for(lambda: _answers(server), 30, "a new connection served again")


# (c) options ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("--timeout", "0", "is not a finite number above 0 and at most 86400"),
        ("--timeout", "-1", "is not a finite number above 0 and at most 86400"),
        ("--timeout", "nan", "is not a finite number above 0 and at most 86400"),
        ("--timeout", "inf", "is not a finite number above 0 and at most 86400"),
        ("--body-timeout", "0", "is not a finite number above 0 and at most 86400"),
        ("--header-timeout", "nan", "is not a finite number above 0 and at most 86400"),
        ("--max-wait-ms", "-1", "is not a finite number from 0 to 10000"),
        ("--max-wait-ms", "nan", "is not a finite number from 0 to 10000"),
        ("--max-queue", "-1", "is not a whole number from 0 to 1000000"),
        ("--max-concurrency", "0", "is not a whole number from 1 to 100000"),
        ("--max-batch-size", "0", "is not a whole number from 1 to 1000000"),
        ("--workers", "0", "is not a whole number from 1 to 1024"),
        ("--workers", "two", "is not a whole number from 1 to 1024"),
        (
            "--workers",
            "\u0661\u0662",
            "is not a whole number from 1 to 1024",
        ),  # Arabic-Indic 12: not ASCII
        ("--max-connections", "0", "is not a whole number from 1 to 1000000"),
        ("--max-body-size", "0", "size from 1 byte to 1GiB"),
        ("--max-body-size", "2GiB", "size from 1 byte to 1GiB"),
        ("--max-header-size", "100", "size from 1KiB to 1MiB"),
        ("--max-body-memory", "0", "size from 1 byte to 64GiB"),
        ("--port", "-1", "(0-65535; 0 picks a free one)"),
    ],
)
def test_every_serve_option_out_of_range_is_one_error_naming_it_its_value_and_the_range(
    option: str, value: str, accepted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mloop.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "clf:1", option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    [error] = [line for line in err.splitlines() if "error:" in line]
    assert f"error: argument {option}: " in error
    assert f"'{value}'" in error and accepted in error
    assert "Traceback" not in err


def test_a_body_memory_below_the_body_size_is_refused(
    root: Path, cli: Callable[..., object]
) -> None:
    os.chdir(root)
    done = cli("serve", "clf:1", "--max-body-size", "1MiB", "--max-body-memory", "64KiB")
    assert done.code == 1  # type: ignore[attr-defined]
    assert done.err.splitlines() == [  # type: ignore[attr-defined]
        "error: --max-body-memory 64KiB is below --max-body-size 1MiB: no body of the largest "
        "size could ever be read",
        "hint: raise --max-body-memory, or lower --max-body-size",
    ]


def test_the_limits_are_in_the_help_with_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from mloop.cli.main import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for text in (
        "--body-timeout SECONDS answer 408",
        "(default 30.0)",
        "--max-connections N open connections",
        "(default 1024)",
        "--max-header-size SIZE answer 431",
        "(default 64KiB)",
        "--header-timeout SECONDS close a connection",
        "(default 10.0)",
        "read from FILE (preferred)",
    ):
        assert text in shown


# 5. the token --------------------------------------------------------------------------------
def test_a_token_from_the_environment_is_wiped_from_every_process_and_still_required(
    root: Path,
) -> None:
    token = "from-the-environment-" + secrets.token_urlsafe(16)
    with serving(root, "--workers", "2", env={"MLOOP_SERVE_TOKEN": token}) as server:
        assert predict(server).status_code == 401
        assert predict(server, token=token).status_code == 200
        parent = server.process.pid
        children = children_of(parent)
        names = {pid: Path(f"/proc/{pid}/comm").read_text().strip() for pid in children}
        workers = [pid for pid, name in names.items() if name != "mloop-mon-keep"]
        assert len(workers) == 2 and len(children) == 3  # and the monitor's keeper
        (keeper,) = [pid for pid in children if pid not in workers]
        wait_for(lambda: len(children_of(keeper)) == 1, 30, "the monitor, the keeper's child")
        for pid in (parent, *children, *children_of(keeper)):
            assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), pid
            assert token.encode() not in stack_of(pid), pid
            assert b"MLOOP_SERVE_TOKEN" not in Path(f"/proc/{pid}/environ").read_bytes()


def children_of(pid: int) -> list[int]:
    return [
        int(child)
        for children in Path(f"/proc/{pid}/task").glob("*/children")
        for child in children.read_text().split()
    ]


def stack_of(pid: int) -> bytes:
    """The bytes of a process's main stack, where the kernel put its environment at exec."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if line.endswith("[stack]"):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            with open(f"/proc/{pid}/mem", "rb") as memory:
                memory.seek(start)
                return memory.read(end - start)
    raise AssertionError(f"no stack in /proc/{pid}/maps")
