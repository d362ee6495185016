"""Labels: the truth about an answered request, arriving any time after it was answered.

A label names the request by the id its answer carried (`mloop-request-id`), and the row of that
request (0 unless the request sent several rows), so it joins the prediction log on
(`request_id`, `row`). Its value is what the model should have answered: a class (text, a whole
number or true/false) or a number. A second label for the same request and row replaces the
first: a corrected label is the common case, a duplicate the next.

A label may arrive before its request reaches the log (the log is flushed every few seconds)
or name a request never logged at all (a typo, a sampled-out request): it is kept either way,
and the monitoring reports count labels whose request is not in the log as `unknown`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mloop.errors import InvalidInput

LabelValue = str | int | float | bool
MAX_ID = 1000  # as long as a request id can usefully be; the log keeps what the client sent
MAX_TEXT = 1000  # a class name, not a document
MAX_ROW = 2**31 - 1  # the log's `row` is int32
LABEL_HINT = 'give each label as {"request_id": "<mloop-request-id>", "label": <class or number>}'


@dataclass(frozen=True, slots=True)
class Label:
    """`value` for row `row` of request `request_id`, received at `at` from `source` (`http`
    for `POST /feedback`, the file's name for `mloop feedback`)."""

    request_id: str
    value: LabelValue
    at: float
    source: str
    row: int = 0


@dataclass(frozen=True, slots=True)
class Stored:
    """What one write of labels did: `stored` labels written, `replaced` of them over a label
    given before (or earlier in the same batch) for the same request and row."""

    stored: int
    replaced: int


def check_request_id(value: Any, where: str) -> str:
    """A request id as text: a number is taken as its text (a CSV column of ids may read as
    numbers), anything else refused.

    Example:
        >>> check_request_id("order-17", "item 0"), check_request_id(17, "item 0")
        ('order-17', '17')
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"{where} has request id {_shown(value)}, not a text", LABEL_HINT)
    text = str(value)
    if not text or len(text) > MAX_ID:
        raise InvalidInput(
            f"{where} has a request id of {len(text)} characters (1 to {MAX_ID})", LABEL_HINT
        )
    return text


def check_row(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ROW:
        raise InvalidInput(
            f"{where} has row {_shown(value)}, not a whole number from 0",
            "give the row's place in its request (0 for the first), or leave row out",
        )
    return value


def check_label(value: Any, where: str) -> LabelValue:
    """A label value: a class (text, whole number, true/false) or a finite number.

    Example:
        >>> check_label("churned", "item 0"), check_label(0.5, "item 1")
        ('churned', 0.5)
    """
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where} has label {value!r}, not a finite number", LABEL_HINT)
        return value
    if isinstance(value, str):
        if not value or len(value) > MAX_TEXT:
            raise InvalidInput(
                f"{where} has a label of {len(value)} characters (1 to {MAX_TEXT})", LABEL_HINT
            )
        return value
    raise InvalidInput(
        f"{where} has label {_shown(value)}: a label is a class (text, a whole number, "
        "true/false) or a number",
        LABEL_HINT,
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"
