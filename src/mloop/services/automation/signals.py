"""Checks of the triggers that watch what serving sees: `drift` and `accuracy` (from the
monitor's numbers over a window of the prediction log) and `alertmanager` (alerts a team's
Alertmanager posted to mloop's receiver, `server.alerts`, recorded here as Events).

Each check returns a `SignalCheck` and never raises for what the world does (no traffic yet, no
labels yet, no drift reference): the loop keeps running and the reason says why it did not fire.

Whose numbers: the champion's, the version the endpoint's deployment serves as `stable` (or,
without one in the window, the version that answered most of it). A canary's numbers are the
rollout's to judge (it rolls back by itself), and the window still holds the previous version's
traffic just after a promotion: the endpoint's numbers in all would retrain a model for what
the model it replaced did.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mloop.domain.endpoint import Role
from mloop.domain.event import Event
from mloop.domain.prediction import Window
from mloop.domain.records import to_plain
from mloop.domain.signal import Alert, SignalCheck
from mloop.domain.trigger import Accuracy, Alertmanager, Drift, Trigger, TriggerKind
from mloop.errors import ConfigError, InvalidInput, NotFound

if TYPE_CHECKING:
    import pyarrow as pa

    from mloop.services.monitoring.status import MonitorService
    from mloop.store.metadata.protocol import MetadataStore

RECEIVED = "trigger.alert_received"
UNMATCHED = "trigger.alert_unmatched"
UNMATCHED_REF = "alertmanager"
REPEATS_LOOKBACK = 1000  # records of a trigger a new alert is compared with for a repeat
Check = Callable[[Trigger], SignalCheck]
S = TypeVar("S")


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


@dataclass(frozen=True, slots=True)
class _Served:
    """The champion's rows (clients' answers only) of a check's window, and their requests."""

    champion: str
    rows: pa.Table
    requests: int
    window: Window  # the champion's part of the window
    now: float

    def numbers(self) -> dict[str, Any]:
        return {"model": self.champion, "requests": self.requests, "since": self.window.since}


