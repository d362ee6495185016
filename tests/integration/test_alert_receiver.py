"""The Alertmanager webhook receiver over real HTTP on 127.0.0.1, on a real project: only
Alertmanager's bearer token is let in, a malformed post is refused whole, each matching alert
is recorded as an Event, and the `alertmanager` check fires once per alert (a repeat of the
same alert, or a resolved one, never again)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mloop.errors import ConfigError
from mloop.project import Project
from mloop.server.alerts import RunningReceiver, start
from mloop.services.automation.alerts import UNMATCHED_REF, alert_ref
from tests.conftest import CliResult

TOKEN = "a-long-random-token"
ENV = {"MLOOP_ALERTMANAGER_TOKEN": TOKEN}
TRIGGERS = (
    "pipelines: {train: 'pipeline:train'}\n"
    "triggers:\n  train:\n"
    "    - alertmanager: {alertname: MloopFeatureDrift, labels: {endpoint: web}}\n"
)


def alert(
    status: str = "firing", starts: str = "2026-12-01T10:00:00Z", **labels: str
) -> dict[str, Any]:
    found = {"alertname": "MloopFeatureDrift", "endpoint": "web", "feature": "tenure"} | labels
    return {
        "status": status,
        "labels": found,
        "annotations": {"summary": "tenure drifted on web"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": f"{zlib.crc32(json.dumps(found, sort_keys=True).encode()):08x}",
    }


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "mloop",
        "groupKey": '{}:{alertname="MloopFeatureDrift"}',
        "groupLabels": {"alertname": "MloopFeatureDrift"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": list(alerts),
    }


@pytest.fixture
def opened(project: Path) -> Project:
    with (project / "mloop.yaml").open("a") as fh:
        fh.write(TRIGGERS)
    return Project.open(project)


@pytest.fixture
def receiver(opened: Project) -> Iterator[RunningReceiver]:
    running = start(opened, port=0, environ=ENV)
    try:
        yield running
    finally:
        running.stop()


def post(url: str, body: Any, token: str | None = TOKEN, **headers: str) -> httpx.Response:
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("content-type", "application/json")
    return httpx.post(url, content=content, headers=headers, timeout=10)


def recorded(opened: Project) -> list[Any]:
    (trigger,) = opened.settings.triggers["train"]
    return [*opened.metadata.events.find(alert_ref(trigger)), *unmatched(opened)]


def unmatched(opened: Project) -> list[Any]:
    return opened.metadata.events.find(UNMATCHED_REF)


def test_only_alertmanagers_token_is_let_in_and_a_refusal_records_nothing(
    opened: Project, receiver: RunningReceiver
) -> None:
    body = payload(alert())
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        refused = post(receiver.url, body, token=token)
        assert refused.status_code == 401, (token, refused.text)
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == 'Bearer realm="mloop"'
    basic = post(receiver.url, body, token=None, authorization=f"Basic {TOKEN}")
    assert basic.status_code == 401
    assert recorded(opened) == []
    (trigger,) = opened.settings.triggers["train"]
    assert not opened.signals.alerts.check(trigger).fired


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        ([], "the body is list, not an Alertmanager payload"),
        ({"version": "3", "alerts": []}, "webhook payload version '3': this receiver reads"),
        ({"version": "4"}, "the body holds no list `alerts`"),
        (payload(alert(), {**alert(), "status": "pending"}), "alerts[1].status is 'pending'"),
        (payload({**alert(), "startsAt": None}), "alerts[0].startsAt is missing"),
        (payload({**alert(), "labels": {"feature": "tenure"}}), "alerts[0].labels has no alert"),
        (payload({**alert(), "labels": {"alertname": 3}}), "alerts[0].labels must map names"),
    ],
    ids=["not-json", "a-list", "version", "no-alerts", "status", "starts", "alertname", "labels"],
)
def test_a_malformed_post_is_a_400_naming_what_is_wrong_and_records_nothing(
    opened: Project, receiver: RunningReceiver, body: Any, message: str
) -> None:
    refused = post(receiver.url, body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_input" and error["message"].startswith(message), error
    assert "webhook_config" in error["hint"]
    assert recorded(opened) == []  # checked whole: the good alert before the bad one too


def test_each_alert_fires_once_repeats_and_resolved_never_again(
    opened: Project, receiver: RunningReceiver
) -> None:
    (trigger,) = opened.settings.triggers["train"]
    signals = opened.signals
    first = post(receiver.url, payload(alert()))
    assert first.status_code == 200, first.text
    assert first.json() == {
        "alerts": 1,
        "fired": {trigger.key: 1},
        "repeats": 0,
        "resolved": 0,
        "unmatched": 0,
    }
    (event,) = recorded(opened)
    assert event.action == "trigger.alert_received" and event.ref == alert_ref(trigger)
    assert event.details["labels"]["feature"] == "tenure"
    assert event.details["starts_at"] == "2026-12-01T10:00:00Z" and event.details["fingerprint"]
    check = signals.alerts.check(trigger)
    assert check.fired and check.numbers["alerts"] == 1
    assert check.reason == "1 firing alert from Alertmanager: MloopFeatureDrift"
    assert check.numbers["fired_by"][0]["labels"]["endpoint"] == "web"
    consumed = check.numbers["received_at"]

    # Alertmanager's repeat_interval sends the same alert again: recorded, fires nothing new
    again = post(receiver.url, payload(alert()))
    assert again.json()["repeats"] == 1 and again.json()["fired"] == {}
    assert signals.alerts.check(trigger).numbers["alerts"] == 1  # still the one
    after = signals.alerts.check(trigger, since=consumed)
    assert not after.fired and after.reason == (
        "no new firing alert from Alertmanager since the last consumption"
    )
    # resolved: recorded, never fires; another alertname or endpoint: not this trigger's
    post(receiver.url, payload(alert("resolved"), alert(alertname="MloopAccuracyDrop")))
    post(receiver.url, payload(alert(endpoint="other")))
    quiet = signals.alerts.check(trigger, since=consumed)
    assert not quiet.fired and "(1 resolved: they never fire)" in quiet.reason
    assert [e.details["labels"].get("alertname") for e in unmatched(opened)] == [
        "MloopFeatureDrift",  # endpoint=other
        "MloopAccuracyDrop",
    ]
    # the same alert firing again later starts at another time: a new cause, fires once more
    later = post(receiver.url, payload(alert(starts="2026-12-01T12:00:00Z")))
    assert later.json()["fired"] == {trigger.key: 1}
    fired = signals.alerts.check(trigger, since=consumed)
    assert fired.fired and fired.numbers["alerts"] == 1
    assert fired.numbers["fired_by"][0]["starts_at"] == "2026-12-01T12:00:00Z"
    assert len(recorded(opened)) == 6  # every alert received is on record


def test_routes_methods_and_body_size(receiver: RunningReceiver) -> None:
    base = receiver.url.removesuffix("/alerts")
    assert httpx.get(f"{base}/-/ready").status_code == 200
    assert httpx.get(receiver.url).status_code == 405
    assert post(f"{base}/other", payload(alert())).status_code == 404
    huge = post(receiver.url, b"[" + b"0," * (3 * 2**20) + b"0]")
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"


def test_the_receiver_refuses_to_start_without_a_token(project: Path, opened: Project) -> None:
    with pytest.raises(ConfigError) as refused:
        start(opened, port=0, environ={})
    assert refused.value.message == (
        "triggers.train[0].alertmanager: $MLOOP_ALERTMANAGER_TOKEN is not set, so "
        "Alertmanager's posts could not be told from anyone's"
    )
    assert refused.value.hint is not None
    assert "export MLOOP_ALERTMANAGER_TOKEN=" in refused.value.hint
    assert "authorization: {credentials:" in refused.value.hint
    (project / "mloop.yaml").write_text((project / "mloop.yaml").read_text().replace(TRIGGERS, ""))
    with pytest.raises(ConfigError, match=r"no alertmanager trigger in mloop\.yaml"):
        start(Project.open(project), port=0, environ=ENV)


def test_triggers_check_shows_the_alertmanager_state(
    opened: Project, receiver: RunningReceiver, cli: Callable[..., CliResult]
) -> None:
    quiet = cli("triggers", "check")
    assert quiet.code == 0, quiet.err
    assert "waits: no new firing alert from Alertmanager" in quiet.out
    post(receiver.url, payload(alert()))
    shown = json.loads(cli("triggers", "check", "--json").out)
    assert shown[0]["signal"]["fired"] is True
    assert shown[0]["signal"]["numbers"]["alerts"] == 1
