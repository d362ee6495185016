"""Alerts a team's Alertmanager posted to mloop's receiver (`server.alerts`), recorded as Events,
and the `alertmanager` trigger's check of them.

Each alert a trigger matches (its `alertname` and `labels`) is an Event `trigger.alert_received`
under `trigger/KEY` with the alert's labels, fingerprint and start; one no trigger matches is
recorded under `alertmanager`, so "why did my alert start nothing?" has an answer. Alertmanager
sends a firing alert again every `repeat_interval`: the same fingerprint and start, recorded as
a repeat, which never fires. A resolved alert is recorded and never fires.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mloop.domain.event import Event
from mloop.domain.records import to_plain
from mloop.domain.signal import Alert, SignalCheck
from mloop.domain.trigger import Alertmanager, Trigger
from mloop.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from mloop.store.metadata.protocol import MetadataStore

RECEIVED = "trigger.alert_received"
UNMATCHED = "trigger.alert_unmatched"
UNMATCHED_REF = "alertmanager"
REPEATS_LOOKBACK = 1000  # records of a trigger a new alert is compared with for a repeat


def alert_ref(trigger: Trigger) -> str:
    """Where a trigger's received alerts are recorded (an Event's `ref`)."""
    return f"trigger/{trigger.key}"


@dataclass(frozen=True, slots=True)
class Received:
    """What one webhook post recorded: alerts taken, per trigger key how many matched (firing
    and new), and how many were repeats or resolved."""

    alerts: int
    fired: dict[str, int]
    repeats: int
    resolved: int
    unmatched: int

    def plain(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts,
            "fired": self.fired,
            "repeats": self.repeats,
            "resolved": self.resolved,
            "unmatched": self.unmatched,
        }


class AlertInbox:
    """Records what Alertmanager posts and checks `alertmanager` triggers against it."""

    def __init__(
        self,
        metadata: MetadataStore,
        *,
        actor: str,
        triggers: Mapping[str, Sequence[Trigger]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.actor = actor
        self.triggers = dict(triggers or {})
        self.clock = clock
        self._receiving = threading.Lock()  # one post at a time decides what is a repeat

    def tokens(self, environ: Mapping[str, str] | None = None) -> dict[bytes, list[Trigger]]:
        """The SHA-256 of each alertmanager trigger's token (from its `token_env`), with the
        triggers it opens; only digests are kept.

        Raises:
            ConfigError: no alertmanager trigger, or one whose variable is unset or empty.
        """
        env = os.environ if environ is None else environ
        found: dict[bytes, list[Trigger]] = {}
        triggers = [t for items in self.triggers.values() for t in items]
        for trigger in triggers:
            if not isinstance(trigger.spec, Alertmanager):
                continue
            token = env.get(trigger.spec.token_env, "").strip()
            if not token:
                raise ConfigError(
                    f"{trigger.key}: ${trigger.spec.token_env} is not set, so Alertmanager's "
                    "posts could not be told from anyone's",
                    f"export {trigger.spec.token_env}=$(openssl rand -hex 32) and give "
                    "Alertmanager the same in http_config: {authorization: {credentials: ...}}",
                )
            found.setdefault(hashlib.sha256(token.encode()).digest(), []).append(trigger)
        if not found:
            raise ConfigError(
                "no alertmanager trigger in mloop.yaml: the receiver would start no pipeline",
                "add one under triggers: e.g. triggers: {train: [{alertmanager: "
                "{alertname: MloopFeatureDrift}}]}",
            )
        return found

    def receive(self, alerts: Sequence[Alert], triggers: Sequence[Trigger]) -> Received:
        """Record each alert for each of `triggers` (those the post's token opens) it matches:
        an Event `trigger.alert_received` with its labels, fingerprint and start, marked a
        repeat when the same alert (fingerprint and start) was received before. An alert no
        trigger matches is recorded once under `alertmanager`, so it can be found."""
        fired: dict[str, int] = {}
        repeats = resolved = unmatched = 0
        with self._receiving:
            now = self.clock()
            for alert in alerts:
                matched = [t for t in triggers if _matches(t, alert)]
                resolved += alert.status == "resolved"
                details = _details(alert)
                if not matched:
                    unmatched += 1
                    self._record(UNMATCHED, UNMATCHED_REF, alert, details, now)
                for trigger in matched:
                    ref = alert_ref(trigger)
                    repeat = alert.status == "firing" and self._seen(ref, alert)
                    repeats += repeat
                    self._record(RECEIVED, ref, alert, details | {"repeat": repeat}, now)
                    if alert.status == "firing" and not repeat:
                        fired[trigger.key] = fired.get(trigger.key, 0) + 1
        return Received(len(alerts), fired, repeats, resolved, unmatched)

    def _seen(self, ref: str, alert: Alert) -> bool:
        return any(
            e.action == RECEIVED
            and e.details.get("identity") == alert.identity
            and e.details.get("status") == "firing"
            for e in self.metadata.events.find(ref, limit=REPEATS_LOOKBACK)
        )

    def _record(
        self, action: str, ref: str, alert: Alert, details: dict[str, Any], at: float
    ) -> None:
        reason = f"{alert.alertname} {alert.status} (from Alertmanager)"
        self.metadata.events.append(Event(at, self.actor, action, ref, reason, details))

    def check(self, trigger: Trigger, since: float | None = None) -> SignalCheck:
        """Fired when an alert for the trigger was received after `since` (the controller's
        last consumption; None: ever) that is firing and no repeat of one received before.
        `numbers["received_at"]` is the newest such alert's time: pass it as the next `since`.
        """
        spec = trigger.spec
        if not isinstance(spec, Alertmanager):
            raise InvalidInput(f"{trigger.key} is not an alertmanager trigger")
        now = self.clock()
        events = self._received(alert_ref(trigger), since)
        new = [e for e in events if e.details.get("status") == "firing" and not e.details["repeat"]]
        first: dict[str, Event] = {}
        for event in sorted(new, key=lambda e: (e.at, e.id or 0)):
            first.setdefault(str(event.details["identity"]), event)
        numbers: dict[str, Any] = {
            "alerts": len(first),
            "received": len(events),
            "since": since,
            "alertname": spec.alertname,
        }
        if not first:
            resolved = sum(e.details.get("status") == "resolved" for e in events)
            shown = "" if since is None else " since the last consumption"
            why = f"no new firing alert from Alertmanager{shown}"
            if resolved:
                why += f" ({resolved} resolved: they never fire)"
            return SignalCheck(trigger.key, str(trigger.kind), False, why, numbers, now)
        latest = max(first.values(), key=lambda e: (e.at, e.id or 0))
        numbers |= {
            "received_at": latest.at,
            "fired_by": [_fired_by(e) for e in first.values()],
        }
        names = sorted({str(e.details["labels"].get("alertname")) for e in first.values()})
        reason = f"{len(first)} firing alert{'s' * (len(first) > 1)} from Alertmanager: " + (
            ", ".join(names)
        )
        return SignalCheck(trigger.key, str(trigger.kind), True, reason, numbers, now)

    def _received(self, ref: str, since: float | None) -> list[Event]:
        """The trigger's received-alert records after `since`, reading back only as far as
        needed (the store gives the newest first)."""
        limit = 200
        while True:
            events = self.metadata.events.find(ref, limit=limit)
            after = [e for e in events if since is None or e.at > since]
            if len(events) < limit or len(after) < len(events) or limit >= 100_000:
                return [e for e in after if e.action == RECEIVED]
            limit *= 4


def _matches(trigger: Trigger, alert: Alert) -> bool:
    spec = trigger.spec
    if not isinstance(spec, Alertmanager):
        return False
    if spec.alertname is not None and alert.alertname != spec.alertname:
        return False
    return all(alert.labels.get(k) == v for k, v in spec.labels)


def _details(alert: Alert) -> dict[str, Any]:
    plain: dict[str, Any] = to_plain(alert)
    return plain | {"identity": alert.identity}


def _fired_by(event: Event) -> dict[str, Any]:
    d = event.details
    return {"labels": d["labels"], "fingerprint": d["fingerprint"], "starts_at": d["starts_at"]}
