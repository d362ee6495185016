"""`POST /feedback`: outcomes that arrive after the answers, counted for the version that gave
each answer, so an A/B test can compare its variants on what happened to their users.

The body is a batch (a list, or `{"feedback": [...]}`) of items
`{"key": "user-7", "outcome": 1}`: `key` is the value the endpoint routes by (its sticky
header's or payload field's value; with no sticky key, the request id the answer carried in
`mloop-request-id`, which may also be given as `request_id`). The version is found by routing
the key again, with the same split rule and salt as the request was: no server remembers
requests, so any server process (and any worker) of the endpoint takes any outcome. An item
lands on the version the endpoint's current deployment gives its key; post outcomes while the
test runs, since a later deployment may split differently.

`outcome` is 0 or 1 (or false/true) when the test counts a rate (`--outcome rate`, the default),
any finite number when it compares means (`--outcome mean`). A batch is checked whole before any
of it is counted: one bad item refuses the batch with its position, and nothing is half-counted.
The counts go to the store with the next report, as the versions' requests do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from mloop.errors import InvalidInput
from mloop.server.routing import as_key
from mloop.server.slots import Slot, Table

MAX_ITEMS = 100_000
_HINT = (
    'send {"feedback": [{"key": "<sticky key or mloop-request-id>", "outcome": 1}, ...]} as JSON'
)


@dataclass(frozen=True, slots=True)
class Counted:
    """What a batch added, per version (NAME:V)."""

    accepted: int
    versions: dict[str, int]

    def plain(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "versions": self.versions}


def parse(body: bytes, table: Table) -> list[tuple[bytes, float]]:
    """The (routing key, outcome) pairs of a feedback body, or InvalidInput naming the first
    bad item.

    Example:
        >>> parse(b'[{"key": "u7", "outcome": true}]', table)  # doctest: +SKIP
        [(b'u7', 1.0)]
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the feedback body is not JSON: {exc}", _HINT) from None
    items = payload.get("feedback") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise InvalidInput("the feedback body holds no list of items", _HINT)
    if len(items) > MAX_ITEMS:
        raise InvalidInput(
            f"the feedback body holds {len(items)} items, over the limit of {MAX_ITEMS}",
            "send them in several requests",
        )
    rate = table.plan.outcome == "rate"
    sticky = table.plan.sticky
    pairs = []
    for at, item in enumerate(items):
        where = f"feedback item {at}"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} is {type(item).__name__}, not an object", _HINT)
        raw = item.get("key", item.get("request_id"))
        if "request_id" in item and "key" not in item and sticky is not None:
            raise InvalidInput(
                f"{where} names a request id, but endpoint {table.name!r} assigns variants "
                f"by {sticky}",
                f'send the {sticky} value of the request as "key"',
            )
        key = as_key(raw)
        if key is None or isinstance(raw, (dict, list)):
            raise InvalidInput(f"{where} has no key (a text or number)", _HINT)
        pairs.append((key, _outcome(item.get("outcome"), rate, where)))
    return pairs


def _outcome(value: Any, rate: bool, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{where} has outcome {value!r}, not a finite number", _HINT)
    if rate and value not in (0, 1):
        raise InvalidInput(
            f"{where} has outcome {value!r}, but the test counts a rate: 0 or 1 per answer",
            "send 1 for a conversion and 0 for none, or deploy with --outcome mean "
            "to compare numbers",
        )
    return float(value)


def count(table: Table, pairs: list[tuple[bytes, float]]) -> Counted:
    """Add each outcome to the version its key routes to (the one that answered it)."""
    versions: dict[str, int] = {}
    for key, value in pairs:
        slot: Slot = table.pick(key)
        slot.counts.outcome(value)
        slot.metrics.outcome(value)
        versions[slot.label] = versions.get(slot.label, 0) + 1
    return Counted(len(pairs), versions)
