"""The controller: evaluates triggers, starts an iteration when one fires, and takes each open
iteration on (`iteration.Steps`), holding the store's `controller` lease so that of several
controllers on one store one acts.

A tick: renew the lease; for each pipeline with triggers, take its open iteration on, step by
step, until it waits (its run in another process, a rollout the servers decide) or ends; with
none open, check its triggers in order, and start an iteration for the first that fires and is
admitted (cool-down, max_per_day). A check that fails (a watched folder gone, a bucket
answering errors) is recorded with the error and tried again after a backoff; the loop goes on.
`stop` is looked at between steps, never inside one.

Drift, accuracy and Alertmanager triggers are checked by functions handed in as `checks`
(`TriggerKind -> Check`), so the loop does not depend on how monitoring measures them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from mloop.domain.controller import (
    CONTROLLER_LEASE,
    DAY,
    Iteration,
    IterationState,
    TriggerState,
    admit,
    backoff,
)
from mloop.domain.event import Event
from mloop.domain.trigger import NewData, Schedule, Trigger, TriggerKind, schedule_due
from mloop.errors import Conflict, MloopError, StoreUnavailable
from mloop.services.automation.iteration import Retry, Steps

if TYPE_CHECKING:
    from mloop.services.automation.triggers import TriggerService
    from mloop.store.metadata.protocol import MetadataStore

LEASE_SECONDS = 60.0  # a controller that stops renewing is replaced after this long
HOST = os.uname().nodename
STORE_RETRY_MAX = 60.0  # the longest wait between evaluations while the store is unreachable


def retry_after(failures: int, interval: float) -> float:
    """Seconds before the next evaluation after `failures` in a row that could not finish: the
    interval, doubled at each failure, up to a minute (or the interval if longer), so a store
    that is down is not hammered and one that is back is found again soon."""
    return float(min(interval * 2 ** max(failures - 1, 0), max(interval, STORE_RETRY_MAX)))


def _said(exc: Exception) -> str:
    return exc.message if isinstance(exc, MloopError) else f"{type(exc).__name__}: {exc}"


def _dead_here(holder: str) -> bool:
    """Whether `holder` (HOST:PID:NONCE) names a process of this host that is gone."""
    from mloop.services.tracking.heartbeat import process_alive

    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return host == HOST and pid.isdigit() and not process_alive(int(pid))


class Signal(Protocol):
    """What a check says of its trigger: fired or not, why, and the numbers behind it."""

    @property
    def fired(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    @property
    def numbers(self) -> Mapping[str, Any]: ...


# A trigger -> its signal; an alertmanager check also takes when its trigger last fired.
Check = Callable[..., Signal]


@dataclass(frozen=True, slots=True)
class Checked:
    """A Signal of the controller's own checks (schedule, new_data); `error`: the check could
    not look (retried after a backoff)."""

    fired: bool
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """What one tick did: whether it held the lease, iterations begun, and moved."""

    leader: bool
    holder: str | None
    begun: tuple[Iteration, ...] = ()
    moved: tuple[Iteration, ...] = ()
    error: str | None = None  # the tick could not finish (the store unreachable, a bug)
    retry_in: float | None = None  # after an error: seconds before the next try


@dataclass(frozen=True, slots=True)
class TriggerStatus:
    """A trigger as `mloop controller status` shows it: its last check's value, when it last
    started an iteration, and when it is checked next (a schedule: its next fire time)."""

    trigger: str
    pipeline: str
    kind: TriggerKind
    checked: float | None
    value: Mapping[str, Any]
    fired: float | None
    next_check: float | None
    failures: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ControllerStatus:
    """Who holds the lease, the triggers, the iterations in progress and the latest ones,
    and how many iterations ended each way (`failed` is what an alert watches)."""

    holder: str | None
    triggers: tuple[TriggerStatus, ...]
    current: tuple[Iteration, ...]
    recent: tuple[Iteration, ...]
    outcomes: Mapping[str, int]

    @property
    def failed(self) -> int:
        return int(self.outcomes.get("failed", 0))


class Controller:
    def __init__(
        self,
        metadata: MetadataStore,
        triggers: TriggerService,
        steps: Steps,
        *,
        actor: str,
        checks: Mapping[TriggerKind, Check] | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.metadata = metadata
        self.store = metadata.controller
        self.triggers = triggers
        self.steps = steps
        self.actor = actor
        self.checks: dict[TriggerKind, Check] = {
            TriggerKind.NEW_DATA: self._new_data,
            **(checks or {}),
        }
        self.holder = holder or f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.stop = threading.Event()
        self._lost = threading.Event()
        self.failures = 0  # evaluations in a row that could not finish (the store unreachable)
        # Told of each iteration begun and each step taken, as it happens (a tick that trains
        # takes minutes: its caller would otherwise hear of the steps only at its end).
        self.on_step: Callable[[Iteration], None] | None = None

    # the lease ---------------------------------------------------------------------------------
    def renew(self) -> bool:
        now = self.clock()
        held = self.store.lease(CONTROLLER_LEASE, self.holder, now, self.lease_seconds)
        if not held:
            # A holder on this host whose process is gone (killed) is replaced at once rather
            # than after its lease runs out, as a run whose process died is seen lost at once.
            current = self.store.holder(CONTROLLER_LEASE, now)
            if current is not None and _dead_here(current):
                held = self.store.lease(
                    CONTROLLER_LEASE, self.holder, now, self.lease_seconds, replacing=current
                )
        if not held:
            self._lost.set()
        return held

    def _keep_lease(self, done: threading.Event) -> None:
        """Renew the lease while a long step (a pipeline run) is under way."""
        while not done.wait(self.lease_seconds / 3):
            try:
                if not self.renew():
                    return
            except StoreUnavailable:
                continue  # the next renewal tries again; the lease outlives a short outage

    def release(self) -> None:
        self.store.release(CONTROLLER_LEASE, self.holder)

    # one tick ----------------------------------------------------------------------------------
    def tick(self, interval: float = 30.0) -> Tick:
        """Renew the lease and, holding it, do what is due (see the module docstring)."""
        self._lost.clear()
        if not self.renew():
            return Tick(False, self.store.holder(CONTROLLER_LEASE, self.clock()))
        done = threading.Event()
        keeper = threading.Thread(target=self._keep_lease, args=(done,), daemon=True)
        keeper.start()
        begun: list[Iteration] = []
        moved: list[Iteration] = []
        try:
            for pipeline, items in self.triggers.triggers.items():
                if self.stop.is_set() or self._lost.is_set():
                    break
                current = self.store.current(pipeline)
                if current is None:
                    current = self._evaluate(pipeline, items, interval)
                    if current is None:
                        continue
                    begun.append(current)
                    self._tell(current)
                moved += self._run(current)
        finally:
            done.set()
            keeper.join()
        return Tick(True, self.holder, tuple(begun), tuple(moved))

    def _run(self, it: Iteration) -> list[Iteration]:
        """Take `it` on until it waits, ends, or the controller is asked to stop."""
        moved: list[Iteration] = []
        while it.state.open and not self.stop.is_set() and not self._lost.is_set():
            try:
                after = self.steps.advance(it)
            except (Retry, StoreUnavailable):
                break
            except Conflict:  # another controller moved it: it is theirs now
                break
            if after == it:
                break  # waiting on a run or a rollout
            moved.append(after)
            self._tell(after)
            it = after
        return moved

    def _tell(self, it: Iteration) -> None:
        if self.on_step is not None:
            self.on_step(it)

    # triggers ----------------------------------------------------------------------------------
    def _evaluate(
        self, pipeline: str, items: Sequence[Trigger], interval: float
    ) -> Iteration | None:
        """Check the pipeline's triggers in order; begin an iteration for the first that
        fires and is admitted."""
        states = self.store.trigger_states()
        for trigger in items:
            now = self.clock()
            state = states.get(trigger.key) or TriggerState(trigger.key)
            waiting = state.failures and state.checked is not None
            if waiting and now < (state.checked or 0.0) + backoff(state.failures):
                continue
            signal, mark, next_check = self._check(trigger, state, now, interval)
            value = {
                "fired": signal.fired,
                "reason": signal.reason,
                "next_check": next_check,
                **dict(signal.numbers),
            }
            error = getattr(signal, "error", None)
            if error is not None:
                failures = state.failures + 1
                value["next_check"] = now + backoff(failures)
                self.store.save_trigger(
                    replace(state, checked=now, value=value, mark=mark, failures=failures,
                            error=error),
                    self._event(pipeline, "controller.check_failed", f"{trigger.key}: {error}",
                                {"trigger": trigger.key, "failures": failures})
                    if state.failures == 0 else None,
                )  # fmt: skip
                continue
            seen = replace(state, checked=now, value=value, mark=mark, failures=0, error=None)
            if not signal.fired:
                self.store.save_trigger(seen)
                continue
            admission = admit(trigger, self.store.fires(trigger.key, now - DAY), now)
            if not admission.admitted:
                said = f"{trigger.key} fired ({signal.reason}) but is held: {admission.reason}"
                first = state.value.get("held") != admission.reason.split(" for ")[0]
                value["held"] = admission.reason.split(" for ")[0]
                event = self._event(
                    pipeline, "controller.suppressed", said,
                    {"trigger": trigger.key, **dict(signal.numbers)},
                )  # fmt: skip
                self.store.save_trigger(replace(seen, value=value), event if first else None)
                continue
            it = Iteration(
                uuid.uuid4().hex, pipeline, trigger.key, str(trigger.kind), signal.reason,
                IterationState.TRIGGERED, now, now, dict(signal.numbers),
            )  # fmt: skip
            event = self._event(
                pipeline, "controller.triggered", f"{trigger.key}: {signal.reason}",
                {"iteration": it.id, "trigger": trigger.key, **dict(signal.numbers)},
            )  # fmt: skip
            try:
                self.store.begin(it, event, replace(seen, fired=now))
            except Conflict:
                return None  # another controller began one meanwhile
            return it
        return None

    def _check(
        self, trigger: Trigger, state: TriggerState, now: float, interval: float
    ) -> tuple[Signal, float | None, float | None]:
        """(signal, the schedule's mark to keep, when it is next checked)."""
        if isinstance(trigger.spec, Schedule):
            return self._schedule(trigger.spec, state, now)
        check = self.checks.get(trigger.kind)
        if check is None:
            said = f"no {trigger.kind} check is wired into this controller"
            return Checked(False, said), state.mark, None
        try:
            if trigger.kind is TriggerKind.ALERTMANAGER:
                # alerts are pushed and kept: only those received since this trigger last
                # began an iteration are new (one held by a cool-down stays new until then)
                return check(trigger, state.fired), state.mark, now + interval
            return check(trigger), state.mark, now + interval
        except Exception as exc:  # a failed check is retried; the loop goes on
            return Checked(False, "the check failed", error=_said(exc)), state.mark, None

    def _schedule(
        self, spec: Schedule, state: TriggerState, now: float
    ) -> tuple[Signal, float | None, float | None]:
        at = datetime.fromtimestamp(now, UTC)
        last = None if state.mark is None else datetime.fromtimestamp(state.mark, UTC)
        due = schedule_due(spec, last, at)
        upcoming = None if due.next_fire is None else due.next_fire.timestamp()
        if state.mark is None:  # first seen now: wait for the first fire time from here
            return Checked(False, "waiting for the first fire time"), now, upcoming
        if not due.due or due.fire_at is None:
            return Checked(False, "not due"), state.mark, upcoming
        fired_at = due.fire_at.timestamp()
        said = f"{spec.cron!r} ({spec.timezone}) was due at {due.fire_at:%Y-%m-%d %H:%M} UTC"
        return Checked(True, said, {"due_at": fired_at}), fired_at, upcoming

    def _new_data(self, trigger: Trigger) -> Checked:
        found = self.triggers.check_new_data(trigger)
        assert isinstance(trigger.spec, NewData)
        numbers = {
            "new_rows": found.new_rows,
            "threshold": found.threshold,
            "new_files": len(found.new_files),
            "skipped": [f"{s.path}: {s.reason}" for s in found.skipped],
        }
        if found.error is not None:
            return Checked(False, "cannot look", numbers, error=found.error)
        verdict = ">=" if found.fired else "<"
        said = f"{found.new_rows:,} new rows {verdict} {found.threshold:,} in {trigger.spec.path}"
        return Checked(found.fired, said, numbers)

    def _event(self, pipeline: str, action: str, reason: str, details: dict[str, Any]) -> Event:
        return Event(self.clock(), self.actor, action, f"pipeline/{pipeline}", reason, details)

    # status ------------------------------------------------------------------------------------
    def status(self, limit: int = 10) -> ControllerStatus:
        """What `mloop controller status` shows (reads only: any process may ask)."""
        states = self.store.trigger_states()
        shown = []
        for pipeline, items in self.triggers.triggers.items():
            for t in items:
                s = states.get(t.key) or TriggerState(t.key)
                next_check = s.value.get("next_check")
                shown.append(
                    TriggerStatus(
                        t.key, pipeline, t.kind, s.checked, s.value, s.fired,
                        None if next_check is None else float(next_check), s.failures, s.error,
                    )
                )  # fmt: skip
        current = [self.store.current(p) for p in self.triggers.triggers]
        return ControllerStatus(
            self.store.holder(CONTROLLER_LEASE, self.clock()),
            tuple(shown),
            tuple(c for c in current if c is not None),
            tuple(self.store.recent(limit)),
            self.store.outcomes(),
        )

    # the long-lived loop -----------------------------------------------------------------------
    def run(self, interval: float = 30.0, on_tick: Callable[[Tick], None] | None = None) -> None:
        """Tick every `interval` seconds until `stop` is set; the lease is given up on the way
        out, so another controller takes over at once."""
        try:
            while not self.stop.is_set():
                try:
                    result = self.tick(interval)
                    self.failures = 0
                except Exception as exc:  # the store unreachable, a bug: said, tried again
                    self.failures += 1
                    wait = retry_after(self.failures, interval)
                    result = Tick(False, None, error=_said(exc), retry_in=wait)
                if on_tick is not None:
                    on_tick(result)
                self.stop.wait(interval if result.retry_in is None else result.retry_in)
        finally:
            with contextlib.suppress(StoreUnavailable):
                self.release()
