"""The prediction log: what each answered request asked and what it was answered, in batches.

A model server appends one row per predicted row of a request; a background writer turns what it
buffered into one Parquet file per (endpoint, model version, role) and records a
`PredictionBatch` in the metadata store, so a window query opens only the files that overlap it.

A log row's columns (`COLUMNS`, then the request's features, then its prediction):

- `request_id` (text): the `mloop-request-id` the client sent or the server made; a shadow's
  copy carries its primary's id, so the two answers join on it (and feedback joins labels on it);
- `row` (int32): the row's place in its request (a request may send many rows);
- `at` (float64): when the answer was sent, epoch seconds;
- `endpoint`, `model` (`NAME:VERSION`), `role` (`stable`, `canary`, `variant`, `shadow`, ...);
- `feature.NAME`: one column per input, named as the model's signature names it;
- `prediction`: one value per row; a model answering several outputs per row gets
  `prediction.NAME` (a frame's columns) or `prediction.0`, `prediction.1`, ... (an array's);
- `score.CLASS` (float64): a classifier's score for each of its classes (`predict_proba`),
  named by `score_column`; computed when the writer flushes, not while the client waits, so a
  file written before scores existed, or a model without them, simply has no such column.

Features are flat columns, not one struct: Parquet keeps statistics and pages per leaf either
way, but pyarrow's filters, DuckDB's `SELECT "feature.age"`, pandas and CSV (which cannot hold a
struct) all take a flat column as it is, and monitoring reads one feature at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mloop.domain.durations import amount
from mloop.domain.names import ModelRef
from mloop.errors import InvalidInput

FEATURE = "feature."
PREDICTION = "prediction"
SCORE = "score."
COLUMNS = ("request_id", "row", "at", "endpoint", "model", "role")
DAY = 86_400.0
MAX_AGE = 100 * 365 * DAY
AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
AGE_HINT = "write a number and a unit (s, m, h, d or w): 90m, 2h, 30d"
WHEN_HINT = (
    "give an ISO 8601 time (2026-12-01T09:00, UTC unless it names a zone) or an age "
    "before now such as 15m, 2h or 7d"
)
_AGE = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,20})?)(s|m|h|d|w)")


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """One Parquet file of the log: the rows one writer buffered for one endpoint, model version
    and role between `first_at` and `last_at` (the earliest and latest `at` in it).

    `digest` names the file in the artifact store (content addressed, so a retried upload of
    the same rows stores nothing twice); `requests` counts the distinct requests among `rows`.
    """

    id: str
    endpoint: str
    model: ModelRef
    role: str
    first_at: float
    last_at: float
    rows: int
    requests: int
    digest: str
    bytes: int
    created: float


def parse_age(text: str, what: str = "age") -> float:
    """Seconds from `90s`, `15m`, `2h`, `30d` or `2w`: a window's reach or a retention.

    Unlike a rollout's durations (`durations.parse_duration`, at most a month) an age may be
    counted in days and weeks and reach back years.

    Example:
        >>> parse_age("2h"), parse_age("30d")
        (7200.0, 2592000.0)
    """
    return amount(text, what, _AGE, AGE_UNITS, (1.0, MAX_AGE), AGE_HINT)


def class_name(value: object) -> str:
    """A class as a log column names it: JSON's spelling for true and false, numpy scalars as
    the Python values they hold, so `score.1` is found from a label 1 whichever side made it.

    Example:
        >>> class_name(True), class_name(1), class_name("yes"), class_name(2.0)
        ('true', '1', 'yes', '2.0')
    """
    item = getattr(value, "item", None)
    plain = item() if callable(item) and not isinstance(value, str) else value
    if isinstance(plain, bool):
        return "true" if plain else "false"
    return str(plain)


def score_column(value: object) -> str:
    """The log's column holding the score of class `value`.

    Example:
        >>> score_column(True), score_column("churned")
        ('score.true', 'score.churned')
    """
    return SCORE + class_name(value)


def format_age(seconds: float) -> str:
    """The age `parse_age` reads back as `seconds`, in the largest whole unit.

    Example:
        >>> format_age(2_592_000.0), format_age(5400.0)
        ('30d', '90m')
    """
    for unit in ("w", "d", "h", "m"):
        count = seconds / AGE_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def parse_when(text: str, now: float, what: str = "time") -> float:
    """Epoch seconds from an ISO 8601 time or an age before `now` (`2h` is two hours ago).

    A time without a zone is UTC: servers log in UTC and a window must mean the same on every
    machine that asks.

    Example:
        >>> parse_when("2h", now=10_000.0), parse_when("1970-01-01T01:00Z", now=0.0)
        (2800.0, 3600.0)
    """
    raw = text.strip()
    if raw[:1].isdigit() and _AGE.fullmatch(raw.lower()):
        return now - parse_age(raw, what)
    try:
        stamp = datetime.fromisoformat(raw)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise InvalidInput(f"{what} {shown!r} is neither a time nor an age", WHEN_HINT) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


@dataclass(frozen=True, slots=True)
class Window:
    """Which logged requests a read takes: those answered from `since` to `until` (epoch
    seconds, either open), of them the newest `last`, of `model` only (`NAME:VERSION`, or
    `NAME` for all its versions). Every monitoring read takes one."""

    since: float | None = None
    until: float | None = None
    last: int | None = None
    model: str | None = None

    @classmethod
    def parse(
        cls,
        now: float,
        since: str | None = None,
        until: str | None = None,
        last: int | None = None,
        model: str | None = None,
    ) -> Window:
        """A window from what people type: `--since 2h --until 2026-12-01T09:00 --last 500`.

        Example:
            >>> Window.parse(now=10_000.0, since="1h", model="churn:3")
            Window(since=6400.0, until=None, last=None, model='churn:3')
        """
        start = None if since is None else parse_when(since, now, "--since")
        end = None if until is None else parse_when(until, now, "--until")
        if start is not None and end is not None and start > end:
            raise InvalidInput(
                f"the window starts ({since}) after it ends ({until})",
                "give --since a time before --until",
            )
        if last is not None and last < 1:
            raise InvalidInput(f"--last {last}: give at least 1 request", "e.g. --last 1000")
        ref = None if model is None else ModelRef.parse(model)
        if ref is not None and ref.alias is not None:
            raise InvalidInput(
                f"--model {model}: the log names versions, not aliases",
                f"give NAME:VERSION (see `mloop models show {ref.name}`), or NAME for all",
            )
        return cls(start, end, last, None if ref is None else str(ref))

    def describe(self) -> str:
        """The window in words, for messages: `the last 500 requests since 2026-12-01T07:00Z`."""

        def iso(at: float) -> str:
            return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        parts = [] if self.last is None else [f"the last {self.last} requests"]
        if self.since is not None:
            parts.append(f"since {iso(self.since)}")
        if self.until is not None:
            parts.append(f"until {iso(self.until)}")
        if self.model is not None:
            parts.append(f"of {self.model}")
        return " ".join(parts) or "all time"
