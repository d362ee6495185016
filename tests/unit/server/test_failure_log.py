"""A model failing on every request logs one traceback, then one counting line per period."""

from __future__ import annotations

import logging

import pytest

from mloop.server.slots import FailureLog


def test_the_first_failure_has_its_traceback_and_the_rest_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = FailureLog("churn:9", every=3600)
    with caplog.at_level(logging.ERROR, logger="mloop.server"):
        for n in range(5):
            log.failed(RuntimeError(f"boom {n}"))
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    assert caplog.records[0].getMessage() == "churn:9 failed to predict"

    caplog.clear()
    log.quiet_until -= 3601  # the period has passed
    with caplog.at_level(logging.ERROR, logger="mloop.server"):
        log.failed(RuntimeError("boom 5"))
    [line] = caplog.records
    assert line.exc_info is None
    assert line.getMessage() == (
        "churn:9 failed to predict (and 4 more times in 3600 s): RuntimeError: boom 5"
    )
