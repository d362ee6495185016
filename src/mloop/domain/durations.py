"""Durations as people write them in options: `500ms`, `60s`, `10m`, `1h`.

A unit is required: `--max-p99 500` could mean milliseconds or seconds, and a rollout that reads
it the wrong way promotes a slow canary. Only ASCII digits count ('٣' is a digit to Python, and
`float` reads it), and a duration is at least a millisecond and at most `MAX_SECONDS`: zero,
negatives, NaN and infinities mean nothing to an interval or a time-out.
"""

from __future__ import annotations

import re

from mloop.errors import InvalidInput

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MIN_SECONDS = 0.001
MAX_SECONDS = 31 * 86400.0  # a month: the longest interval, deadline or keep anyone needs
DURATION_HINT = "write a number and a unit (ms, s, m or h): 500ms, 60s, 10m, 1h"
_DURATION = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,20})?)(ms|s|m|h)")


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds from `500ms`, `60s`, `1.5m` or `1h`; `what` names the option in the message.

    Raises:
        InvalidInput: no unit, not a number, or outside 1 ms to 31 days.

    Example:
        >>> parse_duration("500ms"), parse_duration("10m")
        (0.5, 600.0)
    """
    return amount(text, what, _DURATION, UNITS, (MIN_SECONDS, MAX_SECONDS), DURATION_HINT)


def amount(
    text: str,
    what: str,
    pattern: re.Pattern[str],
    units: dict[str, float],
    bounds: tuple[float, float],
    hint: str,
) -> float:
    """Seconds from a number and a unit matched by `pattern` (groups: number, unit), within
    `bounds`: the one reading of durations (here) and ages (`prediction.parse_age`)."""
    raw = text.strip().lower()
    found = pattern.fullmatch(raw) if raw.isascii() else None
    if found is None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        noun = "a duration" if units is UNITS else "an age"
        raise InvalidInput(f"{what} {shown!r} is not {noun}", hint)
    seconds = float(found[1]) * units[found[2]]
    low, high = bounds
    if not low <= seconds <= high:
        shown_high = f"{high / 3600:g}h" if units is UNITS else f"{high / 86400 / 365:g} years"
        shown_low = "1ms" if units is UNITS else "1s"
        raise InvalidInput(
            f"{what} {text.strip()!r} is out of range: from {shown_low} to {shown_high}", hint
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest way `parse_duration` reads back as exactly `seconds`: whole hours, minutes,
    seconds or milliseconds where they are whole, else seconds with every digit.

    Example:
        >>> [format_duration(s) for s in (3600, 90, 0.5, 1.0005)]
        ['1h', '90s', '500ms', '1.0005s']
    """
    for suffix in ("h", "m", "s", "ms"):
        count = seconds / UNITS[suffix]
        if count >= 1 and count == int(count) and int(count) * UNITS[suffix] == seconds:
            return f"{int(count)}{suffix}"
    return f"{seconds!r}s"
