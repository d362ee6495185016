"""`mloop serve NAME@ALIAS|NAME:V|BUNDLE`: serve one model version over HTTP.

The reference is resolved once, here: every worker then loads that exact version, so an alias
moved while the server starts cannot leave two workers serving different models. A bundle's
path (`mloop export bundle`) needs no project: its workers load it from the folder. The server
itself (`mloop.server`) is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.args import integer, number, shown
from mloop.cli.main import Context
from mloop.cli.models import add_trust
from mloop.errors import InvalidInput, NeedsTrust, NotFound
from mloop.services.serving.settings import LIMITS, Limit, ServeSettings, Unit

if TYPE_CHECKING:
    from mloop.domain.model import ModelVersion
    from mloop.project import Project
    from mloop.server.monitor import Monitoring
    from mloop.services.serving.predictor import Predictor

TOKEN_VARIABLE = "MLOOP_SERVE_TOKEN"  # noqa: S105 (the name of the variable, not a token)
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_UNITS |= {"k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3}


def byte_size(text: str) -> int:
    """`16MiB`, `500kb`, `1048576` -> bytes (for argparse).

    Example:
        >>> byte_size("16MiB")
        16777216
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {shown(text)} (e.g. 16MiB, 500kB, 1048576)")
    return int(float(match.group(1)) * _UNITS[unit])


def size_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a size (as `byte_size` reads it) from `low` to `high` bytes.

    Example:
        >>> size_between(1024, 2**20)("64KiB")
        65536
    """

    def size(text: str) -> int:
        value = byte_size(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"not a size from {_bytes(low)} to {_bytes(high)}: {shown(text)}"
            )
        return value

    return size


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes" if n != 1 else "1 byte"


def seconds(high: float) -> Callable[[str], float]:
    """A time-out for argparse: seconds above 0 (0 would answer every request at once).

    Example:
        >>> seconds(3600)("2.5")
        2.5
    """
    return number(0, high, above=True)


def port_number(text: str) -> int:
    """A TCP port for argparse: 0 (pick a free one) to 65535.

    Example:
        >>> port_number("8080")
        8080
    """
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {shown(text)} (0-65535; 0 picks a free one)")
    return port


def limit_type(limit: Limit) -> Callable[[str], Any]:
    """The argparse type of a limit's option, from the range its field declares."""
    if limit.unit is Unit.SIZE:
        return size_between(int(limit.low), int(limit.high))
    if limit.unit is Unit.SECONDS:
        return seconds(limit.high)
    if limit.unit is Unit.MILLISECONDS:
        milliseconds = number(limit.low * 1000, limit.high * 1000)
        return lambda text: milliseconds(text) / 1000
    return integer(int(limit.low), int(limit.high))


def _shown(limit: Limit) -> Any:
    """A limit's default as its option writes it."""
    if limit.unit is Unit.SIZE:
        return _bytes(limit.default)
    return limit.default * 1000 if limit.unit is Unit.MILLISECONDS else limit.default


def register(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="serve a model version over HTTP (MLflow and Open Inference Protocol APIs)",
        description="Serve one model version: POST /invocations (MLflow payloads) and "
        "/v2/models/NAME/infer (Open Inference Protocol), with /healthz, /readyz, /metrics "
        "(Prometheus) and /openapi.json. Concurrent requests are merged into batches. "
        "SIGTERM stops accepting, finishes the requests in flight, and exits 0. "
        "Every limit below holds per worker process.",
    )
    p.add_argument(
        "ref",
        nargs="?",
        metavar="NAME[:V|@ALIAS]|BUNDLE",
        help="the model version to serve: a ref into the project's registry, or the path of a "
        "bundle `mloop export bundle` wrote, served with no project or store; a path has a '/' "
        "in it or starts with '.' (./churn, /app/model; model/NAME... is a ref)",
    )
    p.add_argument(
        "--endpoint",
        metavar="ENDPOINT",
        help="serve what the endpoint's deployment says (`mloop deploy`), following each "
        "change within a second: new versions are loaded and checked before they get "
        "traffic; rollouts are analysed from every server's traffic",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all)",
    )
    p.add_argument(
        "--port", type=port_number, default=8080, help="default 8080; 0 picks a free port"
    )
    p.add_argument(
        "--workers",
        type=integer(1, 1024),
        default=1,
        help="processes, each with its own copy (default 1)",
    )
    p.add_argument("--no-batching", action="store_true", help="one predict call per request")
    p.add_argument(
        "--predict-in",
        choices=("auto", "inline", "thread"),
        default=ServeSettings().predict_mode,
        help="run predict on the event loop, in a thread, or choose by its measured cost",
    )
    for limit in LIMITS:
        p.add_argument(
            limit.option,
            type=limit_type(limit),
            default=limit.default,
            dest=limit.field,
            metavar=limit.metavar,
            help=f"{limit.help} (default {_shown(limit)})",
        )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="require Authorization: Bearer TOKEN, the token read from FILE (preferred), or "
        "from MLOOP_SERVE_TOKEN, which is then wiped from the process's environment; health "
        "and readiness stay open for probes",
    )
    add_trust(p)
    p.set_defaults(handler=run_serve)


