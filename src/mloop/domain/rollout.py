"""The rollout state machine: every change to an endpoint's deployment, as a pure function.

Each transition takes the deployment as it stands (and `now`, passed in: nothing here reads a
clock) and returns a `Decision`: the deployment after it, the Event's action and its reason in
numbers. The store writes both in one transaction; the servers follow the new weights. A new
deployment is made by `deploy_request.plan`; then:

- `ready`: the new canary or green passed its readiness check: the canary gets its first step,
  green all the traffic at once (blue kept at 0 for `keep`).
- `advance`: a canary's analysis interval: pass climbs a step (reaching 100 promotes), fail
  counts towards `threshold` (reached: rolled back, naming the gate), no data holds the step
  (it neither counts nor breaks a run of failures), and past the deadline it is rolled back.
- `tick`: what time alone decides: a canary's deadline, blue's `keep` running out;
  `wake_at` says when either is next due.
- `promote`, `rollback` by hand, `fail` when a new version never became ready.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mloop.domain.analysis import StepAnalysis, Verdict
from mloop.domain.durations import format_duration
from mloop.domain.endpoint import (
    BlueGreenPolicy,
    CanaryPolicy,
    DeployedVersion,
    Deployment,
    EndpointState,
    Role,
    Strategy,
)
from mloop.domain.event import Event
from mloop.domain.names import ModelRef
from mloop.domain.records import to_plain
from mloop.errors import Conflict, InvalidInput

ROLLOUT_ACTOR = "rollout"  # who the automatic decisions are recorded as
_NEW_ROLES = {Role.CANARY, Role.GREEN, Role.SHADOW}


@dataclass(frozen=True, slots=True)
class Decision:
    """A deployment after one transition, and the Event that records it."""

    deployment: Deployment
    action: str  # `endpoint.deployed`, `.ready`, `.advanced`, `.held`, `.promoted`, ...
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> Event:
        d = self.deployment
        plain = {"deployment": d.sequence, "state": str(d.state), "weights": d.weights}
        return Event(
            d.updated,
            d.actor,
            self.action,
            f"endpoint/{d.endpoint}",
            self.reason,
            {**plain, **self.details},
        )


def ready(deployment: Deployment, *, now: float, actor: str = ROLLOUT_ACTOR) -> Decision:
    """The new canary or green passed its readiness check: it gets its first traffic."""
    _progressing(deployment, Strategy.CANARY, Strategy.BLUE_GREEN)
    if deployment.started is not None:
        raise Conflict(f"endpoint {deployment.endpoint!r} already got its new version's traffic")
    if isinstance(deployment.policy, CanaryPolicy):
        first = deployment.policy.steps[0]
        if first >= 100:
            return _promote(deployment, now, actor, "canary ready; its first step is 100%")
        moved = _weights(deployment, first)
        return _decide(
            moved, now, actor, "endpoint.ready", f"canary ready: {first}% of traffic", started=now
        )
    keep = deployment.policy.keep if isinstance(deployment.policy, BlueGreenPolicy) else 0.0
    green = _new(deployment)
    versions = tuple(
        dataclasses.replace(v, weight=100 if v is green else 0) for v in deployment.versions
    )
    reason = f"green {green.model} ready: all traffic moved; blue kept {format_duration(keep)}"
    moved = dataclasses.replace(deployment, versions=versions)
    return _decide(moved, now, actor, "endpoint.ready", reason, started=now)


def advance(deployment: Deployment, analysis: StepAnalysis, now: float) -> Decision:
    """One analysis interval of a canary decides its next step (see the module's docstring)."""
    _progressing(deployment, Strategy.CANARY)
    policy = deployment.policy
    if not isinstance(policy, CanaryPolicy) or deployment.started is None:
        raise Conflict(f"the canary of endpoint {deployment.endpoint!r} has no traffic yet")
    weight = policy.steps[deployment.step]
    details = {"step": deployment.step, "weight": weight, "analysis": to_plain(analysis)}
    failures = deployment.failures
    if analysis.verdict is Verdict.PASS:
        following = deployment.step + 1
        if following >= len(policy.steps) or policy.steps[following] >= 100:
            return _promote(
                deployment,
                now,
                ROLLOUT_ACTOR,
                f"passed at {weight}%: {analysis.summary()}",
                details,
            )
        moved = _weights(deployment, policy.steps[following])
        reason = f"passed at {weight}%, now {policy.steps[following]}%: {analysis.summary()}"
        decision = _decide(
            moved,
            now,
            ROLLOUT_ACTOR,
            "endpoint.advanced",
            reason,
            details,
            step=following,
            failures=0,
        )
    elif analysis.verdict is Verdict.FAIL:
        failures += 1
        gates = ", ".join(g.gate for g in analysis.failed)
        if failures >= policy.threshold:
            reason = (
                f"{gates} failed {failures} intervals in a row at {weight}%: {analysis.summary()}"
            )
            return _roll_back(deployment, now, reason, details, failures)
        reason = (
            f"{gates} failed at {weight}% ({failures} of {policy.threshold}): {analysis.summary()}"
        )
        decision = _decide(
            deployment, now, ROLLOUT_ACTOR, "endpoint.held", reason, details, failures=failures
        )
    else:
        reason = f"no data at {weight}%, holding: {analysis.summary()}"
        decision = _decide(deployment, now, ROLLOUT_ACTOR, "endpoint.held", reason, details)
    return _deadline(decision.deployment, now, details) or decision


def tick(deployment: Deployment, now: float) -> Decision | None:
    """What time alone decides: a canary past its deadline is rolled back, and blue is retired
    once `keep` has passed since the switch (green promoted). None: nothing to do yet."""
    if deployment.state is not EndpointState.PROGRESSING:
        return None
    if deployment.strategy is Strategy.CANARY:
        return _deadline(deployment, now)
    policy = deployment.policy
    started = deployment.started
    if isinstance(policy, BlueGreenPolicy) and started is not None and now >= started + policy.keep:
        reason = f"blue retired after {format_duration(policy.keep)}"
        return _promote(deployment, now, ROLLOUT_ACTOR, reason)
    return None


def wake_at(deployment: Deployment) -> float | None:
    """When the deciding actor next has something to decide, None if only people do: a canary's
    next analysis (`interval` after its last decision; its statistics are those reported since
    `deployment.updated`, when the weights last changed) or its deadline, whichever comes first,
    and blue's retirement. Before then, `advance` and `tick` would only hold.

    Example:
        >>> from mloop.domain.deploy_request import parse_request, plan
        >>> (first,) = plan(parse_request("web", "direct", [ModelRef("churn", 3)], {}), None,
        ...                 actor="ana", now=0.0)
        >>> wake_at(first.deployment) is None
        True
    """
    policy = deployment.policy
    if deployment.state is not EndpointState.PROGRESSING:
        return None
    if isinstance(policy, CanaryPolicy):
        if deployment.started is None:
            return deployment.created + policy.deadline
        return min(deployment.updated + policy.interval, deployment.started + policy.deadline)
    if isinstance(policy, BlueGreenPolicy) and deployment.started is not None:
        return deployment.started + policy.keep
    return None


def promote(
    deployment: Deployment, *, now: float, actor: str, winner: ModelRef | None = None
) -> Decision:
    """By hand: the new version (an ab test's `winner`, which the caller names) serves alone."""
    _progressing(deployment)
    if deployment.strategy is Strategy.AB:
        if winner is None or all(v.model != winner for v in deployment.versions):
            variants = ", ".join(str(v.model) for v in deployment.versions)
            raise InvalidInput(
                f"name the winner of the ab test on endpoint {deployment.endpoint!r}: "
                f"one of {variants}",
                f"mloop endpoints promote {deployment.endpoint} "
                f"--winner {deployment.versions[-1].model}",
            )
        return _promote(deployment, now, actor, f"{winner} promoted by hand", winner=winner)
    if winner is not None and winner != _new(deployment).model:
        raise InvalidInput(f"{winner} is not the new version of endpoint {deployment.endpoint!r}")
    return _promote(deployment, now, actor, f"{_new(deployment).model} promoted by hand")


def rollback(
    deployment: Deployment, *, now: float, actor: str, reason: str = "rolled back by hand"
) -> Decision:
    """By hand: the version served before takes all traffic again (the control of an ab test).
    Instant while it is still loaded; a promoted deployment has retired it, so that is refused."""
    if deployment.state is EndpointState.PROMOTED or deployment.strategy is Strategy.DIRECT:
        raise Conflict(
            f"deployment {deployment.sequence} of endpoint {deployment.endpoint!r} is "
            f"{deployment.state}: the version before it is retired",
            f"deploy it again: mloop deploy {deployment.endpoint} NAME:V --strategy direct",
        )
    _progressing(deployment)
    return _retreat(
        deployment, now, actor, EndpointState.ROLLED_BACK, reason, "endpoint.rolled_back"
    )


def fail(
    deployment: Deployment, *, now: float, reason: str, actor: str = ROLLOUT_ACTOR
) -> Decision:
    """The new version never became ready (`reason` says why): it gets no traffic."""
    _progressing(deployment)
    return _retreat(deployment, now, actor, EndpointState.FAILED, reason, "endpoint.failed")


def _deadline(
    deployment: Deployment, now: float, details: Mapping[str, Any] | None = None
) -> Decision | None:
    policy = deployment.policy
    if deployment.state is not EndpointState.PROGRESSING or not isinstance(policy, CanaryPolicy):
        return None
    since = deployment.created if deployment.started is None else deployment.started
    if now - since < policy.deadline:
        return None
    new = _new(deployment)
    reason = (
        f"deadline: canary at {new.weight}% after {format_duration(now - since)}, "
        f"not promoted within {format_duration(policy.deadline)}"
    )
    return _roll_back(deployment, now, reason, details)


def _roll_back(
    deployment: Deployment,
    now: float,
    reason: str,
    details: Mapping[str, Any] | None,
    failures: int | None = None,
) -> Decision:
    """The automatic rollback: by a failed gate or the deadline."""
    state = EndpointState.ROLLED_BACK
    action = "endpoint.rolled_back"
    return _retreat(deployment, now, ROLLOUT_ACTOR, state, reason, action, details, failures)


def _promote(
    deployment: Deployment,
    now: float,
    actor: str,
    reason: str,
    details: Mapping[str, Any] | None = None,
    winner: ModelRef | None = None,
) -> Decision:
    chosen = winner or _new(deployment).model
    versions = (DeployedVersion(chosen, Role.STABLE, 100),)
    moved = dataclasses.replace(deployment, versions=versions, state=EndpointState.PROMOTED)
    retired = [str(v.model) for v in deployment.versions if v.model != chosen]
    return _decide(
        moved, now, actor, "endpoint.promoted", reason, {**(details or {}), "retired": retired}
    )


def _retreat(
    deployment: Deployment,
    now: float,
    actor: str,
    state: EndpointState,
    reason: str,
    action: str,
    details: Mapping[str, Any] | None = None,
    failures: int | None = None,
) -> Decision:
    """The old version (stable, blue, the ab control) back at 100 as stable; the others at 0."""
    old = deployment.versions[0]
    versions = tuple(
        DeployedVersion(v.model, Role.STABLE, 100) if v is old else dataclasses.replace(v, weight=0)
        for v in deployment.versions
    )
    moved = dataclasses.replace(deployment, versions=versions, state=state)
    counted = deployment.failures if failures is None else failures
    return _decide(moved, now, actor, action, reason, details, failures=counted)


def _decide(
    deployment: Deployment,
    now: float,
    actor: str,
    action: str,
    reason: str,
    details: Mapping[str, Any] | None = None,
    **changes: Any,
) -> Decision:
    moved = dataclasses.replace(deployment, updated=now, actor=actor, reason=reason, **changes)
    return Decision(moved, action, reason, dict(details or {}))


def _weights(deployment: Deployment, canary: int) -> Deployment:
    versions = tuple(
        dataclasses.replace(v, weight=canary if v.role is Role.CANARY else 100 - canary)
        for v in deployment.versions
    )
    return dataclasses.replace(deployment, versions=versions)


def _new(deployment: Deployment) -> DeployedVersion:
    """The version a rollout brings in: its canary, green or shadow (the last listed)."""
    return next((v for v in deployment.versions if v.role in _NEW_ROLES), deployment.versions[-1])


def _progressing(deployment: Deployment, *strategies: Strategy) -> None:
    if deployment.state is not EndpointState.PROGRESSING:
        raise Conflict(
            f"deployment {deployment.sequence} of endpoint {deployment.endpoint!r} is "
            f"{deployment.state}, not progressing",
            f"see `mloop endpoints status {deployment.endpoint}`",
        )
    if strategies and deployment.strategy not in strategies:
        raise Conflict(
            f"endpoint {deployment.endpoint!r} runs a {deployment.strategy} deployment, "
            f"not {'/'.join(strategies)}"
        )
