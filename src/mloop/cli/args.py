"""Argument types for the CLI's options: each checks its range where argparse reads it.

A number past what a store column, a process pool or a loop can take used to travel into the
service and come back as an internal error (`--limit 99999999999999999999` reached SQLite as an
overflow). Here it stops as a one-line usage error naming the option and the range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from mloop.domain.names import parse_version
from mloop.errors import InvalidInput

# The largest count any option takes: a signed 64-bit integer, as the stores hold.
MAX_INT = 2**63 - 1
# The most rows a listing's `--limit` asks for (it asks the store for one more, to say "more").
MAX_LIMIT = 10**9


def integer(low: int = 1, high: int = MAX_INT) -> Callable[[str], int]:
    """An argparse type for whole numbers from `low` to `high`.

    Example:
        >>> integer(1, 10)("3")
        3
    """

    def parse(text: str) -> int:
        digits = text.strip().lstrip("+-").lstrip("0")
        # Counted before converting: Python refuses to convert 4,300 digits or more (a ValueError
        # that says nothing about the option), and no option takes a number that long.
        if len(digits) <= len(str(MAX_INT)) and text.strip().lstrip("+-").isascii():
            try:
                value = int(text)
            except ValueError:
                pass
            else:
                if low <= value <= high:
                    return value
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a whole number from {low} to {high}"
        )

    parse.__name__ = "integer"
    return parse


def number(
    low: float = -math.inf, high: float = math.inf, above: bool = False
) -> Callable[[str], float]:
    """An argparse type for finite numbers from `low` (above it, with `above`) to `high`: NaN
    and infinities never mean anything to a threshold or a time-out, and compare false with
    everything.

    Example:
        >>> number(0)("0.25")
        0.25
        >>> number(0, 60, above=True)("0")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: '0' is not a finite number above 0 and at most 60
    """
    if math.isfinite(high):
        bounds = f" above {low:g} and at most {high:g}" if above else f" from {low:g} to {high:g}"
    else:
        bounds = f" above {low:g}" if above else f" of at least {low:g}"
    if not math.isfinite(low):
        bounds = f" of at most {high:g}" if math.isfinite(high) else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and (value > low if above else value >= low) and value <= high:
            return value
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a finite number{bounds}")

    parse.__name__ = "number"
    return parse


def version(text: str) -> int:
    """An argparse type for a version number, by the rule every address follows.

    Example:
        >>> version("3")
        3
    """
    try:
        return parse_version(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}: {exc.hint}") from None


def shown(text: str) -> str:
    """The value as given, cut short: an error stays one line for 5,000 digits."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def add_timeout(parser: argparse.ArgumentParser, waiting: str) -> None:
    """`--timeout SECONDS` for a command that waits with the option `waiting` (`--watch`,
    `--wait`): 600 s by default, then it gives up and exits 1."""
    parser.add_argument(
        "--timeout",
        type=number(0, 86400, above=True),
        default=600.0,
        metavar="SECONDS",
        help=f"with {waiting}: give up after this long (default 600), exit 1",
    )
