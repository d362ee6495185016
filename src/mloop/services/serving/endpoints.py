"""Endpoints: deploy model versions behind a stable name, follow and decide their rollouts.

People call `deploy`, `promote` and `rollback` (the CLI's `mloop deploy` and `mloop endpoints`);
model servers call `mark_ready` or `fail` once they have loaded a new version, `report` with
what they served, and `decide` every second or so: the process holding the endpoint's lease runs
the next due step of the rollout (a canary's analysis over every server's reports, a deadline,
blue's retirement). Every change is one compare-and-set write with its Event, so two deciders
cannot both act on the same deployment.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mloop.domain.abtest import MeanSample, OutcomeKind, RateSample, Sample
from mloop.domain.analysis import VersionStats, analyse
from mloop.domain.deploy_request import parse_request, plan
from mloop.domain.endpoint import (
    ABPolicy,
    CanaryPolicy,
    Deployment,
    EndpointState,
    Role,
    Strategy,
)
from mloop.domain.event import Event
from mloop.domain.names import ModelRef
from mloop.domain.records import from_plain, to_plain
from mloop.domain.rollout import (
    ROLLOUT_ACTOR,
    Decision,
    advance,
    fail,
    promote,
    ready,
    rollback,
    tick,
    wake_at,
)
from mloop.domain.sequential import ABDecision, SequentialRule, decide
from mloop.errors import Conflict, InvalidInput, NotFound
from mloop.services.registry.models import ModelService
from mloop.store.metadata.protocol import MetadataStore

LEASE_SECONDS = 10.0  # a decider that stops renewing is replaced after this long
AB_LOOK_EVERY = 5.0  # seconds between the looks an A/B test keeps (a status looks any time)
ANALYSIS_ACTIONS = (
    "endpoint.advanced",
    "endpoint.held",
    "endpoint.promoted",
    "endpoint.rolled_back",
)


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One version of the current deployment, with what it served since the rollout began."""

    model: str
    role: Role
    weight: int
    requests: int = 0  # a shadow's: the copies it predicted
    errors: int = 0
    success_rate: float | None = None
    p99: float | None = None
    outcomes: int = 0  # posted for its answers (`POST /feedback`)
    outcome_mean: float | None = None  # a conversion rate when outcomes are 0 or 1
    agreement_rate: float | None = None  # a shadow's copies predicted as the primary did
    dropped: int = 0  # a shadow's copies turned away by a full queue


@dataclass(frozen=True, slots=True)
class AnalysisStep:
    """One decision of the rollout: when, what it did, and the numbers behind it."""

    at: float
    action: str
    reason: str
    verdict: str | None = None
    step: int | None = None
    weight: int | None = None
    gates: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """What `mloop endpoints status --json` prints."""

    endpoint: str
    deployment: int
    strategy: Strategy
    state: EndpointState
    versions: tuple[VersionStatus, ...]
    analysis: tuple[AnalysisStep, ...]
    reason: str
    actor: str
    updated: float
    next_decision: float | None = None
    ab: ABDecision | None = None  # an ab test's look at its outcomes (see `ab_decision`)


# (endpoint, since, until, models) -> per version (NAME:V) the labelled predictions of requests
# answered in that interval and how many were right (monitoring's `labelled_stats`)
Labelled = Callable[[str, float | None, float | None, Sequence[str]], Mapping[str, VersionStats]]


