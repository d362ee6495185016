"""The controller's loop, as pure rules: an iteration's states, what each trigger may still do
(cool-down, retrains per day, backoff after a failed check), and the `controller:` settings.

One iteration is one cause's way through the loop:

    triggered -> snapshotted -> training -> registered -> gated -> deploying -> rolling_out -> done

Each state is written to the store before the side effect that leaves it is taken (or with
it, in one transaction), and each side effect can be found again after a crash: landing is
idempotent, the pipeline run carries the iteration's id as a tag, the registered version is
the run's, a deployment names the challenger. So a controller killed at any point and started
again continues the same iteration and repeats no retrain, registration or deployment.
`done` carries the outcome; `failed` is an outcome, not a state, so "where did it stop" and
"how did it end" are both on the record.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mloop.domain.trigger import Trigger
from mloop.errors import InvalidInput

DAY = 86400.0
CONTROLLER_LEASE = "controller"  # the name of the lease every controller of a store contends for
ITERATION_TAG = "mloop.controller.iteration"  # on the pipeline run an iteration started
BACKOFF_MIN = 30.0  # seconds before a failed check is tried again, doubled each time
BACKOFF_MAX = 600.0
_EXAMPLE = "controller: {train: {endpoint: churn, strategy: canary}}"
_FEEDBACK_EXAMPLE = "feedback: {dataset: churn, label: churned, since: 30d}"
FEEDBACK_SINCE = "30d"  # the window of logged requests whose labelled rows a snapshot takes
_STRATEGIES = ("canary", "blue_green", "direct")


class IterationState(enum.StrEnum):
    TRIGGERED = "triggered"  # a trigger fired and was admitted
    SNAPSHOTTED = "snapshotted"  # the data it trains on is a dataset version
    TRAINING = "training"  # the pipeline run is (about to be) started
    REGISTERED = "registered"  # the run registered a challenger
    GATED = "gated"  # the challenger passed the registry's gates
    DEPLOYING = "deploying"  # the deployment is (about to be) made
    ROLLING_OUT = "rolling_out"  # the endpoint's servers are deciding
    DONE = "done"

    @property
    def open(self) -> bool:
        return self is not IterationState.DONE


class Outcome(enum.StrEnum):
    PROMOTED = "promoted"  # the rollout promoted the challenger; it is the champion
    ROLLED_BACK = "rolled_back"  # the rollout went back to the champion
    HELD = "held"  # the challenger failed its gates: not deployed
    PASSED = "passed"  # gates passed, no endpoint configured: the champion alias moved
    NO_CHALLENGER = "no_challenger"  # the run registered no model version
    FAILED = "failed"  # a step failed (the pipeline, the deployment): the champion serves


@dataclass(frozen=True, slots=True)
class Iteration:
    """One turn of the loop for `pipeline`, started by `trigger` (its key) for `reason`."""

    id: str
    pipeline: str
    trigger: str
    kind: str
    reason: str
    state: IterationState
    created: float
    updated: float
    numbers: Mapping[str, Any] = field(default_factory=dict)
    dataset: str | None = None  # NAME:V made for it (landed files, labelled rows), or None
    run_id: str | None = None
    model: str | None = None  # the challenger, NAME:V
    endpoint: str | None = None
    deployment: int | None = None  # the endpoint's deployment sequence the rollout is
    outcome: Outcome | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TriggerState:
    """What the controller last saw of a trigger: its last check's value, when it last fired
    (started an iteration), the schedule's last fire time, and failed checks in a row (for
    the backoff)."""

    trigger: str
    checked: float | None = None
    value: Mapping[str, Any] = field(default_factory=dict)
    fired: float | None = None
    mark: float | None = None  # a schedule: the fire time last acted on (or first seen)
    failures: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    reason: str


def admit(trigger: Trigger, fires: Sequence[float], now: float) -> Admission:
    """Whether a trigger that fired may start an iteration, given when it started earlier
    ones: not within its cool-down of the last, not beyond `max_per_day` in the last 24 h.

    Example:
        >>> from mloop.domain.trigger import parse_triggers
        >>> t = parse_triggers({"train": [{"schedule": "0 3 * * *", "max_per_day": 1}]})
        >>> admit(t["train"][0], [1000.0], 2000.0).reason
        'already retrained 1 times in 24h (max_per_day 1)'
    """
    if fires:
        last = max(fires)
        if now - last < trigger.cooldown:
            left = trigger.cooldown - (now - last)
            return Admission(
                False, f"in cool-down for {left:.0f}s more (cooldown {trigger.cooldown:.0f}s)"
            )
    if trigger.max_per_day is not None:
        today = [t for t in fires if now - t < DAY]
        if len(today) >= trigger.max_per_day:
            return Admission(
                False,
                f"already retrained {len(today)} times in 24h (max_per_day {trigger.max_per_day})",
            )
    return Admission(True, "admitted")


def backoff(failures: int) -> float:
    """Seconds to wait before checking again after `failures` failed checks in a row."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (failures - 1)))


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """Production rows a pipeline's iterations add to a dataset (`controller.PIPELINE.feedback`):
    the logged requests of `endpoint` answered in the last `since` (an age, `30d`) that have a
    label, as rows of `dataset`'s table: each `feature.NAME` into column NAME, the label into
    column `label`."""

    dataset: str
    label: str
    endpoint: str
    since: str = FEEDBACK_SINCE


