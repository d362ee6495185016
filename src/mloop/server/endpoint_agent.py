"""What a server started with `mloop serve --endpoint NAME` does with the project's store.

Each worker process has one `EndpointAgent` (opened after the fork: no connection crosses a
process boundary). The worker's `DeploymentFollower` calls it:

- `plan()` every second: the endpoint's deployment as a `ServingPlan`, with the traffic split of
  `domain/traffic.Router`. Before that, the agent lets the rollout decide what is due (the
  process holding the endpoint's lease analyses the interval; the others do nothing). The first
  plan of a process leaves out a new version that has no traffic yet, so a server starts
  serving what is live even when that version cannot load; the next poll loads it.
- `applied(plan, failed)` once a plan was tried: a new canary or green loaded and warmed here
  is ready (`mark_ready`: the first server to say so starts the rollout); one that failed its
  readiness check fails the rollout with the reason.
- `report(record)` every few seconds: this worker's per-version counts since the last report,
  written to the store, where the analysis adds up every server's.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mloop.domain.analysis import VersionStats
from mloop.domain.endpoint import (
    ABPolicy,
    Deployment,
    EndpointState,
    Role,
    ShadowPolicy,
    Strategy,
    loaded,
)
from mloop.server.slots import ServedVersion, ServingPlan, weighted

if TYPE_CHECKING:
    from mloop.project import Project
    from mloop.services.serving.predictor import Predictor

REPORT_EVERY = 2.0  # seconds between a worker's reports to the store
POLL = 1.0  # seconds between looks at the deployment


def plan_of(deployment: Deployment, *, starting: bool = False) -> ServingPlan:
    """The plan serving `deployment`: what it holds loaded (`domain.endpoint.loaded`), split
    by the deployment's `Router` (keyed as `Router.for_deployment` keys it); with `starting`,
    without a new version that has no traffic yet."""
    versions = loaded(deployment)
    if starting:
        versions = tuple(v for v in versions if v.weight > 0 or v.role is Role.SHADOW)
    served = tuple(ServedVersion(str(v.model), str(v.role), float(v.weight)) for v in versions)
    policy = deployment.policy
    sticky = str(policy.sticky) if isinstance(policy, ABPolicy) and policy.sticky else None
    fraction = policy.fraction if isinstance(policy, ShadowPolicy) else 1.0
    choose = weighted(served, salt=f"{deployment.endpoint}/{deployment.sequence}")
    outcome = str(policy.outcome) if isinstance(policy, ABPolicy) else "mean"
    return ServingPlan(deployment.endpoint, served, sticky, fraction, choose, outcome)


@dataclass
class EndpointAgent:
    """One worker's link between its server and the endpoint's deployment in the store."""

    root: str
    endpoint: str
    trust: bool = False
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _project: Project | None = field(default=None, repr=False)
    _current: Deployment | None = field(default=None, repr=False)

    @property
    def project(self) -> Project:
        if self._project is None:
            from mloop.project import Project

            self._project = Project.open(self.root)
            self.holder = f"{socket.gethostname()}:{os.getpid()}"  # this process's, after a fork
        return self._project

    def plan(self) -> ServingPlan:
        endpoints = self.project.endpoints
        endpoints.decide(self.endpoint, self.holder)
        deployment = endpoints.get(self.endpoint)
        starting = self._current is None
        self._current = deployment
        return plan_of(deployment, starting=starting)

    def prediction_log(self) -> Any:
        """This worker's prediction-log writer, on the same project (opened after the fork)."""
        return self.project.prediction_log()

    def load(self, ref: str) -> Predictor:
        return self.project.models.load_predictor(ref, trust=self.trust)

    def applied(self, plan: ServingPlan, failed: dict[str, str]) -> None:
        deployment = self._current
        if deployment is None or deployment.state is not EndpointState.PROGRESSING:
            return
        endpoints = self.project.endpoints
        if failed:
            endpoints.fail(self.endpoint, deployment.sequence, "; ".join(failed.values()))
        elif (
            deployment.started is None
            and deployment.strategy in (Strategy.CANARY, Strategy.BLUE_GREEN)
            and {v.model for v in plan.versions} >= {str(v.model) for v in deployment.versions}
        ):
            endpoints.mark_ready(self.endpoint, deployment.sequence)

    def report(self, record: dict[str, Any]) -> None:
        deployment = self._current
        if deployment is None:
            return
        stats: dict[str, VersionStats] = {}
        for seen in record.get("versions", ()):
            counted = VersionStats(
                int(seen["requests"]),
                int(seen["errors"]),
                tuple(seen["latency_buckets"]),
                outcomes=int(seen.get("outcomes", 0)),
                outcome_sum=float(seen.get("outcome_sum", 0.0)),
                outcome_squares=float(seen.get("outcome_squares", 0.0)),
                agreed=int(seen.get("agreed", 0)),
                dropped=int(seen.get("dropped", 0)),
            )
            model = str(seen["model"])
            stats[model] = stats[model] + counted if model in stats else counted
        self.project.endpoints.report(self.endpoint, deployment.sequence, self.holder, stats)