class SignalService:
    """The drift, accuracy and alertmanager checks, and the recording of received alerts."""

    def __init__(
        self,
        metadata: MetadataStore,
        monitoring: MonitorService,
        *,
        actor: str,
        triggers: Mapping[str, Sequence[Trigger]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.monitoring = monitoring
        self.actor = actor
        self.triggers = dict(triggers or {})
        self.clock = clock
        self._receiving = threading.Lock()  # one post at a time decides what is a repeat

    def checks(self) -> dict[TriggerKind, Check]:
        """The check of each kind this service knows, as the controller calls them (the
        alertmanager check here takes every unconsumed alert: pass `since` to
        `check_alertmanager` to skip those already acted on)."""
        return {
            TriggerKind.DRIFT: self.check_drift,
            TriggerKind.ACCURACY: self.check_accuracy,
            TriggerKind.ALERTMANAGER: self.check_alertmanager,
        }

    # drift -------------------------------------------------------------------------------
    def check_drift(self, trigger: Trigger) -> SignalCheck:
        """Fired when the champion's drift over the window says drifted for any (chosen)
        input or its prediction; `numbers["drifted"]` names them with method, score and
        threshold."""
        spec = _spec(trigger, Drift)
        found = self._served(trigger, spec.endpoint, spec.window)
        if isinstance(found, SignalCheck):
            return found
        champion, rows, requests, now = found.champion, found.rows, found.requests, found.now
        numbers = found.numbers()
        if requests < spec.min_requests:
            return self._not(
                trigger,
                f"{requests} requests of {champion} in the window, fewer than "
                f"min_requests {spec.min_requests}: not judged yet",
                numbers,
                now,
            )
        status = self.monitoring.status_of(spec.endpoint, found.window, rows)
        if status.features is None:
            why = next((n for n in status.notes if n.startswith("no drift")), "no drift measured")
            return self._not(trigger, why, numbers, now)
        measured = dict(status.features)
        if status.prediction is not None:
            measured["prediction"] = status.prediction
        chosen = spec.features or tuple(measured)
        unknown = [name for name in chosen if name not in measured]
        if unknown:
            return self._not(
                trigger,
                f"{', '.join(unknown)} not among what is measured of {champion} "
                f"({', '.join(measured)}): fix features in mloop.yaml",
                numbers,
                now,
            )
        drifted = {name: _verdict(measured[name]) for name in chosen if measured[name]["drifted"]}
        numbers |= {"reference": status.reference, "drifted": drifted}
        if not drifted:
            numbers["scores"] = {name: _verdict(measured[name]) for name in chosen}
            return self._not(trigger, f"no drift of {champion} over the window", numbers, now)
        moved = ", ".join(
            f"{n} ({v['method']} {v['score']:.3g} > {v['threshold']:.3g})"
            for n, v in drifted.items()
        )
        return SignalCheck(
            trigger.key, str(trigger.kind), True, f"{champion} drifted: {moved}", numbers, now
        )

    # accuracy ----------------------------------------------------------------------------
    def check_accuracy(self, trigger: Trigger) -> SignalCheck:
        """Fired when the champion's metric from feedback over the window is below the bound,
        with at least `min_labels` labelled predictions."""
        from mloop.services.monitoring.accuracy import join, measure

        spec = _spec(trigger, Accuracy)
        found = self._served(trigger, spec.endpoint, spec.window)
        if isinstance(found, SignalCheck):
            return found
        champion, rows, now = found.champion, found.rows, found.now
        numbers = found.numbers()
        mine = found.window
        artifacts = self.monitoring.predictions.artifacts
        try:
            joined = join(self.metadata, artifacts, spec.endpoint, mine, rows, False)
        except InvalidInput as exc:
            return self._not(trigger, _said(exc), numbers, now)
        report = measure(joined, mine)
        numbers["labelled"] = report.labelled
        if report.labelled < spec.min_labels:
            return self._not(
                trigger,
                f"{report.labelled} labelled predictions of {champion} in the window, "
                f"fewer than min_labels {spec.min_labels}",
                numbers,
                now,
            )
        metrics = report.metrics or {}
        value = metrics.get(spec.metric)
        if value is None:
            known = ", ".join(k for k, v in metrics.items() if v is not None)
            return self._not(
                trigger,
                f"{champion} has no {spec.metric} from feedback (it has {known})",
                numbers,
                now,
            )
        numbers |= {"metric": spec.metric, "value": value, "below": spec.below}
        fired = value < spec.below
        verdict = "below" if fired else "not below"
        reason = (
            f"{spec.metric} of {champion} is {value:.4g} over {report.labelled} labelled "
            f"predictions, {verdict} {spec.below:g}"
        )
        return SignalCheck(trigger.key, str(trigger.kind), fired, reason, numbers, now)

    def _served(self, trigger: Trigger, endpoint: str, seconds: float) -> _Served | SignalCheck:
        """What the champion answered in the last `seconds`; or the check that could not
        look (nothing logged, an unknown endpoint)."""
        import pyarrow.compute as pc

        now = self.clock()
        window = Window(since=now - seconds)
        try:
            table = self.monitoring.predictions.read(endpoint, window).table
        except NotFound as exc:
            return self._not(trigger, _said(exc), {"requests": 0}, now)
        served = table.filter(pc.not_equal(table.column("role"), Role.SHADOW.value))
        if served.num_rows == 0:
            return self._not(trigger, f"only shadows answered on {endpoint}", {"requests": 0}, now)
        champion = self._champion(endpoint, served)
        rows = served.filter(pc.equal(served.column("model"), champion))
        requests = len(pc.unique(rows.column("request_id")))
        return _Served(champion, rows, requests, Window(window.since, model=champion), now)

    def _champion(self, endpoint: str, served: pa.Table) -> str:
        import pyarrow.compute as pc

        try:
            deployment = self.metadata.endpoints.current(endpoint)
        except NotFound:  # served with `mloop serve REF --endpoint` only
            deployment = None
        answered = set(pc.unique(served.column("model")).to_pylist())
        for deployed in deployment.versions if deployment is not None else ():
            if deployed.role is Role.STABLE and str(deployed.model) in answered:
                return str(deployed.model)
        counts = served.group_by("model").aggregate([("request_id", "count_distinct")])
        best = max(counts.to_pylist(), key=lambda r: (r["request_id_count_distinct"], r["model"]))
        return str(best["model"])

    def _not(
        self, trigger: Trigger, reason: str, numbers: dict[str, Any], now: float
    ) -> SignalCheck:
        return SignalCheck(trigger.key, str(trigger.kind), False, reason, numbers, now)

    # alertmanager ------------------------------------------------------------------------
    def alert_tokens(self, environ: Mapping[str, str] | None = None) -> dict[bytes, list[Trigger]]:
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

    def check_alertmanager(self, trigger: Trigger, since: float | None = None) -> SignalCheck:
        """Fired when an alert for the trigger was received after `since` (the controller's
        last consumption; None: ever) that is firing and no repeat of one received before.
        `numbers["received_at"]` is the newest such alert's time: pass it as the next `since`.
        """
        spec = _spec(trigger, Alertmanager)
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
            return self._not(trigger, why, numbers, now)
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


def _verdict(measured: Mapping[str, Any]) -> dict[str, Any]:
    return {k: measured.get(k) for k in ("method", "score", "threshold", "drifted")}


def _said(exc: InvalidInput | NotFound) -> str:
    return exc.message + (f" ({exc.hint})" if exc.hint else "")


def _spec(trigger: Trigger, kind: type[S]) -> S:
    if not isinstance(trigger.spec, kind):
        raise InvalidInput(
            f"{trigger.key} is not a {kind.__name__.lower()} trigger",
            f"pass a {kind.__name__.lower()} trigger",
        )
    return trigger.spec
