"""ServeSettings: how one model server batches and protects itself, each limit declared once.

A limit's default, its accepted range, its unit, the `mloop serve` option that sets it and the
option's help are one field here. The server reads the values; `cli/serve.py` builds its options
(argparse types, defaults, help) from `LIMITS`. This module imports nothing but the standard
library and `mloop.errors`, so `mloop serve --help` does not pay for the server to show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from mloop.errors import InvalidInput

DAY = 86400.0


class Unit(StrEnum):
    """How an option writes a limit: a whole number, seconds above 0, milliseconds (held as
    seconds), or bytes (written as `16MiB`, `500kB`, `1048576`)."""

    COUNT = "count"
    SECONDS = "seconds"
    MILLISECONDS = "milliseconds"
    SIZE = "size"


_METAVARS = {Unit.COUNT: "N", Unit.SECONDS: "SECONDS", Unit.MILLISECONDS: "MS", Unit.SIZE: "SIZE"}


def limit(
    default: float,
    option: str,
    unit: Unit,
    low: float,
    high: float,
    help: str,
    metavar: str | None = None,
) -> Any:
    """Declare one limit: its default and range (in the field's own unit: bytes, seconds or a
    count) and the option that sets it; `help` says what it limits (the default is added), and
    `metavar` names its value in the help (default: by the unit)."""
    meta = {"option": option, "unit": unit, "low": low, "high": high, "help": help}
    return field(default=default, metadata={**meta, "metavar": metavar or _METAVARS[unit]})


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """How one model server batches and protects itself; `mloop serve --help` describes each."""

    max_batch_size: int = limit(
        64,
        "--max-batch-size",
        Unit.COUNT,
        1,
        1_000_000,
        "most rows in one predict call; bigger client batches are split",
        metavar="ROWS",
    )
    # How long a batch may keep collecting while requests keep arriving.
    max_wait: float = limit(
        0.002,
        "--max-wait-ms",
        Unit.MILLISECONDS,
        0,
        10.0,
        "how long a batch may keep collecting requests while they keep arriving; a lone "
        "request never waits",
    )
    batching: bool = True
    predict_mode: str = "auto"  # "inline" on the event loop, "thread", or "auto" (by its cost)
    timeout: float = limit(
        60.0,
        "--timeout",
        Unit.SECONDS,
        0,
        DAY,
        "answer 504 when a request (body, queue and predict) takes longer",
    )
    max_body_bytes: int = limit(
        16 * 2**20,
        "--max-body-size",
        Unit.SIZE,
        1,
        2**30,
        "answer 413 to bigger bodies, before reading them",
    )
    max_body_memory: int = limit(
        256 * 2**20,
        "--max-body-memory",
        Unit.SIZE,
        1,
        2**36,
        "bytes of request bodies held at once, read or being read; past it 503 with "
        "Retry-After (at least --max-body-size)",
    )
    body_timeout: float = limit(
        30.0,
        "--body-timeout",
        Unit.SECONDS,
        0,
        DAY,
        "answer 408 and close when a body takes longer to arrive; bodies are read before a "
        "predict slot is taken, so slow senders never hold one",
    )
    max_concurrency: int = limit(
        256, "--max-concurrency", Unit.COUNT, 1, 100_000, "predict requests worked on at once"
    )
    max_queue: int = limit(
        512,
        "--max-queue",
        Unit.COUNT,
        0,
        1_000_000,
        "requests waiting beyond that; past it, 503 with Retry-After",
    )
    # Below the app (server/limits.py: GuardedHttpTools), per worker:
    max_connections: int = limit(
        1024,
        "--max-connections",
        Unit.COUNT,
        1,
        1_000_000,
        "open connections; past it a new connection gets 503 and is closed, the open ones go on",
    )
    max_header_bytes: int = limit(
        64 * 2**10,
        "--max-header-size",
        Unit.SIZE,
        1024,
        2**20,
        "answer 431 and close when the request line and headers are bigger",
    )
    header_timeout: float = limit(
        10.0,
        "--header-timeout",
        Unit.SECONDS,
        0,
        DAY,
        "close a connection whose request line and headers take longer to arrive, counted "
        "from its first byte or its opening",
    )
    retry_after: int = 1
    shadow_queue: int = 1000  # copies waiting for a shadow; past it they are dropped, counted
    keep_alive: float = 5.0
    # SHA-256 of the bearer token every request but health checks must carry; None: open.
    # Only the digest is kept, so the token itself is in no settings, log or core dump.
    token_sha256: bytes | None = None

    def __post_init__(self) -> None:
        """The declared ranges hold however the settings are made (the CLI checks them first,
        to name the option in its usage error)."""
        for limit in LIMITS:
            value = getattr(self, limit.field)
            above = limit.unit is Unit.SECONDS  # a time-out of 0 would answer every request
            if not (value > limit.low if above else value >= limit.low) or value > limit.high:
                bounds = f"above {limit.low:g}" if above else f"from {limit.low:g}"
                raise InvalidInput(
                    f"{limit.field} {value!r} is out of range: {bounds} to {limit.high:g}",
                    f"set {limit.option} within it",
                )


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit of `ServeSettings` as its field declares it."""

    field: str
    option: str
    unit: Unit
    low: float
    high: float
    help: str
    metavar: str
    default: Any


LIMITS: tuple[Limit, ...] = tuple(
    Limit(
        f.name,
        f.metadata["option"],
        f.metadata["unit"],
        f.metadata["low"],
        f.metadata["high"],
        f.metadata["help"],
        f.metadata["metavar"],
        f.default,
    )
    for f in fields(ServeSettings)
    if "option" in f.metadata
)
