"""Ages and times as people write them for a window or a retention, and the window itself."""

from __future__ import annotations

import pytest

from mloop.domain.prediction import Window, format_age, parse_age, parse_when
from mloop.errors import InvalidInput

NOW = 1_790_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("30d", 2_592_000.0), ("2w", 1_209_600.0)],
)
def test_ages_read_and_print_back(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds
    assert parse_age(format_age(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "0s", "1y", "٣d", "nan", "6000w"])
def test_what_is_not_an_age_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_age(text)


def test_a_time_is_iso_or_an_age_before_now() -> None:
    assert parse_when("2h", NOW) == NOW - 7200
    assert parse_when("1970-01-02T00:00", NOW) == 86_400.0  # no zone: UTC
    assert parse_when("1970-01-02T01:00+01:00", NOW) == 86_400.0
    assert parse_when("1970-01-02", NOW) == 86_400.0
    with pytest.raises(InvalidInput, match="neither a time nor an age"):
        parse_when("yesterday", NOW)


def test_a_window_is_checked_as_it_is_parsed() -> None:
    window = Window.parse(NOW, since="1h", until="10m", last=5, model="churn:3")
    assert window == Window(NOW - 3600, NOW - 600, 5, "churn:3")
    assert window.describe().startswith("the last 5 requests since 2026-")
    assert Window.parse(NOW, model="churn").model == "churn"
    assert Window().describe() == "all time"
    for bad in ({"since": "10m", "until": "1h"}, {"last": 0}, {"model": "churn@champion"}):
        with pytest.raises(InvalidInput):
            Window.parse(NOW, **bad)  # type: ignore[arg-type]
