"""The controller's pure rules: admission by cool-down and max_per_day, the backoff after
failed checks, and the `controller:` settings."""

from __future__ import annotations

import pytest

from mloop.domain.controller import (
    BACKOFF_MAX,
    DAY,
    FeedbackPolicy,
    LoopPolicy,
    admit,
    backoff,
    check_loop_pipelines,
    parse_loop_policies,
    plain_loop_policies,
)
from mloop.domain.trigger import Trigger, parse_triggers
from mloop.errors import InvalidInput


def _trigger(**extra: object) -> Trigger:
    item = {"new_data": {"path": "in/", "rows": 10, "dataset": "d"}, **extra}
    return parse_triggers({"train": [item]})["train"][0]


def test_one_cause_retrains_once_within_the_cooldown() -> None:
    t = _trigger(cooldown="1h")
    assert admit(t, [], 0.0).admitted
    held = admit(t, [1000.0], 1000.0 + 3599)
    assert not held.admitted and "cool-down for 1s more" in held.reason
    assert admit(t, [1000.0], 1000.0 + 3600).admitted


def test_max_per_day_counts_the_last_24_hours() -> None:
    t = _trigger(cooldown="0", max_per_day=2)
    fires = [0.0, 100.0]
    refused = admit(t, fires, 200.0)
    assert not refused.admitted and "max_per_day 2" in refused.reason
    assert admit(t, fires, DAY + 1).admitted  # the first is a day old
    unlimited = _trigger(cooldown="0", max_per_day=None)
    assert admit(unlimited, [float(i) for i in range(100)], 101.0).admitted


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [backoff(n) for n in range(5)] == [0.0, 30.0, 60.0, 120.0, 240.0]
    assert backoff(50) == BACKOFF_MAX


def test_loop_policies_default_to_a_canary_and_the_champion() -> None:
    found = parse_loop_policies({"train": {"endpoint": "web"}, "score": {}})
    assert found == {
        "train": LoopPolicy("web", "canary", {}, "champion"),
        "score": LoopPolicy(None, "canary", {}, "champion"),
    }
    check_loop_pipelines(found, ["train", "score"])
    with pytest.raises(InvalidInput, match=r"controller\.trian: no pipeline") as caught:
        check_loop_pipelines({"trian": LoopPolicy()}, ["train"])
    assert caught.value.hint == "did you mean 'train'?"


def test_feedback_reads_the_loops_endpoint_unless_it_names_its_own() -> None:
    found = parse_loop_policies(
        {
            "train": {"endpoint": "web", "feedback": {"dataset": "churn", "label": "churned"}},
            "score": {"feedback": {"dataset": "d", "label": "y", "endpoint": "api", "since": "7d"}},
        }
    )
    assert found["train"].feedback == FeedbackPolicy("churn", "churned", "web", "30d")
    assert found["score"].feedback == FeedbackPolicy("d", "y", "api", "7d")
    assert found["score"].endpoint is None  # labels read from api; nothing rolled out
    assert parse_loop_policies(plain_loop_policies(found)) == found  # as the environment gives it


@pytest.mark.parametrize(
    ("feedback", "message", "hint"),
    [
        ({"label": "y"}, "controller.train.feedback.dataset is missing", "{dataset: churn"),
        ({"dataset": "d"}, "controller.train.feedback.label is missing", "label: churned"),
        ({"dataset": "d", "label": 3}, "feedback.label must name a column", "label: churned"),
        ({"dataset": "D D", "label": "y"}, "feedback: invalid dataset name", ""),
        ({"dataset": "d", "label": "y", "since": "soon"}, "since 'soon' is not an age", "30d"),
        ({"dataset": "d", "label": "y", "window": "1h"}, "unknown option 'window'", "since"),
        ("churn", "controller.train.feedback must be a mapping", "{dataset: churn"),
    ],
    ids=["no-dataset", "no-label", "label-number", "bad-name", "bad-since", "typo", "text"],
)
def test_a_bad_feedback_setting_names_its_key_and_the_fix(
    feedback: object, message: str, hint: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_loop_policies({"train": {"endpoint": "web", "feedback": feedback}})
    assert message in caught.value.message and hint in (caught.value.hint or "")


def test_feedback_without_any_endpoint_says_where_to_name_one() -> None:
    with pytest.raises(InvalidInput, match="no endpoint to read labelled requests from") as caught:
        parse_loop_policies({"train": {"feedback": {"dataset": "d", "label": "y"}}})
    hint = "give controller.train.feedback.endpoint, or controller.train.endpoint (the loop's)"
    assert caught.value.hint == hint
