"""`mloop serve NAME@ALIAS|NAME:V`: serve one model version over HTTP.

The reference is resolved once, here: every worker then loads that exact version, so an alias
moved while the server starts cannot leave two workers serving different models. The server
itself (`mloop.server`) is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.main import Context
from mloop.cli.models import add_trust
from mloop.errors import InvalidInput, NeedsTrust

if TYPE_CHECKING:
    from mloop.services.serving.predictor import Predictor

# These mirror mloop.server.inference.ServeSettings (a test checks); argparse needs them at
# start-up, and importing the server for `--help` would cost its imports.
DEFAULTS: dict[str, Any] = {
    "max_batch_size": 64,
    "max_wait": 0.002,
    "timeout": 60.0,
    "max_body_bytes": 16 * 2**20,
    "max_concurrency": 256,
    "max_queue": 512,
}
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
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16MiB, 500kB, 1048576)")
    return int(float(match.group(1)) * _UNITS[unit])


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
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0-65535; 0 picks a free one)")
    return port


def register(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="serve a model version over HTTP (MLflow and Open Inference Protocol APIs)",
        description="Serve one model version: POST /invocations (MLflow payloads) and "
        "/v2/models/NAME/infer (Open Inference Protocol), with /healthz, /readyz, /metrics "
        "(Prometheus) and /openapi.json. Concurrent requests are merged into batches. "
        "SIGTERM stops accepting, finishes the requests in flight, and exits 0.",
    )
    p.add_argument("ref", metavar="NAME[:V|@ALIAS]", help="the model version to serve")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all)",
    )
    p.add_argument(
        "--port", type=port_number, default=8080, help="default 8080; 0 picks a free port"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes, each with its own copy (default 1)"
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULTS["max_batch_size"],
        metavar="ROWS",
        help="most rows in one predict call; bigger client batches are split (default %(default)s)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULTS["max_wait"] * 1000,
        metavar="MS",
        help="how long a batch may keep collecting requests while they keep arriving; a lone "
        "request never waits (default %(default)s)",
    )
    p.add_argument("--no-batching", action="store_true", help="one predict call per request")
    p.add_argument(
        "--predict-in",
        choices=("auto", "inline", "thread"),
        default="auto",
        help="run predict on the event loop, in a thread, or choose by its measured cost",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULTS["timeout"],
        metavar="SECONDS",
        help="answer 504 when a request takes longer (default %(default)s)",
    )
    p.add_argument(
        "--max-body-size",
        type=byte_size,
        default=DEFAULTS["max_body_bytes"],
        metavar="SIZE",
        help="answer 413 to bigger bodies, before reading them (default 16MiB)",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULTS["max_concurrency"],
        metavar="N",
        help="predict requests worked on at once per worker (default %(default)s)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULTS["max_queue"],
        metavar="N",
        help="requests waiting beyond that; past it, 503 with Retry-After (default %(default)s)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="require Authorization: Bearer TOKEN, the token read from FILE (or set "
        "MLOOP_SERVE_TOKEN); health and readiness stay open for probes",
    )
    add_trust(p)
    p.set_defaults(handler=run_serve)


def token_digest(token_file: Path | None) -> bytes | None:
    """SHA-256 of the server's token (from FILE, else $MLOOP_SERVE_TOKEN), or None: no token.

    Only the digest goes on: the token is compared by its digest, never kept.
    """
    import hashlib
    import os

    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"cannot read the token file {token_file}: {exc}",
                "give a readable text file holding the token",
            ) from None
        where = str(token_file)
    else:
        if "MLOOP_SERVE_TOKEN" not in os.environ:
            return None
        # Taken out of the environment: the model's own subprocesses must not inherit it.
        token = os.environ.pop("MLOOP_SERVE_TOKEN").strip()
        where = "MLOOP_SERVE_TOKEN"
    if len(token) < 16 or any(c.isspace() for c in token):
        raise InvalidInput(
            f"the token in {where} must be at least 16 characters, without spaces",
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return hashlib.sha256(token.encode()).digest()


def load_predictor(root: str, ref: str, trust: bool) -> Predictor:
    """What each worker calls: open the project and load the version through the registry."""
    from mloop.project import Project

    project = Project.open(root)
    try:
        return project.registry.load_predictor(ref, trust=trust)
    finally:
        project.close()


def run_serve(ctx: Context) -> int:
    from functools import partial

    from mloop.project import Project

    args = ctx.args
    for flag in ("workers", "max_batch_size", "max_concurrency"):
        if getattr(args, flag) < 1:
            raise InvalidInput(f"--{flag.replace('_', '-')} must be at least 1")
    token = token_digest(args.token_file)  # a bad token fails before anything is opened
    project = Project.open()  # closed before serving: forked workers open their own
    try:
        version = project.registry.get(args.ref)
        reason = project.registry.trust_reason(version)  # said once here, not once per worker
    finally:
        project.close()
    if reason is not None and not args.trust:
        raise NeedsTrust.of(reason, version.ref)

    from mloop.server.inference import ServeSettings
    from mloop.server.workers import serve

    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        output.warn(
            f"serving on {args.host} without a token: anyone who reaches the port can use the "
            "model (set MLOOP_SERVE_TOKEN or --token-file)"
        )
    settings = ServeSettings(
        token_sha256=token,
        max_batch_size=args.max_batch_size,
        max_wait=args.max_wait_ms / 1000,
        batching=not args.no_batching,
        predict_mode=args.predict_in,
        timeout=args.timeout,
        max_body_bytes=args.max_body_size,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
    )

    def ready(url: str) -> None:
        if not ctx.quiet:
            workers = f"{args.workers} worker" + ("s" if args.workers > 1 else "")
            output.line(f"serving {version.ref} at {url} ({workers}); Ctrl+C or SIGTERM stops")
            output.line(f"  POST {url}/invocations  or  {url}/v2/models/{version.name}/infer")
            output.line(f"  GET  {url}/metrics  {url}/readyz  {url}/openapi.json")
            sys.stdout.flush()

    factory = partial(load_predictor, str(project.root), version.ref, args.trust)
    serve(factory, args.host, args.port, args.workers, settings, on_ready=ready)
    return 0
