"""What people write to deploy, read once: `--strategy`, `--steps 10,25,50,100`, `--weights 50,50`.

The CLI, the REST API and the store all take a deployment through `parse_request`, so one rule
says which options go with which strategy and how many models each takes; each refusal is an
InvalidInput naming the option and the fix. Options are given by their names without the dashes
(`{"steps": "10,50", "max-p99": "2x"}`) as the text the user typed.

`plan` turns a checked request and the endpoint's current deployment into decisions (the
rollout state machine's first, in `rollout.py`): a rollout in progress is refused, or with
`force` aborted first.

Canary steps must be whole percents from 1 to 100, strictly increasing; a last step below 100
gets 100 added (`10,50` climbs 10, 50, then promotes), since every canary ends at all traffic.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mloop.domain.abtest import OutcomeKind
from mloop.domain.durations import parse_duration
from mloop.domain.endpoint import (
    ABPolicy,
    BlueGreenPolicy,
    CanaryPolicy,
    DeployedVersion,
    Deployment,
    EndpointState,
    LatencyBound,
    Policy,
    Role,
    ShadowPolicy,
    StickyKey,
    Strategy,
)
from mloop.domain.names import ModelRef, check_name
from mloop.domain.records import to_plain
from mloop.domain.rollout import Decision, rollback
from mloop.errors import Conflict, InvalidInput

MAX_VARIANTS = 10
OPTIONS: Mapping[Strategy, frozenset[str]] = {
    Strategy.DIRECT: frozenset(),
    Strategy.CANARY: frozenset(
        {
            "steps",
            "interval",
            "threshold",
            "min-requests",
            "min-success-rate",
            "max-p99",
            "deadline",
            "accuracy-margin",
            "min-labels",
        }
    ),
    Strategy.BLUE_GREEN: frozenset({"keep"}),
    Strategy.AB: frozenset({"weights", "sticky", "alpha", "outcome"}),
    Strategy.SHADOW: frozenset({"fraction"}),
}
STRATEGY_HINT = f"use --strategy {'|'.join(Strategy)}"


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """A checked request: `models` as given (the service resolves aliases to exact versions),
    `weights` one per model for `ab` (empty otherwise), `force` aborts a rollout in progress."""

    endpoint: str
    strategy: Strategy
    models: tuple[ModelRef, ...]
    policy: Policy | None = None
    weights: tuple[int, ...] = ()
    force: bool = False


def parse_request(
    endpoint: str,
    strategy: str,
    models: Sequence[ModelRef],
    options: Mapping[str, str],
    force: bool = False,
) -> DeployRequest:
    """The one check of a deployment request: the strategy, how many models it takes, and
    which options belong to it.

    Example:
        >>> r = parse_request("web", "canary", [ModelRef("churn", 4)], {"steps": "20,60"})
        >>> r.policy.steps, r.policy.interval
        ((20, 60, 100), 60.0)
    """
    check_name(endpoint, "endpoint name")
    if strategy not in tuple(Strategy):
        raise InvalidInput(f"unknown strategy {strategy[:40]!r}", STRATEGY_HINT)
    kind = Strategy(strategy)
    stray = sorted(set(options) - OPTIONS[kind])
    if stray:
        owner = next((s for s, names in OPTIONS.items() if stray[0] in names), None)
        where = f"an option of --strategy {owner}" if owner else "not an option of mloop deploy"
        raise InvalidInput(
            f"--{stray[0]} is {where}, not of {kind}",
            f"drop --{stray[0]}" + (f" or use --strategy {owner}" if owner else ""),
        )
    refs = tuple(models)
    _check_models(kind, refs)
    policy = _policy(kind, options)
    weights: tuple[int, ...] = ()
    if kind is Strategy.AB:
        given = options.get("weights")
        weights = parse_weights(given, len(refs)) if given else _even(len(refs))
    return DeployRequest(endpoint, kind, refs, policy, weights, force)


def _check_models(kind: Strategy, refs: tuple[ModelRef, ...]) -> None:
    if kind is Strategy.AB:
        if not 2 <= len(refs) <= MAX_VARIANTS:
            raise InvalidInput(
                f"an ab test takes 2 to {MAX_VARIANTS} models, not {len(refs)}",
                "name the control first, then the challengers: "
                "mloop deploy ENDPOINT churn:3 churn:4 --strategy ab --weights 50,50",
            )
        shown = [str(r) for r in refs]
        twice = next((s for s in shown if shown.count(s) > 1), None)
        if twice is not None:
            raise InvalidInput(f"{twice} is named twice in the ab test", "name each model once")
    elif len(refs) != 1:
        raise InvalidInput(
            f"--strategy {kind} deploys one model, not {len(refs)}",
            "name one MODEL:V or MODEL@ALIAS, or compare several with --strategy ab",
        )


def _policy(kind: Strategy, options: Mapping[str, str]) -> Policy | None:
    if kind is Strategy.CANARY:
        base = CanaryPolicy()
        margin = options.get("accuracy-margin")
        return CanaryPolicy(
            steps=parse_steps(options["steps"]) if "steps" in options else base.steps,
            interval=_duration(options, "interval", base.interval),
            threshold=_integer(options, "threshold", base.threshold, 1, 1000),
            min_requests=_integer(options, "min-requests", base.min_requests, 1, 10**9),
            min_success_rate=_number(options, "min-success-rate", base.min_success_rate, 0, 100),
            max_p99=parse_latency_bound(options["max-p99"])
            if "max-p99" in options
            else base.max_p99,
            deadline=_duration(options, "deadline", base.deadline),
            accuracy_margin=None
            if margin is None
            else parse_number(margin, "--accuracy-margin", 0, 1),
            min_labels=_integer(options, "min-labels", base.min_labels, 1, 10**9),
        )
    if kind is Strategy.BLUE_GREEN:
        return BlueGreenPolicy(keep=_duration(options, "keep", BlueGreenPolicy().keep))
    if kind is Strategy.AB:
        sticky = options.get("sticky")
        alpha = _number(options, "alpha", ABPolicy().alpha, 0, 0.5, above=True)
        outcome = options.get("outcome", str(OutcomeKind.RATE))
        if outcome not in set(OutcomeKind):
            raise InvalidInput(
                f"--outcome {outcome!r} is not an outcome kind",
                "use --outcome rate (0 or 1 per answer: a conversion) or --outcome mean "
                "(a number per answer: revenue)",
            )
        return ABPolicy(
            None if sticky is None else StickyKey.parse(sticky), alpha, OutcomeKind(outcome)
        )
    if kind is Strategy.SHADOW:
        return ShadowPolicy(_number(options, "fraction", ShadowPolicy().fraction, 0, 1, above=True))
    return None


def parse_steps(text: str) -> tuple[int, ...]:
    """`10,25,50,100` -> (10, 25, 50, 100); 100 is added when the last step is below it.

    Example:
        >>> parse_steps("5, 20,50")
        (5, 20, 50, 100)
    """
    hint = "give increasing whole percents ending at 100: --steps 10,25,50,100"
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 100:
        raise InvalidInput(f"--steps has {len(parts)} steps; at most 100", hint)
    steps = tuple(parse_integer(p, "--steps", 1, 100, hint) for p in parts)
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidInput(f"--steps {text.strip()[:60]!r} is not strictly increasing", hint)
    return steps if steps[-1] == 100 else (*steps, 100)


def parse_weights(text: str, count: int) -> tuple[int, ...]:
    """`50,50` -> (50, 50): one whole percent per model, in the order the models were named,
    summing to 100, each above 0.

    Example:
        >>> parse_weights("90, 10", 2)
        (90, 10)
    """
    example = ",".join(str(w) for w in _even(count))
    hint = f"give one weight per model, summing to 100: --weights {example}"
    weights = tuple(parse_integer(p.strip(), "--weights", 1, 100, hint) for p in text.split(","))
    if len(weights) != count:
        raise InvalidInput(f"--weights gives {len(weights)} weights for {count} models", hint)
    if sum(weights) != 100:
        raise InvalidInput(f"--weights {text.strip()[:60]!r} sums to {sum(weights)}, not 100", hint)
    return weights


def parse_latency_bound(text: str) -> LatencyBound:
    """`500ms` (seconds, as a duration) or `2x` (times the stable version's p99).

    Example:
        >>> parse_latency_bound("2x"), parse_latency_bound("750ms")
        (LatencyBound(limit=2.0, relative=True), LatencyBound(limit=0.75, relative=False))
    """
    raw = text.strip().lower()
    if raw.endswith("x"):
        hint = "write a factor of the stable version's p99 from 1 to 100 (2x) or a time (500ms)"
        return LatencyBound(parse_number(raw[:-1], "--max-p99", 1, 100, hint=hint), True)
    return LatencyBound(parse_duration(raw, "--max-p99"))


def parse_integer(text: str, what: str, low: int, high: int, hint: str | None = None) -> int:
    """A whole number from `low` to `high` in ASCII digits (no sign, no '²', no 5,000 digits)."""
    raw = text.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and low <= int(raw) <= high:
        return int(raw)
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    raise InvalidInput(
        f"{what} {shown!r} is not a whole number from {low} to {high}",
        hint or f"give {what} a whole number from {low} to {high}",
    )


def parse_number(
    text: str, what: str, low: float, high: float, above: bool = False, hint: str | None = None
) -> float:
    """A finite decimal number from `low` (above it, with `above`) to `high`, in ASCII."""
    raw = text.strip()
    value = math.nan
    if raw.isascii() and len(raw) <= 40 and raw.replace(".", "", 1).isdigit():
        value = float(raw)
    if math.isfinite(value) and (value > low if above else value >= low) and value <= high:
        return value
    bounds = f"above {low:g} and at most {high:g}" if above else f"from {low:g} to {high:g}"
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    raise InvalidInput(
        f"{what} {shown!r} is not a number {bounds}", hint or f"give {what} a number {bounds}"
    )


def _even(count: int) -> tuple[int, ...]:
    """100 split as evenly as whole percents allow, the first models taking the remainder."""
    share, rest = divmod(100, count)
    return tuple(share + (1 if i < rest else 0) for i in range(count))


def _duration(options: Mapping[str, str], name: str, default: float) -> float:
    return parse_duration(options[name], f"--{name}") if name in options else default


def _integer(options: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return parse_integer(options[name], f"--{name}", low, high) if name in options else default


def _number(
    options: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    above: bool = False,
) -> float:
    return (
        parse_number(options[name], f"--{name}", low, high, above) if name in options else default
    )


_ROLES = {  # the old version's role and the new one's, by strategy
    Strategy.CANARY: (Role.STABLE, Role.CANARY),
    Strategy.BLUE_GREEN: (Role.BLUE, Role.GREEN),
    Strategy.SHADOW: (Role.STABLE, Role.SHADOW),
}


def plan(
    request: DeployRequest, current: Deployment | None, *, actor: str, now: float
) -> tuple[Decision, ...]:
    """The decisions a deployment request makes: the new deployment, after the abort of the
    one in progress when `request.force` (refused without it). `request.models` are exact.

    Example:
        >>> first = parse_request("web", "direct", [ModelRef("churn", 3)], {})
        >>> [str(d.deployment.state) for d in plan(first, None, actor="ana", now=0.0)]
        ['stable']
    """
    decisions: list[Decision] = []
    sequence = 1 if current is None else current.sequence + 1
    if current is not None and not current.state.settled:
        if not request.force:
            raise Conflict(
                f"endpoint {request.endpoint!r} has a {current.strategy} rollout in progress "
                f"(deployment {current.sequence}, {_shown(current)})",
                f"wait for it, or `mloop endpoints promote|rollback {request.endpoint}`, "
                "or deploy again with --force to abort it",
            )
        current = rollback(
            current, now=now, actor=actor, reason=f"aborted by deployment {sequence}"
        ).deployment
        decisions.append(Decision(current, "endpoint.aborted", current.reason))
    new = tuple(DeployedVersion(m, Role.STABLE) for m in request.models)  # exact, or refused
    serving = _serving(current)
    versions: tuple[DeployedVersion, ...]
    if request.strategy is Strategy.DIRECT:
        versions, state = (dataclasses.replace(new[0], weight=100),), EndpointState.STABLE
    elif request.strategy is Strategy.AB:
        versions = tuple(
            DeployedVersion(v.model, Role.VARIANT, w)
            for v, w in zip(new, request.weights, strict=True)
        )
        state = EndpointState.PROGRESSING
    else:
        if serving is None:
            raise InvalidInput(
                f"endpoint {request.endpoint!r} serves nothing yet: a {request.strategy} "
                "deployment needs a version serving it to start from",
                f"deploy one first: mloop deploy {request.endpoint} {request.models[0]} "
                "--strategy direct",
            )
        if serving == new[0].model:
            raise InvalidInput(
                f"{serving} already serves endpoint {request.endpoint!r}", "deploy another version"
            )
        old_role, new_role = _ROLES[request.strategy]
        versions = (
            DeployedVersion(serving, old_role, 100),
            DeployedVersion(new[0].model, new_role, 0),
        )
        state = EndpointState.PROGRESSING
    waits = request.strategy in (Strategy.CANARY, Strategy.BLUE_GREEN)
    reason = f"{request.strategy} deployment of {', '.join(map(str, request.models))}"
    deployment = Deployment(
        request.endpoint,
        sequence,
        request.strategy,
        versions,
        state,
        actor,
        now,
        now,
        request.policy,
        reason,
        started=None if waits else now,
    )
    details = {"policy": to_plain(request.policy), "strategy": str(request.strategy)}
    return (*decisions, Decision(deployment, "endpoint.deployed", reason, details))


def _serving(deployment: Deployment | None) -> ModelRef | None:
    """The version serving the most traffic, that a new rollout starts from."""
    if deployment is None:
        return None
    best = max(deployment.versions, key=lambda v: v.weight, default=None)
    return None if best is None or best.weight <= 0 else best.model


def _shown(deployment: Deployment) -> str:
    return ", ".join(f"{model} at {weight}%" for model, weight in deployment.weights.items())
