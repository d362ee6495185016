"""Checks of the triggers that watch what serving sees: `drift` and `accuracy`, from the
monitor's numbers over a window of the prediction log (and `alertmanager`, from the alerts
`automation.alerts` recorded, handed out with them by `checks()`).

Each check returns a `SignalCheck` and never raises for what the world does (no traffic yet, no
labels yet, no drift reference): the loop keeps running and the reason says why it did not fire.

Whose numbers: the champion's, the version the endpoint's deployment serves as `stable` (or,
without one in the window, the version that answered most of it). A canary's numbers are the
rollout's to judge (it rolls back by itself), and the window still holds the previous version's
traffic just after a promotion: the endpoint's numbers in all would retrain a model for what
the model it replaced did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mloop.domain.endpoint import Role
from mloop.domain.prediction import Window
from mloop.domain.signal import SignalCheck
from mloop.domain.trigger import Accuracy, Drift, Trigger, TriggerKind
from mloop.errors import InvalidInput, NotFound
from mloop.services.automation.alerts import AlertInbox

if TYPE_CHECKING:
    import pyarrow as pa

    from mloop.services.monitoring.status import MonitorService
    from mloop.store.metadata.protocol import MetadataStore

Check = Callable[[Trigger], SignalCheck]
S = TypeVar("S")


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
    """The drift and accuracy checks; `alerts`, what Alertmanager posted and its check."""

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
        self.clock = clock
        self.alerts = AlertInbox(metadata, actor=actor, triggers=triggers, clock=clock)

    def checks(self) -> dict[TriggerKind, Check]:
        """The check of each kind this service knows, as `mloop triggers check` calls them
        (the alertmanager check here counts every alert ever received: a controller passes
        `since`, its last consumption, to `alerts.check`)."""
        return {
            TriggerKind.DRIFT: self.check_drift,
            TriggerKind.ACCURACY: self.check_accuracy,
            TriggerKind.ALERTMANAGER: self.alerts.check,
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
        """Fired when the champion's metric from feedback over the window crosses its bound
        (under `below`, over `above` for an error), with at least `min_labels` labelled
        predictions."""
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
        side, bound = spec.bound
        numbers |= {"metric": spec.metric, "value": value, side: bound}
        fired = spec.crossed(value)
        verdict = side if fired else f"not {side}"
        reason = (
            f"{spec.metric} of {champion} is {value:.4g} over {report.labelled} labelled "
            f"predictions, {verdict} {bound:g}"
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
