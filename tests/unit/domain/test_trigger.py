"""Triggers as mloop.yaml declares them, the schedule's decision, and a new_data check's plan."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mloop.config import load_settings
from mloop.domain.landing import Listed, WatchedFile, plan_reads
from mloop.domain.trigger import (
    Accuracy,
    Alertmanager,
    Drift,
    NewData,
    Schedule,
    check_pipelines,
    parse_triggers,
    plain_trigger,
    schedule_due,
)
from mloop.errors import ConfigError, InvalidInput

ISSUE_EXAMPLE = {
    "train": [
        {"new_data": {"path": "landing/", "rows": 1000, "dataset": "churn"}},
        {"schedule": "0 3 * * *"},
        {"drift": {"endpoint": "churn", "window": "1h"}},
        {"accuracy": {"endpoint": "churn", "metric": "accuracy", "below": 0.8, "min_labels": 200}},
        {"alertmanager": {"token_env": "ALERTS_TOKEN", "alertname": "ChurnDrift"}},
    ]
}


def test_the_issues_example_parses_with_each_kinds_defaults() -> None:
    found = parse_triggers(ISSUE_EXAMPLE)["train"]
    assert [t.kind for t in found] == ["new_data", "schedule", "drift", "accuracy", "alertmanager"]
    assert [t.key for t in found][:2] == [
        "triggers.train[0].new_data",
        "triggers.train[1].schedule",
    ]
    assert found[0].spec == NewData("landing/", 1000, "churn", 5.0)
    assert found[1].spec == Schedule("0 3 * * *", "UTC")
    assert found[2].spec == Drift("churn", 3600.0)
    assert found[3].spec == Accuracy("churn", 0.8, "accuracy", 200, 86400.0)
    assert found[4].spec == Alertmanager("ALERTS_TOKEN", "ChurnDrift")
    # one cause retrains once: data, drift and accuracy wait an hour and retrain 4 times a day
    assert [(t.cooldown, t.max_per_day) for t in found] == [
        (3600.0, 4),
        (0.0, None),
        (3600.0, 4),
        (3600.0, 4),
        (3600.0, 4),
    ]


def test_an_error_metric_takes_an_above_bound() -> None:
    (found,) = parse_triggers(
        {"train": [{"accuracy": {"endpoint": "web", "metric": "rmse", "above": 3.5}}]}
    )["train"]
    assert found.spec == Accuracy("web", None, "rmse", above=3.5)
    assert found.spec.bound == ("above", 3.5)
    assert found.spec.crossed(3.6) and not found.spec.crossed(3.5)
    assert plain_trigger(found)["accuracy"]["above"] == 3.5


def test_cooldown_and_max_per_day_sit_beside_the_kind_and_read_back() -> None:
    given = {"train": [{"drift": {"endpoint": "churn"}, "cooldown": "2h", "max_per_day": 2}]}
    (trigger,) = parse_triggers(given)["train"]
    assert (trigger.cooldown, trigger.max_per_day) == (7200.0, 2)
    plain = plain_trigger(trigger)
    assert plain == {
        "drift": {"endpoint": "churn", "window": "1h", "features": [], "min_requests": 500},
        "cooldown": "2h",
        "max_per_day": 2,
    }
    assert parse_triggers({"train": [plain]})["train"][0] == trigger
    # `max_per_day: null` written out is no limit; left out, the kind's default (4)
    unlimited = {"drift": {"endpoint": "churn"}, "max_per_day": None}
    assert parse_triggers({"train": [unlimited]})["train"][0].max_per_day is None


@pytest.mark.parametrize(
    ("given", "names", "hint"),
    [
        ({"train": [{"retrain_when": {}}]}, "triggers.train[0]: unknown trigger", "kinds:"),
        ({"train": [{"schedule": "0 3 * *"}]}, "triggers.train[0].schedule: '0 3 * *'", "five"),
        ({"train": [{"schedule": "61 * * * *"}]}, "triggers.train[0].schedule:", "minute"),
        (
            {"train": [{"schedule": {"cron": "0 3 * * *", "timezone": "Mars/Olympus"}}]},
            "triggers.train[0].schedule: unknown time zone",
            "Europe/Paris",
        ),
        (
            {"train": [{"schedule": "0 3 * * *"}, {"new_data": {"path": "in/", "rows": 0}}]},
            "triggers.train[1].new_data: dataset is missing",
            "path, rows, dataset",
        ),
        (
            {"train": [{"new_data": {"path": "in/", "rows": 0, "dataset": "churn"}}]},
            "triggers.train[0].new_data: rows must be a whole number above 0",
            "rows: 1000",
        ),
        (
            {"train": [{"new_data": {"path": "in/", "rows": -5, "dataset": "churn"}}]},
            "rows must be a whole number above 0, not -5",
            "rows: 1000",
        ),
        (
            {"train": [{"drift": {"endpoint": "churn", "treshold": 1}}]},
            "triggers.train[0].drift: unknown option 'treshold'",
            "drift takes endpoint, window",
        ),
        (
            {"train": [{"drift": {"endpoint": "churn"}, "cooldown": 60}]},
            "triggers.train[0].drift: cooldown 60 needs a unit",
            "2h",
        ),
        (
            {"train": [{"accuracy": {"endpoint": "churn", "below": 0.8}, "max_per_day": 0}]},
            "triggers.train[0].accuracy: max_per_day must be a whole number of at least 1",
            "max_per_day: 4",
        ),
        (
            {"train": [{"accuracy": {"endpoint": "churn", "metric": "rmse", "below": 3.5}}]},
            "triggers.train[0].accuracy: rmse is an error (lower is better), so below: 3.5 "
            "would fire while it is good",
            "write above: N, the worst error to accept",
        ),
        (
            {"train": [{"accuracy": {"endpoint": "churn", "above": 0.9}}]},
            "triggers.train[0].accuracy: accuracy is a score (higher is better), so above: 0.9",
            "write below: N, the lowest score to accept",
        ),
        (
            {"train": [{"accuracy": {"endpoint": "churn", "below": 0.8, "above": 0.9}}]},
            "triggers.train[0].accuracy: both below and above; give exactly one",
            "e.g. metric: accuracy, below: 0.8",
        ),
        (
            {"train": [{"accuracy": {"endpoint": "churn", "metric": "mae"}}]},
            "triggers.train[0].accuracy: no bound; give exactly one",
            "e.g. metric: mae, above: 3.5",
        ),
        (
            {"train": [{"alertmanager": {"token_env": "my token"}}]},
            "triggers.train[0].alertmanager: token_env 'my token'",
            "never goes in mloop.yaml",
        ),
        (
            {"train": [{"schedule": "0 3 * * *", "drift": {"endpoint": "x"}}]},
            "triggers.train[0] must name one kind of trigger (found: schedule, drift)",
            "kinds:",
        ),
        ({"train": []}, "triggers.train must be a list of triggers", "new_data"),
    ],
    ids=[
        "unknown-kind",
        "cron-fields",
        "cron-range",
        "timezone",
        "no-dataset",
        "rows-zero",
        "rows-negative",
        "unknown-option",
        "cooldown-unit",
        "max-per-day",
        "rmse-below",
        "accuracy-above",
        "both-bounds",
        "no-bound",
        "token-env",
        "two-kinds",
        "empty-list",
    ],
)
def test_bad_triggers_name_the_key_path_and_the_fix(given: Any, names: str, hint: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_triggers(given)
    assert names in caught.value.message
    assert "\n" not in caught.value.message
    assert hint in (caught.value.hint or "")


def test_mloop_yaml_errors_name_the_file_and_the_key_path(tmp_path: Path) -> None:
    (tmp_path / "mloop.yaml").write_text(
        "triggers:\n  train:\n    - new_data: {path: in/, rows: 10, dataset: churn}\n"
        '    - schedule: "0 3 * *"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert caught.value.message.startswith(f"{tmp_path / 'mloop.yaml'}: triggers.train[1].schedule")
    (tmp_path / "mloop.yaml").write_text('triggers: {train: [{schedule: "0 3 * * *"}]}\n')
    settings = load_settings(tmp_path, environ={})
    assert settings.triggers["train"][0].spec == Schedule("0 3 * * *")
    assert settings.values["triggers"] == {
        "train": [
            {
                "schedule": {"cron": "0 3 * * *", "timezone": "UTC"},
                "cooldown": "0",
                "max_per_day": None,
            }
        ]
    }


def test_triggers_of_a_pipeline_the_project_lacks_are_refused_with_a_suggestion() -> None:
    triggers = parse_triggers({"trian": [{"schedule": "0 3 * * *"}]})
    check_pipelines(parse_triggers({"train": [{"schedule": "0 3 * * *"}]}), ["train"])
    with pytest.raises(InvalidInput) as caught:
        check_pipelines(triggers, ["train", "score"])
    assert caught.value.message == "triggers.trian: no pipeline 'trian' in mloop.yaml"
    assert caught.value.hint == "did you mean 'train'?"
    with pytest.raises(InvalidInput, match="no pipeline") as caught:
        check_pipelines(triggers, [])
    assert "pipelines:" in (caught.value.hint or "")


# schedule ----------------------------------------------------------------------------------
def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_schedule_never_fired_waits_for_its_first_time() -> None:
    check = schedule_due(Schedule("0 3 * * *"), None, utc(2026, 1, 1, 10))
    assert (check.due, check.next_fire) == (False, utc(2026, 1, 2, 3))


def test_a_schedule_is_due_once_its_time_passes_and_missed_times_collapse() -> None:
    spec = Schedule("0 3 * * *")
    last = utc(2026, 1, 1, 3)
    assert not schedule_due(spec, last, utc(2026, 1, 2, 2, 59, 59)).due
    at_three = schedule_due(spec, last, utc(2026, 1, 2, 3))
    assert (at_three.due, at_three.fire_at, at_three.next_fire) == (
        True,
        utc(2026, 1, 2, 3),
        utc(2026, 1, 3, 3),
    )
    # down for three days: one fire, at the latest time missed
    late = schedule_due(spec, last, utc(2026, 1, 5, 12))
    assert (late.due, late.fire_at) == (True, utc(2026, 1, 5, 3))
    # once recorded as fired at fire_at, it is not due again until the next time
    assert not schedule_due(spec, late.fire_at, utc(2026, 1, 5, 12)).due


def test_a_schedule_reads_its_time_zone() -> None:
    spec = Schedule("0 3 * * *", "Europe/Paris")  # 03:00 in Paris is 02:00 UTC in winter
    check = schedule_due(spec, utc(2026, 1, 1, 2), utc(2026, 1, 2, 2, 30))
    assert (check.due, check.fire_at) == (True, utc(2026, 1, 2, 2))
    assert check.next_fire == utc(2026, 1, 3, 2)


def test_daylight_saving_time_follows_cron() -> None:
    paris = ZoneInfo("Europe/Paris")
    spec = Schedule("30 2 * * *", "Europe/Paris")
    # spring: 02:30 does not exist on 29 March 2026; cron fires right after the change (03:00)
    spring = schedule_due(spec, None, datetime(2026, 3, 29, 0, 0, tzinfo=paris))
    assert spring.next_fire == datetime(2026, 3, 29, 3, 0, tzinfo=paris).astimezone(UTC)
    # autumn: 02:30 happens twice on 25 October 2026; it fires once (the first, CEST)
    first = utc(2026, 10, 25, 0, 30)  # 02:30 CEST (an ambiguous local time compares unequal)
    assert schedule_due(spec, None, datetime(2026, 10, 25, 0, tzinfo=paris)).next_fire == first
    after_first = schedule_due(spec, first, utc(2026, 10, 25, 1, 40))
    assert not after_first.due  # the repeated 02:30 (CET, 01:30 UTC) is not a second fire
    assert after_first.next_fire == datetime(2026, 10, 26, 2, 30, tzinfo=paris).astimezone(UTC)


def test_an_expression_that_never_matches_has_no_next_fire() -> None:
    check = schedule_due(Schedule("* * */20 * 1L"), utc(2026, 1, 1), utc(2026, 6, 1))
    assert (check.due, check.next_fire) == (False, None)


# new_data's plan ---------------------------------------------------------------------------
def listed(path: str, size: int = 10, stamp: str = "1", modified: float = 0.0) -> Listed:
    return Listed(path, size, stamp, modified)


def test_a_plan_reads_only_new_or_changed_settled_table_files() -> None:
    now = 1000.0
    remembered = {
        "in/old.csv": WatchedFile("in/old.csv", 10, "1", 0.0, "d-old", 3, first_seen=5.0),
        "in/edited.csv": WatchedFile("in/edited.csv", 10, "1", 0.0, "d-ed", 3, first_seen=6.0),
        "in/growing.csv": WatchedFile("in/growing.csv", 10, "1", 0.0, first_seen=7.0),
        "in/gone.csv": WatchedFile("in/gone.csv", 10, "1", 0.0, "d-gone", 3),
    }
    plan = plan_reads(
        [
            listed("in/old.csv"),
            listed("in/edited.csv", stamp="2"),  # same size, new mtime: read again
            listed("in/growing.csv", size=20),  # resized since the last check: wait
            listed("in/fresh.parquet", modified=now - 1),  # written a second ago: wait
            listed("in/new.csv"),
            listed("in/notes.txt"),
        ],
        remembered,
        now,
        settle=5.0,
    )
    assert [f.path for f in plan.known] == ["in/old.csv"]
    assert plan.known[0].digest == "d-old"
    assert [(f.path, f.first_seen) for f in plan.to_read] == [
        ("in/edited.csv", 6.0),
        ("in/new.csv", now),
    ]
    assert [(f.path, f.size) for f in plan.pending] == [
        ("in/growing.csv", 20),
        ("in/fresh.parquet", 10),
    ]
    assert [(s.path, s.reason) for s in plan.skipped] == [("in/notes.txt", "not CSV or Parquet")]
    assert plan.gone == ("in/gone.csv",)
    # the grown file, the same size at the next check, is read then
    again = plan_reads(
        [listed("in/growing.csv", size=20)], {"in/growing.csv": plan.pending[0]}, now, 5.0
    )
    assert [f.path for f in again.to_read] == ["in/growing.csv"]