@dataclass(frozen=True, slots=True)
class LoopPolicy:
    """Where a pipeline's challengers go (`controller.PIPELINE` in mloop.yaml): the endpoint,
    the rollout's strategy and its options (as `mloop deploy` takes them), the alias that
    names what serves (moved when a rollout promotes, or when the gates pass with no endpoint),
    and the labelled production rows each iteration adds to a dataset before it trains.
    """

    endpoint: str | None = None
    strategy: str = "canary"
    options: Mapping[str, str] = field(default_factory=dict)
    alias: str = "champion"
    feedback: FeedbackPolicy | None = None


def parse_loop_policies(value: Any) -> dict[str, LoopPolicy]:
    """`{pipeline: LoopPolicy}` from mloop.yaml's `controller:`; errors name the key path.

    Example:
        >>> parse_loop_policies({"train": {"endpoint": "churn"}})["train"].strategy
        'canary'
    """
    from mloop.domain.names import check_name

    if not isinstance(value, Mapping):
        raise InvalidInput("controller must map pipeline names to their loop", _EXAMPLE)
    found: dict[str, LoopPolicy] = {}
    for pipeline, raw in value.items():
        where = f"controller.{pipeline}"
        if not isinstance(raw, Mapping):
            raise InvalidInput(f"{where} must be a mapping", _EXAMPLE)
        given = {str(k): v for k, v in raw.items()}
        stray = sorted(set(given) - {"endpoint", "strategy", "options", "alias", "feedback"})
        if stray:
            raise InvalidInput(
                f"{where}: unknown option {stray[0]!r}",
                "it takes endpoint, strategy, options, alias, feedback",
            )
        try:
            endpoint = given.get("endpoint")
            if endpoint is not None:
                endpoint = check_name(str(endpoint), "endpoint name")
            alias = check_name(str(given.get("alias") or "champion"), "alias")
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}", exc.hint) from None
        strategy = str(given.get("strategy") or "canary")
        if strategy not in _STRATEGIES:
            raise InvalidInput(
                f"{where}: strategy {strategy!r} is not one the loop can roll out",
                f"one of {', '.join(_STRATEGIES)} (ab and shadow need a person to choose)",
            )
        options = given.get("options") or {}
        if not isinstance(options, Mapping):
            raise InvalidInput(
                f"{where}: options must be a mapping", "e.g. options: {steps: 10,50}"
            )
        feedback = given.get("feedback")
        found[str(pipeline)] = LoopPolicy(
            endpoint,
            strategy,
            {str(k): str(v) for k, v in options.items()},
            alias,
            None if feedback is None else parse_feedback(feedback, f"{where}.feedback", endpoint),
        )
    return found


def parse_feedback(value: Any, where: str, endpoint: str | None) -> FeedbackPolicy:
    """`controller.PIPELINE.feedback`: which dataset labelled production rows join, from which
    endpoint (the loop's own by default), over what window, and the label's column.

    Example:
        >>> parse_feedback({"dataset": "churn", "label": "churned"}, "feedback", "web").since
        '30d'
    """
    from mloop.domain.names import check_name
    from mloop.domain.prediction import parse_age

    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be a mapping", _FEEDBACK_EXAMPLE)
    given = {str(k): v for k, v in value.items()}
    stray = sorted(set(given) - {"dataset", "label", "endpoint", "since"})
    if stray:
        raise InvalidInput(
            f"{where}: unknown option {stray[0]!r}", "it takes dataset, label, endpoint, since"
        )
    for key in ("dataset", "label"):
        if given.get(key) in (None, ""):
            raise InvalidInput(f"{where}.{key} is missing", _FEEDBACK_EXAMPLE)
    source = given.get("endpoint", endpoint)
    if source is None:
        raise InvalidInput(
            f"{where}: no endpoint to read labelled requests from",
            f"give {where}.endpoint, or {where.rsplit('.', 1)[0]}.endpoint (the loop's)",
        )
    label = given["label"]
    if not isinstance(label, str):
        raise InvalidInput(
            f"{where}.label must name a column of the dataset, not {label!r}",
            "the column the label goes in, as the dataset's table names it: label: churned",
        )
    try:
        dataset = check_name(str(given["dataset"]), "dataset name")
        source = check_name(str(source), "endpoint name")
        since = str(given.get("since") or FEEDBACK_SINCE)
        parse_age(since, "since")
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", exc.hint) from None
    return FeedbackPolicy(dataset, label, source, since)


def check_loop_pipelines(policies: Mapping[str, LoopPolicy], pipelines: Sequence[str]) -> None:
    """Refuse `controller.NAME` for a pipeline the project does not declare."""
    import difflib

    for name in policies:
        if name not in pipelines:
            close = difflib.get_close_matches(name, list(pipelines), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "declare it under `pipelines:`"
            raise InvalidInput(f"controller.{name}: no pipeline {name!r} in mloop.yaml", hint)


def plain_loop_policies(value: Mapping[str, LoopPolicy]) -> dict[str, Any]:
    from mloop.domain.records import to_plain

    return {name: to_plain(policy) for name, policy in value.items()}
