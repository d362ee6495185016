"""Running the model-serving app: one process, or pre-forked workers on one socket.

The socket is bound here, not by uvicorn: uvicorn's multi-worker mode binds with `proto=0`, so
asyncio never sets TCP_NODELAY on its connections and Nagle's algorithm adds ~44 ms to every
kept-alive request (perf-baselines.md, section 2). Binding with `IPPROTO_TCP` and TCP_NODELAY
(inherited by accepted connections) avoids that. Workers are forked from this process after
the bind, each loads the model itself (`predictor_factory` is called in the worker, so no
model crosses a process boundary), and all serve the same socket with uvloop and httptools.

Stopping: SIGTERM (or Ctrl+C) makes every worker stop accepting, finish the requests in flight,
and exit 0. The parent closes its copy of the socket first, so new connections are refused at
once instead of waiting in a backlog nobody reads. A worker that dies while serving is started
again; one that fails to start stops the server with its error.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import multiprocessing
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from multiprocessing.connection import wait
from time import perf_counter
from typing import Any, cast

from mloop.errors import ConfigError, MloopError
from mloop.server.follower import Follow, follow_app
from mloop.server.inference import InferenceApp, ServeSettings, create_app
from mloop.server.limits import GuardedHttpTools
from mloop.server.monitor import Monitoring, MonitorProcess, become
from mloop.services.serving.metrics import ServingMetrics, SharedCounters
from mloop.services.serving.predictor import Predictor

PredictorFactory = Callable[[], Predictor]
# One version (`mloop serve REF`), or an endpoint's deployment followed as it changes.
Source = PredictorFactory | Follow
# Makes one worker's prediction-log writer (a `services/predictions/log.PredictionLog`).
Recorder = Callable[[], Any]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long the event loop may wait for the GIL while another thread of the worker runs Python
# (the prediction log's writer at each flush, a follower loading a version). Python's 5 ms
# default is paid at each of the loop's many releases of the GIL while that thread works: the
# log's flushes then held a 32-client load's p99 at 25-30 ms against 10 ms with the log off;
# at 1 ms it stays near 10 ms.
SWITCH_INTERVAL = 0.001


def bind_socket(host: str = "127.0.0.1", port: int = 0, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket with TCP_NODELAY, shareable by forked workers.

    Example:
        >>> sock = bind_socket("127.0.0.1", 0)
        >>> sock.getsockname()[0]
        '127.0.0.1'
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        hint = {
            errno.EADDRINUSE: "pick another port with --port, or stop what is using this one",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine: use 127.0.0.1 "
            "(this machine only) or 0.0.0.0 (every interface)",
            errno.EACCES: "ports below 1024 need root: pick one above 1024 with --port",
        }.get(exc.errno or 0, "check --host and --port")
        if isinstance(exc, socket.gaierror):
            hint = f"{host} is not a host name this machine can resolve: use an IP address"
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: Any, settings: ServeSettings, on_refused: Callable[[int], None] = lambda status: None
) -> Any:
    """uvicorn's settings for the app: uvloop and httptools (bounded by `GuardedHttpTools`), no
    access log, no server header.

    Example:
        >>> config = uvicorn_config(app, ServeSettings())  # doctest: +SKIP
        >>> uvicorn.Server(config).run(sockets=[sock])  # doctest: +SKIP
    """
    import uvicorn

    # uvicorn makes its protocol with (config=, server_state=, app_state=, _loop=): a partial
    # of the class carries the limits the way a subclass per setting would.
    http = partial(
        GuardedHttpTools,
        max_connections=settings.max_connections,
        max_head_bytes=settings.max_header_bytes,
        head_timeout=settings.header_timeout,
        on_refused=on_refused,
    )
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=cast("type[asyncio.Protocol]", http),
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # client addresses only tell connections apart; no X-Forwarded-For
        timeout_keep_alive=int(max(1, settings.keep_alive)),
        timeout_graceful_shutdown=int(settings.timeout) + 5,
        backlog=2048,
    )


def run_worker(
    factory: Source,
    sock: socket.socket,
    settings: ServeSettings,
    counters: SharedCounters,
    worker: int = 0,
    on_loaded: Callable[[InferenceApp], None] | None = None,
    recorder: Recorder | None = None,
) -> None:
    """Load the model, then serve `sock` until SIGTERM/SIGINT, finishing what is in flight.
    `recorder` makes this worker's prediction-log writer (None: nothing is logged).

    Example:
        >>> sock, counters = bind_socket(), SharedCounters()  # doctest: +SKIP
        >>> run_worker(lambda: predictor, sock, ServeSettings(), counters)  # doctest: +SKIP
    """
    import uvicorn

    started = perf_counter()
    if isinstance(factory, Follow):
        app = follow_app(factory, settings, ServingMetrics(counters, worker))
    else:
        predictor = factory()
        metrics = ServingMetrics(counters, worker, predictor.name, predictor.version)
        app = create_app(predictor, settings, metrics)
        if app.table.primary.reader.finite:  # one version for the process's life
            _skip_finite_checks()
    metrics = app.metrics
    metrics.loaded(perf_counter() - started)
    if recorder is not None:
        app.log_to(recorder())  # its thread starts here, after the fork
    gc.freeze()  # the model and the imports: never collected, never scanned again
    sys.setswitchinterval(SWITCH_INTERVAL)
    server = uvicorn.Server(uvicorn_config(app, settings, metrics.refused))

    def stop(signum: int, frame: Any) -> None:
        # Before uvicorn installs its own handlers (and after it restores this one and
        # re-raises the signal it caught): ask for the same graceful stop, never die mid-way.
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    if on_loaded is not None:
        on_loaded(app)
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _skip_finite_checks() -> None:
    """Requests were checked finite against the signature: tell scikit-learn not to check again.

    Its check is ~15 µs of a ~110 µs one-row predict. The setting is process-wide, which is
    right here: a worker process serves this one model and nothing else.
    """
    sklearn = sys.modules.get("sklearn")
    if sklearn is not None:
        sklearn.set_config(assume_finite=True)


def serve(
    predictor_factory: Source,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    settings: ServeSettings | None = None,
    on_ready: Callable[[str], None] | None = None,
    recorder: Recorder | None = None,
    monitoring: Monitoring | None = None,
) -> None:
    """Serve the model `predictor_factory` loads (or the deployment a `Follow` reads, as it
    changes) at http://HOST:PORT until stopped; `recorder` makes each worker's prediction-log
    writer (called in the worker); `monitoring` runs one monitor for the server, in a process
    of its own forked here before any worker (`server/monitor.py`), whose gauges every worker
    shows on /metrics.

    `on_ready` gets the URL once the model is loaded (in every worker) and requests are
    answered; `port=0` picks a free port, which the URL shows.

    Example:
        >>> factory = lambda: registry.load_predictor("churn:3")  # doctest: +SKIP
        >>> serve(factory, port=8080, workers=2)  # doctest: +SKIP
    """
    settings = fit_connections(settings or ServeSettings())
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    counters = SharedCounters(workers)
    counters.monitored = monitoring is not None
    monitor = None if monitoring is None else MonitorProcess(monitoring, counters.gauges)
    try:
        if monitor is not None:  # before any thread of ours (numpy's BLAS pool is fork-safe)
            monitor.start(inherited=(sock,))
        if workers == 1:
            announce = None if on_ready is None else lambda _app: on_ready(url)
            run_worker(predictor_factory, sock, settings, counters, 0, announce, recorder)
            return
        _supervise(
            predictor_factory,
            sock,
            settings,
            counters,
            workers,
            lambda: on_ready and on_ready(url),
            recorder,
        )
    finally:
        if monitor is not None:
            monitor.stop()


# File descriptors a worker needs besides its connections: stdio, the listening socket, the
# event loop's own, the model's files, the store, the shared metrics, threads' pipes.
RESERVED_FDS = 128


def fit_connections(settings: ServeSettings) -> ServeSettings:
    """`settings` with `max_connections` that this process's file descriptors can hold.

    Raises the soft RLIMIT_NOFILE (inherited by the workers) as far as the hard limit allows;
    when even that is too few, serves fewer connections with a warning rather than failing
    `accept` with EMFILE, which drops well-behaved clients along with the rest.

    Example:
        >>> fit_connections(ServeSettings(max_connections=100)).max_connections
        100
    """
    needed = settings.max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return settings
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft >= needed:
        return settings
    fitted = max(1, soft - RESERVED_FDS)
    sys.stderr.write(
        f"warning: --max-connections {settings.max_connections} needs {needed} file "
        f"descriptors and this process may open {soft}: serving at most {fitted} connections "
        "per worker (raise `ulimit -n` for more)\n"
    )
    return replace(settings, max_connections=fitted)


def _worker_main(
    factory: Source,
    sock: socket.socket,
    settings: ServeSettings,
    counters: SharedCounters,
    worker: int,
    wakeup: tuple[int, int],
    recorder: Recorder | None,
    parent: int,
) -> None:
    # A supervisor killed outright (SIGKILL, OOM) sends its workers SIGTERM: each stops as
    # for a graceful stop, finishing what is in flight and storing what it logged, instead
    # of serving on, orphaned, on a port a new server then cannot take.
    become(f"mloop-serve-{worker}", parent)
    signal.set_wakeup_fd(-1)  # the parent's wake-up pipe is not ours
    for fd in wakeup:
        os.close(fd)
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # while loading, a stop signal just ends the worker
    try:
        run_worker(factory, sock, settings, counters, worker, None, recorder)
    except MloopError as exc:
        sys.stderr.write(f"error: worker {worker}: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        sys.exit(1)


def _supervise(
    factory: Source,
    sock: socket.socket,
    settings: ServeSettings,
    counters: SharedCounters,
    workers: int,
    announce: Callable[[], object],
    recorder: Recorder | None,
) -> None:
    context = multiprocessing.get_context("fork")
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    stopping: list[int] = []
    previous_wakeup = signal.set_wakeup_fd(write_end)
    previous = {sig: signal.signal(sig, lambda s, f: stopping.append(s)) for sig in STOP_SIGNALS}

    def start(worker: int) -> Any:
        process = context.Process(
            target=_worker_main,
            args=(
                factory,
                sock,
                settings,
                counters,
                worker,
                (read_end, write_end),
                recorder,
                os.getpid(),
            ),
            name=f"mloop-serve-{worker}",
        )
        process.start()
        return process

    processes = [start(w) for w in range(workers)]
    announced = False
    failed = 0
    try:
        while not stopping:
            ready = wait(
                [p.sentinel for p in processes] + [read_end], 0.05 if not announced else None
            )
            if read_end in ready:
                os.read(read_end, 512)  # the signal's wake-up byte; its handler has run
            if stopping:
                break
            if not announced and all(counters.ready(w) for w in range(workers)):
                announce()
                announced = True
            for w, process in enumerate(processes):
                if process.exitcode is None:
                    continue
                if not counters.ready(w) and process.exitcode != 0:  # failed to start: give up
                    failed = process.exitcode
                    stopping.append(signal.SIGTERM)
                    break
                processes[w] = start(w)  # died while serving: replace it
    finally:
        sock.close()  # refuse new connections now; workers close their copies as they stop
        for process in processes:
            if process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(settings.timeout + 10)
            if process.exitcode is None:
                process.kill()
                process.join()
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(read_end)
        os.close(write_end)
    if failed:
        raise MloopError(
            "a worker failed to start; its error is above", "fix it, or try with --workers 1"
        )
