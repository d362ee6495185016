"""Endpoints and deployments: a stable served name, and which model versions serve it, how.

An Endpoint is the name clients call; its Deployments are numbered 1, 2, ... and the newest says
which exact versions (`churn:3`, never an alias: an alias moved later must not change what is
served) serve it, in which role and with which share of requests (whole percents summing to 100
over the versions that take traffic). Roles by strategy:

- `direct`: one `stable` version at 100.
- `canary`: the `stable` version and the `canary`, whose weight climbs the policy's steps.
- `blue_green`: `blue` (serving) and `green` (new, 0 until ready); on the switch green takes 100
  and blue keeps 0 but stays loaded for `keep`, so a rollback is instant; then blue is retired.
- `ab`: two or more `variant`s with the given weights; the first one listed is the control.
- `shadow`: the `stable` version at 100 and a `shadow` at 0 that gets copies of a fraction.

Records only, plus `loaded`; what changes them is in `rollout.py`, the split in `traffic.py`, the
options people write in `deploy_request.py`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from mloop.domain.abtest import OutcomeKind
from mloop.domain.durations import format_duration
from mloop.domain.names import ModelRef
from mloop.domain.records import textual
from mloop.errors import InvalidAddress, InvalidInput


class Strategy(enum.StrEnum):
    DIRECT = "direct"
    BLUE_GREEN = "blue_green"
    CANARY = "canary"
    AB = "ab"
    SHADOW = "shadow"


class Role(enum.StrEnum):
    """What a version does in its deployment (see the module's docstring, by strategy)."""

    STABLE = "stable"
    CANARY = "canary"
    GREEN = "green"
    BLUE = "blue"  # the previous version of a blue/green switch, kept loaded for `keep`
    VARIANT = "variant"
    SHADOW = "shadow"


class EndpointState(enum.StrEnum):
    """`stable`: a direct deployment. `progressing`: a rollout or a test is running.
    `promoted`: the new version serves alone. `rolled_back`: the previous one does again, by
    hand or by a failed analysis. `failed`: the new version never became ready."""

    STABLE = "stable"
    PROGRESSING = "progressing"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        """Nothing left to decide: a new deployment may start without `--force`."""
        return self is not EndpointState.PROGRESSING


class KeySource(enum.StrEnum):
    HEADER = "header"
    FIELD = "field"


STICKY_HINT = (
    "write header:NAME (an HTTP header, e.g. header:x-user-id) or field:NAME (e.g. field:user_id)"
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,100}")  # an RFC 9110 token, lowercased
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@textual
@dataclass(frozen=True, slots=True)
class StickyKey:
    """Where an A/B request's assignment key comes from: `header:x-user-id` or `field:user_id`
    (a field of the request's payload). Header names are compared lowercased, as HTTP does."""

    source: KeySource
    name: str

    def __post_init__(self) -> None:
        rule = _HEADER_NAME if self.source is KeySource.HEADER else _FIELD_NAME
        if not rule.fullmatch(self.name):
            raise InvalidInput(f"invalid sticky key {self.source}:{self.name!r}", STICKY_HINT)

    @classmethod
    def parse(cls, text: str) -> StickyKey:
        """Example:
        >>> StickyKey.parse("header:X-User-Id")
        StickyKey(source=<KeySource.HEADER: 'header'>, name='x-user-id')
        """
        source, sep, name = text.strip().partition(":")
        if not sep or source not in tuple(KeySource):
            raise InvalidInput(f"invalid sticky key {text[:60]!r}", STICKY_HINT)
        key = KeySource(source)
        return cls(key, name.lower() if key is KeySource.HEADER else name)

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


@dataclass(frozen=True, slots=True)
class LatencyBound:
    """A p99 bound: `limit` seconds, or with `relative` `limit` times the stable version's p99."""

    limit: float = 0.5
    relative: bool = False

    def bound(self, stable_p99: float | None) -> float | None:
        """The bound in seconds; None when it is relative and the stable p99 is unknown."""
        if not self.relative:
            return self.limit
        return None if stable_p99 is None else self.limit * stable_p99

    def __str__(self) -> str:
        return f"{self.limit:g}x" if self.relative else format_duration(self.limit)


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    """Flagger's defaults: steps of weight, an analysis every `interval` seconds, gates (success
    rate, p99, and accuracy when `accuracy_margin` is set), `threshold` failing intervals in a
    row roll back, and a canary not promoted `deadline` seconds after it got traffic is rolled
    back too. An interval under `min_requests` (or, for accuracy, `min_labels`) is no data."""

    steps: tuple[int, ...] = (10, 25, 50, 100)
    interval: float = 60.0
    threshold: int = 5
    min_requests: int = 100  # fewer cannot tell a 99% success rate from 100%
    min_success_rate: float = 99.0  # percent of requests answered without a 5xx
    max_p99: LatencyBound = LatencyBound()
    deadline: float = 3600.0
    accuracy_margin: float | None = None  # how much lower than stable's accuracy may be
    min_labels: int = 100


@dataclass(frozen=True, slots=True)
class BlueGreenPolicy:
    keep: float = 600.0  # seconds blue stays loaded after the switch


@dataclass(frozen=True, slots=True)
class ABPolicy:
    """The weights are the versions' own (one definition); `alpha` is the test's error rate;
    `outcome` says what the posted outcomes are: `rate` (0 or 1 each: a conversion, a click)
    or `mean` (any number: revenue, time on page), the test compared accordingly."""

    sticky: StickyKey | None = None
    alpha: float = 0.05
    outcome: OutcomeKind = OutcomeKind.RATE


@dataclass(frozen=True, slots=True)
class ShadowPolicy:
    fraction: float = 1.0  # of requests copied to the shadow, above 0 and at most 1


Policy = CanaryPolicy | BlueGreenPolicy | ABPolicy | ShadowPolicy
# A stored policy is read by its deployment's strategy (`from_plain(POLICIES[strategy], data)`):
# read as the `Policy` union, a field added later would make old rows match no member.
POLICIES: dict[Strategy, type[Policy] | None] = {
    Strategy.DIRECT: None,
    Strategy.CANARY: CanaryPolicy,
    Strategy.BLUE_GREEN: BlueGreenPolicy,
    Strategy.AB: ABPolicy,
    Strategy.SHADOW: ShadowPolicy,
}


@dataclass(frozen=True, slots=True)
class DeployedVersion:
    """One exact model version in a deployment; `weight` is its percent of requests."""

    model: ModelRef
    role: Role
    weight: int = 0

    def __post_init__(self) -> None:
        if self.model.version is None:
            raise InvalidAddress(
                f"a deployment holds exact versions, not {str(self.model)!r}",
                "resolve the alias or the latest version first: NAME:VERSION",
            )


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    created: float
    user: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Deployment:
    """The `sequence`th deployment of `endpoint`, as it stands after its last decision.

    `actor` and `reason` are those of the last change (`updated`); `step` is the index in the
    canary's steps of its weight now; `failures` counts failing analysis intervals in a row;
    `started` is when the new version first got traffic (None before it was ready): a canary's
    deadline and blue's `keep` count from it.
    """

    endpoint: str
    sequence: int
    strategy: Strategy
    versions: tuple[DeployedVersion, ...]
    state: EndpointState
    actor: str
    created: float
    updated: float
    policy: Policy | None = None
    reason: str = ""
    step: int = 0
    failures: int = 0
    started: float | None = None

    def role(self, role: Role) -> DeployedVersion | None:
        """The first version with `role`, if any."""
        return next((v for v in self.versions if v.role is role), None)

    @property
    def weights(self) -> dict[str, int]:
        """`{"churn:3": 90, "churn:4": 10}`: what a status line shows."""
        return {str(v.model): v.weight for v in self.versions}


def loaded(deployment: Deployment) -> tuple[DeployedVersion, ...]:
    """The versions a server holds loaded: those taking traffic, a shadow being mirrored, blue
    kept for an instant rollback, and a new version of a rollout in progress (it is loaded and
    checked before it gets traffic). A version at 0 in a settled deployment is retired: drained,
    then unloaded.

    Example:
        >>> v = DeployedVersion(ModelRef("churn", 3), Role.STABLE, 100)
        >>> old = DeployedVersion(ModelRef("churn", 2), Role.CANARY, 0)
        >>> back = EndpointState.ROLLED_BACK
        >>> d = Deployment("web", 2, Strategy.CANARY, (v, old), back, "ana", 0.0, 0.0)
        >>> [str(x.model) for x in loaded(d)]
        ['churn:3']
    """
    progressing = deployment.state is EndpointState.PROGRESSING
    return tuple(
        v
        for v in deployment.versions
        if v.weight > 0
        or (progressing and v.role in (Role.BLUE, Role.GREEN, Role.CANARY, Role.SHADOW))
    )
