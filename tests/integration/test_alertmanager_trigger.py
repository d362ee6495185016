"""A team's alerting starts the loop, end to end with real parts: drifted traffic to a real
`mloop serve --endpoint`, scraped by a real Prometheus evaluating the rules `mloop monitor
export prometheus` writes, whose MloopFeatureDrift goes to a real Alertmanager, whose
webhook_config posts with a bearer token to mloop's receiver; the `alertmanager` check then
fires once, however often Alertmanager repeats the alert."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from mloop.project import Project
from mloop.server.alerts import start
from mloop.services.automation.alerts import alert_ref
from tests.conftest import CliResult
from tests.integration.test_monitoring_alerts import FLUSHED, _frame, _send, trained  # noqa: F401
from tests.integration.test_serve_endpoint import serving
from tests.servers import alertmanager, prometheus, wait_for

TOKEN = "e2e-token-0123456789"
TRIGGERS = (
    "pipelines: {train: 'pipeline:train'}\n"
    "triggers:\n  train:\n"
    # the shifted tenure moves the answers too (their drift fires its own alert): this trigger
    # listens to tenure's alone, so the test counts the repeats of one alert
    "    - alertmanager: {alertname: MloopFeatureDrift, labels: {endpoint: web, feature: tenure}}\n"
)


def test_drift_alert_through_alertmanager_fires_the_trigger_once(
    trained: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules"
    assert cli("monitor", "export", "prometheus", str(rules), "--for", "0m").code == 0
    (trained / "mloop.yaml").write_text((trained / "mloop.yaml").read_text() + TRIGGERS)
    opened = Project.open(trained)
    (trigger,) = opened.settings.triggers["train"]
    signals = opened.signals
    receiver = start(opened, port=0, environ={"MLOOP_ALERTMANAGER_TOKEN": TOKEN})
    try:
        with (
            alertmanager(receiver.url, repeat="2s", token=TOKEN) as manager,
            serving(trained) as url,
            prometheus([url], rules=[rules / "mloop-rules.yml"], alertmanager=manager),
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            _send(client, _frame(np.random.default_rng(6), 2000, shift=4.0), "shifted")
            wait_for(lambda: signals.alerts.check(trigger).fired, FLUSHED + 30, "a firing")
            check = signals.alerts.check(trigger)
            assert check.numbers["alerts"] == 1, check.numbers
            (cause,) = check.numbers["fired_by"]
            assert cause["labels"]["feature"] == "tenure" and cause["labels"]["model"] == "churn:1"

            # Alertmanager sends it again every 2 s: each is recorded as a repeat, none fires
            def repeats() -> int:
                events = opened.metadata.events.find(alert_ref(trigger))
                return sum(bool(e.details["repeat"]) for e in events)

            wait_for(lambda: repeats() >= 2, 30, "Alertmanager's repeats")
            assert signals.alerts.check(trigger).numbers["alerts"] == 1
            since = check.numbers["received_at"]
            assert not signals.alerts.check(trigger, since=since).fired

            # anyone else is refused, and leaves nothing behind
            before = len(opened.metadata.events.find(alert_ref(trigger), limit=1000))
            body = {"version": "4", "alerts": []}
            wrong = httpx.post(receiver.url, json=body, headers={"authorization": "Bearer x"})
            assert wrong.status_code == 401
            assert httpx.post(receiver.url, json=body).status_code == 401
            bad = httpx.post(
                receiver.url,
                json={"version": "4", "alerts": [{"status": "firing"}]},
                headers={"authorization": f"Bearer {TOKEN}"},
            )
            assert bad.status_code == 400
            assert bad.json()["error"]["message"] == "alerts[0].labels must map names to text"
            after = opened.metadata.events.find(alert_ref(trigger), limit=1000)
            assert all(e.details["repeat"] for e in after[: len(after) - before])
    finally:
        receiver.stop()
