"""What a drift, accuracy or alertmanager trigger's check found (`SignalCheck`), and the alerts
Alertmanager posts to mloop's webhook receiver (`parse_alerts`, of its webhook payload version
4). Pure; the checks and the receiver are `services.automation.signals` and `server.alerts`.

A payload, as Alertmanager's `webhook_config` sends it:

    {"version": "4", "status": "firing", "receiver": "mloop", "groupLabels": {...},
     "commonLabels": {...}, "alerts": [{"status": "firing", "labels": {"alertname": ...},
     "annotations": {...}, "startsAt": "...", "endsAt": "...", "fingerprint": "..."}]}

Only `alerts` is read: the group's labels are those its alerts share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mloop.errors import InvalidInput

MAX_ALERTS = 1000  # Alertmanager's `max_alerts` is unlimited by default; a group is rarely big
ALERT_STATUSES = ("firing", "resolved")
ALERTS_HINT = (
    "point an Alertmanager webhook_config at this receiver: it posts "
    '{"version": "4", "alerts": [{"status", "labels", "startsAt", "fingerprint", ...}]}'
)


@dataclass(frozen=True, slots=True)
class SignalCheck:
    """One check of a drift, accuracy or alertmanager trigger (`trigger`: its key): whether it
    `fired`, the `reason` in one line, and the `numbers` behind it (plain values: what an
    Event's details and `--json` carry)."""

    trigger: str
    kind: str
    fired: bool
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)
    checked_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of a webhook post. The same alert repeated by Alertmanager (its
    `repeat_interval`) has the same `fingerprint` (a hash of its labels) and `starts_at`:
    `identity`. The same alert firing again after it resolved starts at another time."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def identity(self) -> str:
        return f"{self.fingerprint}@{self.starts_at}"


def parse_alerts(payload: Any) -> tuple[Alert, ...]:
    """The alerts of a decoded webhook body, or InvalidInput naming what is wrong (the whole
    post is refused: nothing of it is recorded).

    Example:
        >>> alert = {"status": "firing", "labels": {"alertname": "X"}, "fingerprint": "ab",
        ...          "startsAt": "2026-12-01T10:00:00Z"}
        >>> parse_alerts({"version": "4", "alerts": [alert]})[0].identity
        'ab@2026-12-01T10:00:00Z'
    """
    if not isinstance(payload, Mapping):
        raise InvalidInput(
            f"the body is {_kind(payload)}, not an Alertmanager payload", ALERTS_HINT
        )
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise InvalidInput(
            f"webhook payload version {version!r}: this receiver reads version 4", ALERTS_HINT
        )
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise InvalidInput("the body holds no list `alerts`", ALERTS_HINT)
    if len(alerts) > MAX_ALERTS:
        raise InvalidInput(
            f"the body holds {len(alerts)} alerts, over the limit of {MAX_ALERTS}",
            "set max_alerts in the webhook_config (e.g. max_alerts: 100)",
        )
    return tuple(_alert(item, f"alerts[{i}]") for i, item in enumerate(alerts))


def _alert(item: Any, where: str) -> Alert:
    if not isinstance(item, Mapping):
        raise InvalidInput(f"{where} is {_kind(item)}, not an alert", ALERTS_HINT)
    status = item.get("status")
    if status not in ALERT_STATUSES:
        raise InvalidInput(f"{where}.status is {status!r}, not firing or resolved", ALERTS_HINT)
    labels = _texts(item.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        raise InvalidInput(f"{where}.labels has no alertname", ALERTS_HINT)
    starts_at = item.get("startsAt")
    if not isinstance(starts_at, str) or not starts_at:
        raise InvalidInput(f"{where}.startsAt is missing", ALERTS_HINT)
    fingerprint = item.get("fingerprint") or _fingerprint(labels)  # before Alertmanager 0.19
    if not isinstance(fingerprint, str):
        raise InvalidInput(f"{where}.fingerprint is {_kind(fingerprint)}, not text", ALERTS_HINT)
    ends_at = item.get("endsAt") or ""
    return Alert(
        str(status),
        labels,
        _texts(item.get("annotations") or {}, f"{where}.annotations"),
        str(starts_at),
        str(ends_at),
        str(fingerprint),
    )


def _texts(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f"{where} must map names to text", ALERTS_HINT)
    return dict(value)


def _fingerprint(labels: Mapping[str, str]) -> str:
    """What stands for Alertmanager's fingerprint when a post has none: it is a hash of the
    alert's labels too (another hash, so the two never compare equal)."""
    import hashlib

    text = "\n".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return "labels:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