class EndpointService:
    def __init__(
        self,
        metadata: MetadataStore,
        models: ModelService,
        actor: str,
        labelled: Labelled | None = None,
    ) -> None:
        self.metadata = metadata
        self.models = models
        self.actor = actor
        self.labelled = labelled  # feedback for the canary's accuracy gate, where labels exist

    # people ---------------------------------------------------------------------------------
    def deploy(
        self,
        endpoint: str,
        refs: Sequence[str],
        strategy: str = "direct",
        options: Mapping[str, str] | None = None,
        *,
        force: bool = False,
        reason: str | None = None,
    ) -> Deployment:
        """Serve `refs` (aliases resolved now: a deployment holds exact versions) on `endpoint`.

        Example:
            >>> project.endpoints.deploy("web", ["churn@champion"]).weights  # doctest: +SKIP
            {'churn:3': 100}
        """
        exact = [self.models.get(ref) for ref in refs]  # NotFound names the missing one
        versions = [ModelRef(v.name, v.version) for v in exact]
        request = parse_request(endpoint, strategy, versions, options or {}, force=force)
        current = self._current_or_none(endpoint)
        decisions = plan(request, current, actor=self.actor, now=time.time())
        return self._save(decisions, current, reason)

    def get(self, endpoint: str) -> Deployment:
        return self.metadata.endpoints.current(endpoint)

    def find(self) -> list[Deployment]:
        return self.metadata.endpoints.find()

    def history(self, endpoint: str, limit: int = 100) -> list[Event]:
        """Every change to the endpoint, newest first (deployments, steps, promotions)."""
        self.metadata.endpoints.get(endpoint)  # NotFound for an unknown endpoint
        return self.metadata.events.find(f"endpoint/{endpoint}", limit=limit)

    def promote(
        self, endpoint: str, winner: str | None = None, reason: str | None = None
    ) -> Deployment:
        current = self.get(endpoint)
        chosen = None if winner is None else self._exact(winner)
        look = self.ab_decision(current) if current.state is EndpointState.PROGRESSING else None
        if chosen is None and look is not None:
            if look.winner is None:
                raise InvalidInput(
                    f"the ab test on endpoint {endpoint!r} has no winner yet: {look.reason}",
                    f"wait (see `mloop endpoints status {endpoint}`), or choose yourself: "
                    f"mloop endpoints promote {endpoint} --winner MODEL:V",
                )
            chosen = ModelRef.parse(look.winner)
        decision = promote(current, now=time.time(), actor=self.actor, winner=chosen)
        if look is not None:  # the test's numbers go with the Event, whoever chose
            said = (
                f"{chosen} won the ab test: {look.reason}"
                if look.winner == str(chosen)
                else f"{chosen} promoted by hand; the ab test says: {look.reason}"
            )
            details = {**decision.details, "ab": to_plain(look)}
            decision = dataclasses.replace(decision, reason=said, details=details)
        return self._save((decision,), current, reason)

    def rollback(self, endpoint: str, reason: str | None = None) -> Deployment:
        current = self.get(endpoint)
        decision = rollback(current, now=time.time(), actor=self.actor)
        return self._save((decision,), current, reason)

    def status(self, endpoint: str) -> EndpointStatus:
        current = self.get(endpoint)
        seen = self.metadata.endpoints.stats(endpoint, current.sequence, since=current.started)
        versions = tuple(_version_status(v.model, v.role, v.weight, seen) for v in current.versions)
        steps = [
            _step(e)
            for e in self.metadata.events.find(f"endpoint/{endpoint}", limit=500)
            if e.details.get("deployment") == current.sequence
        ]
        return EndpointStatus(
            endpoint,
            current.sequence,
            current.strategy,
            current.state,
            versions,
            tuple(reversed(steps)),
            current.reason,
            current.actor,
            current.updated,
            wake_at(current),
            self.ab_decision(current, seen),
        )

    def ab_decision(
        self, deployment: Deployment, seen: Mapping[str, VersionStats] | None = None
    ) -> ABDecision | None:
        """An ab test's verdict on its variants' outcomes (posted with `POST /feedback`: a
        rate of 0/1 outcomes or a mean of numbers, as the policy says), by the mSPRT: valid
        however often anyone looks. None for other strategies."""
        policy = deployment.policy
        if deployment.strategy is not Strategy.AB or not isinstance(policy, ABPolicy):
            return None
        if len(deployment.versions) < 2:  # promoted: the test's last look is in its Event
            return None
        if seen is None:
            seen = self.metadata.endpoints.stats(
                deployment.endpoint, deployment.sequence, since=deployment.started
            )
        samples: dict[str, Sample] = {}
        for version in deployment.versions:
            stats = seen.get(str(version.model), VersionStats())
            samples[str(version.model)] = (
                RateSample(stats.outcomes, round(stats.outcome_sum))
                if policy.outcome is OutcomeKind.RATE
                else MeanSample(stats.outcomes, stats.outcome_sum, stats.outcome_squares)
            )
        rule = SequentialRule(alpha=policy.alpha)
        previous = _as_look(self.metadata.endpoints.look(deployment.endpoint, deployment.sequence))
        try:
            return decide(samples, rule, previous)
        except InvalidInput:  # a kept look over other variants or outcomes: a new test
            return decide(samples, rule)

    def _keep_look(self, deployment: Deployment, holder: str, now: float) -> None:
        """Every `AB_LOOK_EVERY` seconds the lease's holder takes the A/B test's look and keeps
        it; the look that first names a winner is an Event with its numbers."""
        endpoints = self.metadata.endpoints
        kept = endpoints.look(deployment.endpoint, deployment.sequence)
        if kept is not None and now - kept[0] < AB_LOOK_EVERY:
            return
        if not endpoints.lease(deployment.endpoint, holder, now, LEASE_SECONDS):
            return
        before = _as_look(kept)
        look = self.ab_decision(deployment)
        if look is None:
            return
        endpoints.save_look(deployment.endpoint, deployment.sequence, now, to_plain(look))
        if look.winner is not None and (before is None or before.winner != look.winner):
            self.metadata.events.append(
                Event(
                    now,
                    ROLLOUT_ACTOR,
                    "endpoint.ab_winner",
                    f"endpoint/{deployment.endpoint}",
                    f"{look.winner} wins the ab test: {look.reason}",
                    {"deployment": deployment.sequence, "ab": to_plain(look)},
                )
            )

    # model servers --------------------------------------------------------------------------
    def mark_ready(self, endpoint: str, sequence: int) -> Deployment | None:
        """A server loaded and checked the new version of deployment `sequence`: it gets its
        first traffic (once; later calls, from other servers, change nothing)."""
        current = self.get(endpoint)
        if (
            current.sequence != sequence
            or current.state is not EndpointState.PROGRESSING
            or current.started is not None
            or current.strategy not in (Strategy.CANARY, Strategy.BLUE_GREEN)
        ):
            return None
        return self._try((ready(current, now=time.time()),), current)

    def fail(self, endpoint: str, sequence: int, reason: str) -> Deployment | None:
        """A server could not load or check the new version: the rollout fails with `reason`."""
        current = self.get(endpoint)
        if current.sequence != sequence or current.state is not EndpointState.PROGRESSING:
            return None
        return self._try((fail(current, now=time.time(), reason=reason),), current)

    def report(
        self,
        endpoint: str,
        sequence: int,
        reporter: str,
        stats: Mapping[str, VersionStats],
        at: float | None = None,
    ) -> None:
        """What `reporter` (a server process) served of each version up to `at` (now)."""
        when = time.time() if at is None else at
        self.metadata.endpoints.report(endpoint, sequence, reporter, when, stats)

    def decide(self, endpoint: str, holder: str, now: float | None = None) -> Decision | None:
        """The next due step of the endpoint's rollout, taken by the lease's holder only."""
        now = time.time() if now is None else now
        current = self.get(endpoint)
        if current.strategy is Strategy.AB and current.state is EndpointState.PROGRESSING:
            self._keep_look(current, holder, now)
            return None
        due = wake_at(current)
        if due is None or now < due:
            return None
        if not self.metadata.endpoints.lease(endpoint, holder, now, LEASE_SECONDS):
            return None
        decision = tick(current, now)
        policy = current.policy
        if decision is None and isinstance(policy, CanaryPolicy) and current.started is not None:
            seen = self.metadata.endpoints.stats(
                endpoint, current.sequence, since=current.updated, until=now
            )
            canary, stable = _by_role(current, Role.CANARY), _by_role(current, Role.STABLE)
            if policy.accuracy_margin is not None and self.labelled is not None:
                # labels arrive late: count them over the whole canary, not this interval
                extra = self.labelled(endpoint, current.started, now, (canary, stable))
                seen = {
                    m: seen.get(m, VersionStats()) + extra.get(m, VersionStats())
                    for m in {*seen, *extra}
                }
            decision = advance(
                current,
                analyse(policy, seen.get(canary, VersionStats()), seen.get(stable, VersionStats())),
                now,
            )
        if decision is None:
            return None
        return decision if self._try((decision,), current) is not None else None

    # ----------------------------------------------------------------------------------------
    def _exact(self, ref: str) -> ModelRef:
        version = self.models.get(ref)
        return ModelRef(version.name, version.version)

    def _current_or_none(self, endpoint: str) -> Deployment | None:
        try:
            return self.metadata.endpoints.current(endpoint)
        except NotFound:
            return None  # its first deployment creates it

    def _save(
        self, decisions: Sequence[Decision], expected: Deployment | None, reason: str | None
    ) -> Deployment:
        changes = []
        for decision in decisions:
            event = decision.event
            if reason:  # the person's why; the rule's own account stays in the details
                details = {**event.details, "decided": decision.reason}
                event = dataclasses.replace(event, reason=reason, details=details)
            changes.append((decision.deployment, event))
        self.metadata.endpoints.save(changes, expected=expected)
        return decisions[-1].deployment

    def _try(self, decisions: Sequence[Decision], expected: Deployment) -> Deployment | None:
        """Save, or None when another process decided first (its decision stands)."""
        try:
            return self._save(decisions, expected, None)
        except Conflict:
            return None


