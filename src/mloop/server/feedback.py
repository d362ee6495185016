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

The same body takes labels: items `{"request_id": "<mloop-request-id>", "label": "churned"}`
(and `"row": N` for a request that sent several rows), the truth about an answer, which
monitoring joins to the prediction log for accuracy and bias (`domain/feedback.py`). An item
with `label` is a label, one with `outcome` an outcome, one with both is both. Labels go to the
metadata store the server's prediction log writes to, before any outcome of the batch is
counted: a store that refuses them refuses the batch, and nothing of it is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from mloop.domain.feedback import Label, Stored, check_label, check_request_id, check_row
from mloop.errors import InvalidInput
from mloop.server.routing import as_key
from mloop.server.slots import Slot, Table

MAX_ITEMS = 100_000
_HINT = (
    'send {"feedback": [{"key": "<sticky key or mloop-request-id>", "outcome": 1}, ...]} as JSON'
)
_EITHER_HINT = (
    'give "outcome" (what the user did: 1, 0 or a number) or "label" (the true answer, with '
    '"request_id"), or both'
)
NO_LOG_HINT = (
    "turn the prediction log on (predictions_sample_rate above 0 in mloop.yaml) and restart "
    "the server, or store labels with `mloop feedback ENDPOINT FILE`"
)


@dataclass(frozen=True, slots=True)
class Counted:
    """What a batch added, per version (NAME:V)."""

    accepted: int
    versions: dict[str, int]
    labels: Stored | None = None  # None: the batch held no label

    def plain(self) -> dict[str, Any]:
        found: dict[str, Any] = {"accepted": self.accepted, "versions": self.versions}
        if self.labels is not None:
            found["labels"] = {"stored": self.labels.stored, "replaced": self.labels.replaced}
        return found


@dataclass(frozen=True, slots=True)
class Feedback:
    """A checked feedback body: (routing key, outcome) pairs and labels, in the body's order."""

    items: int
    outcomes: list[tuple[bytes, float]]
    labels: list[Label]


def parse(body: bytes, table: Table, at: float = 0.0) -> Feedback:
    """The outcomes and labels of a feedback body (labels received `at`), or InvalidInput
    naming the first bad item.

    Example:
        >>> parse(b'[{"key": "u7", "outcome": true}]', table).outcomes  # doctest: +SKIP
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
    labels = []
    for place, item in enumerate(items):
        where = f"feedback item {place}"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} is {type(item).__name__}, not an object", _HINT)
        if "outcome" not in item and "label" not in item:
            raise InvalidInput(f"{where} has neither an outcome nor a label", _EITHER_HINT)
        if "label" in item:
            rid = check_request_id(item.get("request_id"), where)
            row = check_row(item.get("row"), where)
            labels.append(Label(rid, check_label(item["label"], where), at, "http", row))
        if "outcome" in item:
            pairs.append((_key(item, sticky, table.name, where), _outcome(item, rate, where)))
    return Feedback(len(items), pairs, labels)


def _key(item: dict[str, Any], sticky: str | None, endpoint: str, where: str) -> bytes:
    raw = item.get("key", item.get("request_id"))
    if "request_id" in item and "key" not in item and sticky is not None:
        raise InvalidInput(
            f"{where} names a request id, but endpoint {endpoint!r} assigns variants by {sticky}",
            f'send the {sticky} value of the request as "key"',
        )
    key = as_key(raw)
    if key is None or isinstance(raw, (dict, list)):
        raise InvalidInput(f"{where} has no key (a text or number)", _HINT)
    return key


def _outcome(item: dict[str, Any], rate: bool, where: str) -> float:
    value = item["outcome"]
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


def store(recorder: Any, endpoint: str, labels: list[Label]) -> Stored:
    """Write `labels` to the metadata store the server's prediction log writes to (`recorder`,
    a `PredictionLog`, or None when this server logs nothing). Blocking: call it in a thread.
    """
    if recorder is None:
        raise InvalidInput(
            f"endpoint {endpoint!r} keeps no prediction log on this server, so labels would "
            "join nothing",
            NO_LOG_HINT,
        )
    stored: Stored = recorder.metadata.feedback.add(endpoint, labels)
    return stored


def count(table: Table, parsed: Feedback, labels: Stored | None = None) -> Counted:
    """Add each outcome to the version its key routes to (the one that answered it); `labels`
    is what storing the batch's labels did."""
    versions: dict[str, int] = {}
    for key, value in parsed.outcomes:
        slot: Slot = table.pick(key)
        slot.counts.outcome(value)
        slot.metrics.outcome(value)
        versions[slot.label] = versions.get(slot.label, 0) + 1
    return Counted(parsed.items, versions, labels)