def token_digest(token_file: Path | None) -> bytes | None:
    """SHA-256 of the server's token (from FILE, else $MLOOP_SERVE_TOKEN), or None: no token.

    Only the digest goes on: the token is compared by its digest, never kept. The variable
    leaves the environment either way, so neither the workers, the model's own subprocesses
    nor /proc/PID/environ see it.
    """
    import hashlib
    import os

    from_environment = os.environ.get(TOKEN_VARIABLE)
    forget_variable(TOKEN_VARIABLE)
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"cannot read the token file {token_file}: {exc}",
                "give a readable text file holding the token",
            ) from None
        where = str(token_file)
    elif from_environment is None:
        return None
    else:
        token, where = from_environment.strip(), TOKEN_VARIABLE
    if len(token) < 16 or any(c.isspace() for c in token):
        raise InvalidInput(
            f"the token in {where} must be at least 16 characters, without spaces",
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return hashlib.sha256(token.encode()).digest()


def forget_variable(name: str) -> None:
    """Take `name` out of this process's environment, the kernel's copy included.

    `os.environ.pop` unsets it for libc and child processes, but the `NAME=value` bytes the
    kernel put at the top of the stack at exec stay there, and /proc/PID/environ (or anyone
    reading the process's memory) shows them. They are zeroed in place: that block is this
    process's own memory, and unsetenv has already dropped libc's pointer to the entry. Workers
    forked afterwards inherit the zeroed copy. Without /proc (not Linux) there is nothing to do.

    Example:
        >>> forget_variable("MLOOP_SERVE_TOKEN")
    """
    import ctypes
    import os

    os.environ.pop(name, None)
    try:
        stat = Path("/proc/self/stat").read_bytes()
    except OSError:
        return
    fields = stat[stat.rindex(b")") + 2 :].split()  # from field 3 of proc(5) on
    start, end = int(fields[47]), int(fields[48])  # env_start and env_end: fields 50 and 51
    if not 0 < start < end:
        return
    block = (ctypes.c_char * (end - start)).from_address(start)
    entry = re.compile(rb"(?<![^\0])" + re.escape(name.encode()) + rb"=[^\0]*")
    for found in entry.finditer(memoryview(block).cast("B")):  # read in place, never copied
        ctypes.memset(start + found.start(), 0, found.end() - found.start())


def load_predictor(root: str, ref: str, trust: bool) -> Predictor:
    """What each worker calls: open the project and load the version through the registry."""
    from mloop.project import Project

    project = Project.open(root)
    try:
        return project.models.load_predictor(ref, trust=trust)
    finally:
        project.close()


def load_bundle_predictor(folder: str, trust: bool) -> Predictor:
    """What each worker calls to serve a bundle: open it and load it, every file verified."""
    from mloop.services.registry.bundle import open_bundle

    return open_bundle(Path(folder)).predictor(trust=trust)


def prediction_log(root: str) -> Any:
    """A worker's prediction-log writer, on the project at `root` (opened in the worker, for
    the log alone: closed with it, so its store connections end when the worker stops)."""
    from mloop.project import Project

    project = Project.open(root)
    return project.prediction_log(closes=project.close)


class ProjectMonitor:
    """The server's monitor's measure on its own `Project` (opened in the monitor's process,
    closed there when the server stops: `server.monitor.Monitor` calls `close`)."""

    def __init__(self, root: str) -> None:
        from mloop.project import Project

        self.project = Project.open(root)

    def __call__(self, endpoint: str) -> Any:
        return self.project.gauges.measure(endpoint)

    def close(self) -> None:
        self.project.close()


def _monitoring(project: Project, endpoint: str) -> Monitoring | None:
    """A server that logs its predictions watches them too (`server/monitor.py`); `endpoint`:
    the name its requests are logged under (the model's, or the endpoint's)."""
    from functools import partial

    from mloop.server.monitor import Monitoring

    if project.settings.predictions_sample_rate <= 0:
        return None
    return Monitoring(
        partial(ProjectMonitor, str(project.root)), project.settings.monitoring_interval, endpoint
    )


def _resolve(
    ctx: Context,
) -> tuple[
    ModelVersion, str | None, Callable[[], Predictor], Callable[[], Any] | None, Monitoring | None
]:
    """The version `ref` names, why it needs trust, how each worker loads it (from the bundle
    at a path, or from the project's registry, resolved once here) and makes its prediction
    log (a bundle has no store to log to; a sample rate of 0 logs nothing)."""
    from functools import partial

    from mloop.services.registry.bundle import names_a_bundle, open_bundle

    ref, trust = ctx.args.ref, ctx.args.trust
    if names_a_bundle(ref):
        bundle = open_bundle(Path(ref))
        folder = str(bundle.folder.resolve())
        loader = partial(load_bundle_predictor, folder, trust)
        return bundle.version, bundle.trust_reason, loader, None, None
    from mloop.project import Project

    try:
        project = Project.open()  # closed before serving: forked workers open their own
    except NotFound as exc:
        raise _maybe_bundle(exc, ref) from None
    try:
        try:
            version = project.models.get(ref)
        except NotFound as exc:
            raise _maybe_bundle(exc, ref) from None
        reason = project.models.trust_reason(version)  # said once here, not once per worker
        logs = project.settings.predictions_sample_rate > 0
        monitoring = _monitoring(project, version.name)
    finally:
        project.close()
    root = str(project.root)
    recorder = partial(prediction_log, root) if logs else None
    return version, reason, partial(load_predictor, root, version.ref, trust), recorder, monitoring


def _follow(
    ctx: Context,
) -> tuple[Any, str, str, Callable[[], Any] | None, Monitoring | None]:
    """How each worker follows the endpoint (an agent of its own, opened after the fork), and
    how the endpoint is named in the start-up lines. The endpoint must exist now."""
    from mloop.project import Project
    from mloop.server.endpoint_agent import POLL, REPORT_EVERY, EndpointAgent
    from mloop.server.follower import Follow

    project = Project.open()  # closed before serving: forked workers open their own
    try:
        deployment = project.endpoints.get(ctx.args.endpoint)
        root = str(project.root)
        logs = project.settings.predictions_sample_rate > 0
        monitoring = _monitoring(project, deployment.endpoint)
    finally:
        project.close()
    # Opened on first use in each worker: forked after this, none shares a connection.
    agent = EndpointAgent(root, deployment.endpoint, ctx.args.trust)
    follow = Follow(
        source=agent.plan,
        load=agent.load,
        poll=POLL,
        report=agent.report,
        report_every=REPORT_EVERY,
        applied=agent.applied,
    )
    shown = f"endpoint {deployment.endpoint} (deployment {deployment.sequence}: "
    shown += ", ".join(f"{m} {w}%" for m, w in deployment.weights.items()) + ")"
    recorder = agent.prediction_log if logs else None
    return follow, shown, deployment.endpoint, recorder, monitoring


def _maybe_bundle(exc: NotFound, ref: str) -> NotFound:
    """`exc`, with a hint to write `./REF` when a bundle lies in a folder of that name."""
    from mloop.services.registry.bundle import RECORD

    if not (Path(ref) / RECORD).is_file():
        return exc
    return type(exc)(exc.message, f"to serve the bundle in the folder {ref}, write ./{ref}")


def run_serve(ctx: Context) -> int:
    args = ctx.args
    if args.max_body_memory < args.max_body_bytes:
        raise InvalidInput(
            f"--max-body-memory {_bytes(args.max_body_memory)} is below --max-body-size "
            f"{_bytes(args.max_body_bytes)}: no body of the largest size could ever be read",
            "raise --max-body-memory, or lower --max-body-size",
        )
    token = token_digest(args.token_file)  # a bad token fails before anything is opened
    if (args.ref is None) == (args.endpoint is None):
        raise InvalidInput(
            "serve either a model version or an endpoint"
            + (", not both" if args.ref is not None else ""),
            "mloop serve NAME:V, mloop serve ./BUNDLE, or mloop serve --endpoint ENDPOINT",
        )
    source: Any
    if args.endpoint is not None:
        source, shown, name, recorder, monitoring = _follow(ctx)
    else:
        version, reason, source, recorder, monitoring = _resolve(ctx)
        if reason is not None and not args.trust:
            raise NeedsTrust.of(reason, version.ref)
        shown, name = version.ref, version.name

    from mloop.server.workers import serve

    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        output.warn(
            f"serving on {args.host} without a token: anyone who reaches the port can use the "
            "model (give --token-file, or set MLOOP_SERVE_TOKEN)"
        )
    settings = ServeSettings(
        token_sha256=token,
        batching=not args.no_batching,
        predict_mode=args.predict_in,
        **{limit.field: getattr(args, limit.field) for limit in LIMITS},
    )

    def ready(url: str) -> None:
        if not ctx.quiet:
            workers = f"{args.workers} worker" + ("s" if args.workers > 1 else "")
            output.line(f"serving {shown} at {url} ({workers}); Ctrl+C or SIGTERM stops")
            output.line(f"  POST {url}/invocations  or  {url}/v2/models/{name}/infer")
            output.line(f"  GET  {url}/metrics  {url}/readyz  {url}/openapi.json")
            sys.stdout.flush()

    serve(
        source,
        args.host,
        args.port,
        args.workers,
        settings,
        on_ready=ready,
        recorder=recorder,
        monitoring=monitoring,
    )
    return 0