def _as_look(kept: tuple[float, Mapping[str, Any]] | None) -> ABDecision | None:
    """An A/B test's kept look, which the next carries on (the mSPRT's mixing width is fixed
    at the first look; its p-value is a running minimum, its interval a running
    intersection): so a winner, once named, stays named. Unreadable: start afresh."""
    if kept is None:
        return None
    try:
        return from_plain(ABDecision, kept[1])
    except (InvalidInput, KeyError, TypeError, ValueError):
        return None


def _by_role(deployment: Deployment, role: Role) -> str:
    found = deployment.role(role)
    return "" if found is None else str(found.model)


def _version_status(
    model: ModelRef, role: Role, weight: int, seen: Mapping[str, VersionStats]
) -> VersionStatus:
    stats = seen.get(str(model))
    if stats is None:
        return VersionStatus(str(model), role, weight)
    shadow = role is Role.SHADOW
    return VersionStatus(
        str(model),
        role,
        weight,
        stats.requests,
        stats.errors,
        stats.success_rate,
        stats.p99(),
        stats.outcomes,
        stats.outcome_mean,
        stats.agreement_rate if shadow else None,
        stats.dropped,
    )


def _step(event: Event) -> AnalysisStep:
    details = event.details
    analysis = details.get("analysis") or {}
    return AnalysisStep(
        event.at,
        event.action,
        event.reason or "",
        analysis.get("verdict"),
        details.get("step"),
        details.get("weight"),
        tuple(analysis.get("gates") or ()),
    )
