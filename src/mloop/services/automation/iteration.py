"""One iteration of the controller's loop, one step at a time (the states: domain/controller.py).

`Steps.advance` takes an iteration one state on and returns it as written; each state is
written before its side effect, and each side effect is found again after a crash instead of
taken twice: landing is idempotent; the pipeline run carries the iteration's id as a tag (a
run whose process died is resumed, so its finished steps, the registration among them, are
reused); the challenger is the version the run registered; a deployment is adopted when the
endpoint already serves the challenger from the expected sequence on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mloop.domain.controller import ITERATION_TAG, Iteration, IterationState, LoopPolicy, Outcome
from mloop.domain.endpoint import EndpointState
from mloop.domain.event import Event
from mloop.domain.records import to_plain
from mloop.domain.run import RunKind, RunStatus
from mloop.domain.trigger import Trigger, TriggerKind
from mloop.errors import MloopError, NotFound, StoreUnavailable

if TYPE_CHECKING:
    from mloop.domain.model import ModelVersion
    from mloop.domain.run import Run
    from mloop.services.automation.feedback_snapshot import FeedbackSnapshots
    from mloop.services.automation.triggers import TriggerService
    from mloop.services.pipelines.catalog import PipelineService
    from mloop.services.registry.promotion import Promoter
    from mloop.services.serving.endpoints import EndpointService
    from mloop.store.metadata.protocol import MetadataStore

S = IterationState
_Said = tuple[str, str, dict[str, Any]]  # an Event's action, reason and details


class Steps:
    """The side effects of an iteration, through the services that own them."""

    def __init__(
        self,
        metadata: MetadataStore,
        triggers: TriggerService,
        pipelines: PipelineService,
        promoter: Promoter,
        endpoints: EndpointService,
        *,
        policies: Mapping[str, LoopPolicy],
        actor: str,
        feedback: FeedbackSnapshots,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`feedback`: takes labelled production rows into a dataset, for the pipelines whose
        policy has `feedback`."""
        self.metadata = metadata
        self.triggers = triggers
        self.pipelines = pipelines
        self.promoter = promoter
        self.endpoints = endpoints
        self.policies = policies
        self.actor = actor
        self.clock = clock
        self.feedback = feedback

    def policy(self, pipeline: str) -> LoopPolicy:
        return self.policies.get(pipeline) or LoopPolicy()

    # the one entry ---------------------------------------------------------------------------
    def advance(self, it: Iteration) -> Iteration:
        """Take `it` one state on (or leave it, while its run or rollout goes on); a step
        that fails ends the iteration `failed` with the error, leaving the champion serving."""
        step = {
            S.TRIGGERED: self._snapshot,
            S.SNAPSHOTTED: self._start_training,
            S.TRAINING: self._train,
            S.REGISTERED: self._gate,
            S.GATED: self._start_deploying,
            S.DEPLOYING: self._deploy,
            S.ROLLING_OUT: self._watch,
        }[it.state]
        try:
            return step(it)
        except (Retry, StoreUnavailable):
            raise  # nothing decided: the next tick tries the same step again
        except MloopError as exc:
            return self._end(it, Outcome.FAILED, f"{it.state}: {exc.message}", error=exc.message)

    # writing -----------------------------------------------------------------------------------
    def _event(self, it: Iteration, action: str, reason: str, **details: Any) -> Event:
        return Event(
            self.clock(),
            self.actor,
            action,
            f"pipeline/{it.pipeline}",
            reason,
            {"iteration": it.id, "trigger": it.trigger, **to_plain(details)},
        )

    def _move(
        self, it: Iteration, state: IterationState, event: _Said | None = None, **changes: Any
    ) -> Iteration:
        moved = dataclasses.replace(it, state=state, updated=self.clock(), **changes)
        written = None if event is None else self._event(moved, event[0], event[1], **event[2])
        self.metadata.controller.advance(moved, it.state, written)
        return moved

    def _end(
        self, it: Iteration, outcome: Outcome, reason: str, *, error: str | None = None,
        details: Mapping[str, Any] | None = None, **changes: Any,
    ) -> Iteration:  # fmt: skip
        action = {
            Outcome.FAILED: "controller.failed",
            Outcome.HELD: "controller.held",
            Outcome.PROMOTED: "controller.promoted",
            Outcome.PASSED: "controller.promoted",
            Outcome.ROLLED_BACK: "controller.rolled_back",
            Outcome.NO_CHALLENGER: "controller.no_challenger",
        }[outcome]
        details = {
            "outcome": str(outcome),
            **({"error": error} if error else {}),
            **(details or {}),
        }
        return self._move(
            it, S.DONE, (action, reason, details), outcome=outcome, error=error, **changes
        )

    # triggered -> snapshotted ------------------------------------------------------------------
    def _snapshot(self, it: Iteration) -> Iteration:
        """The data the iteration trains on, as dataset versions: new_data's landed files
        (idempotent: after a crash, files a version already holds are left out and that
        version is the answer), then, when `controller.PIPELINE.feedback` is set, the labelled
        production rows new since the last snapshot (a version naming this iteration, so a
        restart finds it). With neither, the data as it is."""
        said: list[str] = []
        details: dict[str, Any] = {}
        changes: dict[str, Any] = {}
        if it.kind == TriggerKind.NEW_DATA:
            trigger = self._trigger(it)
            check = self.triggers.check_new_data(trigger)
            if check.error:
                raise Retry(f"the watched folder cannot be read: {check.error}")
            added = self.triggers.land(trigger, check)
            ref = f"{added.version.name}:{added.version.version}"
            said.append(
                f"{ref} holds the landed files" + ("" if added.created else " (landed before)")
            )
            details["dataset"] = changes["dataset"] = ref
        feedback = self.policy(it.pipeline).feedback
        if feedback is not None:
            snapshot = self.feedback.take(feedback, it.id, f"controller.{it.pipeline}.feedback")
            said.append(snapshot.describe())
            details["feedback"] = snapshot.numbers()
            changes["numbers"] = {**it.numbers, "feedback": snapshot.numbers()}
            if snapshot.changed:
                details["dataset"] = changes["dataset"] = snapshot.version.ref
        if not said:
            return self._move(it, S.SNAPSHOTTED)
        event = ("controller.snapshotted", "; ".join(said), details)
        return self._move(it, S.SNAPSHOTTED, event, **changes)

    def _trigger(self, it: Iteration) -> Trigger:
        for trigger in self.triggers.triggers.get(it.pipeline, ()):
            if trigger.key == it.trigger:
                return trigger
        raise NotFound(
            f"{it.trigger} is no longer in mloop.yaml", "the iteration it started cannot land"
        )

    # snapshotted -> training -> registered -------------------------------------------------------
    def _start_training(self, it: Iteration) -> Iteration:
        return self._move(it, S.TRAINING)  # written before the run starts: see `_train`

    def _runs_of(self, it: Iteration) -> list[Run]:
        found = self.pipelines.runner.runs.find(
            f"tags.`{ITERATION_TAG}` = '{it.id}' and kind = {RunKind.PIPELINE}", "started"
        )
        return [r for r in found if r.parent_id is None]

    def _train(self, it: Iteration) -> Iteration:
        """The run this iteration started, if any: finished, it is used; running, it is waited
        for; lost (its process died with a killed controller), it is resumed, so its finished
        steps are reused and nothing is registered twice; else a run starts."""
        runs = self._runs_of(it)
        last = runs[-1] if runs else None
        orphaned = last is not None and _orphaned(last)
        if last is not None and orphaned:
            last = dataclasses.replace(last, status=RunStatus.LOST)
        if last is not None and last.status is RunStatus.RUNNING:
            return it  # another process's run, alive: look again at the next tick
        if last is not None and last.status is RunStatus.LOST:
            made = self._registered(last)
            if made is not None:  # it died after registering: that version is the challenger
                self.pipelines.runner.runs.fail(
                    last.id, "lost with the controller that ran it", force=orphaned
                )
                return self._challenger(it, last, made, f"lost run {last.id[:12]}")
        if last is None or last.status is RunStatus.LOST:
            from mloop.services.pipelines.worker import forget_modules
            from mloop.services.pipelines.working import WorkingData

            forget_modules(str(self.pipelines.root))  # the code as it is now, edits included
            graph = self.pipelines.graph(it.pipeline)
            result = self.pipelines.run_graph(
                graph,
                resume=None if last is None else last.id,
                working_data=WorkingData.LATEST,  # the store's data, not this folder's files
                tags={ITERATION_TAG: it.id},
            )
            if last is not None:  # resumed: the lost run is over
                self.pipelines.runner.runs.fail(
                    last.id, f"lost; resumed by {result.run_id[:12]}", force=orphaned
                )
            last = self.pipelines.runner.runs.get(result.run_id)
        if last.status is not RunStatus.FINISHED:
            error = last.error or f"the run ended {last.status}"
            return self._end(
                it, Outcome.FAILED, f"run {last.id[:12]} failed: {error}; the champion serves on",
                error=error, run_id=last.id,
            )  # fmt: skip
        made = self._registered(last)
        if made is None:
            return self._end(
                it, Outcome.NO_CHALLENGER,
                f"run {last.id[:12]} registered no new model version (its steps were reused, "
                "or the pipeline has no register step)",
                run_id=last.id,
            )  # fmt: skip
        return self._challenger(it, last, made, f"run {last.id[:12]}")

    def _challenger(self, it: Iteration, run: Run, made: ModelVersion, by: str) -> Iteration:
        metrics = dict(made.metrics)
        said = f"{by} registered {made.ref}"
        event = ("controller.retrained", said, {"run": run.id, "model": made.ref, **metrics})
        return self._move(it, S.REGISTERED, event, run_id=run.id, model=made.ref)

    def _registered(self, run: Run) -> ModelVersion | None:
        runs = [run, *self.metadata.runs.children(run.id)]
        made = [v for r in runs for v in self.metadata.models.versions_of_run(r.id)]
        return max(made, key=lambda v: v.created) if made else None

    # registered -> gated ------------------------------------------------------------------------
    def _gate(self, it: Iteration) -> Iteration:
        """The registry's gates against the current holder of the alias (pure measurement:
        after a crash they are measured again, with the same answer)."""
        assert it.model is not None
        version = self.promoter.models.get(it.model)
        alias = self.policy(it.pipeline).alias
        records = self.promoter.evaluate(version.name, version.version, alias)
        self.metadata.models.set_gates(version.name, version.version, records)
        gates = [to_plain(r) for r in records]
        failed = [r for r in records if not r.passed]
        if failed:
            detail = "; ".join(f"{r.gate}: {r.reason}" for r in failed)
            said = f"{it.model} failed {len(failed)} of {len(records)} gates: {detail}"
            return self._end(it, Outcome.HELD, f"{said}; not deployed", numbers=_with(it, gates))
        said = f"{it.model} passed {len(records)} gates against {version.name}@{alias}"
        return self._move(
            it, S.GATED, ("controller.approved", said, {"gates": gates}), numbers=_with(it, gates)
        )

    # gated -> deploying -> rolling_out -> done ----------------------------------------------------
    def _start_deploying(self, it: Iteration) -> Iteration:
        assert it.model is not None
        policy = self.policy(it.pipeline)
        if policy.endpoint is None:
            return self._promote_alias(
                it, Outcome.PASSED,
                f"no endpoint configured (controller.{it.pipeline}.endpoint): stopped after "
                f"the gates; {it.model} is now @{policy.alias}",
            )  # fmt: skip
        try:
            current = self.endpoints.get(policy.endpoint).sequence
        except NotFound:
            current = 0
        # The sequence the deployment will have: a restart that finds it serving the
        # challenger adopts it instead of deploying again.
        return self._move(it, S.DEPLOYING, endpoint=policy.endpoint, deployment=current + 1)

    def _deploy(self, it: Iteration) -> Iteration:
        assert it.model is not None and it.endpoint is not None and it.deployment is not None
        policy = self.policy(it.pipeline)
        found = self._adopt(it)
        if found is None:
            strategy, options = policy.strategy, policy.options
            serving = self._serving(it.endpoint)
            if serving is None:  # nothing to roll out against: the first version goes direct
                strategy, options = "direct", {}
            deployment = self.endpoints.deploy(
                it.endpoint, [it.model], strategy, options,
                reason=f"the controller's iteration {it.id} ({it.trigger})",
            )  # fmt: skip
            found = deployment.sequence
        said = f"{it.model} deployed on endpoint {it.endpoint} (deployment {found})"
        event = ("controller.deployed", said, {"endpoint": it.endpoint, "deployment": found})
        return self._move(it, S.ROLLING_OUT, event, deployment=found)

    def _serving(self, endpoint: str) -> str | None:
        try:
            current = self.endpoints.get(endpoint)
        except NotFound:
            return None
        weighted = [v for v in current.versions if v.weight > 0]
        return str(weighted[0].model) if weighted else None

    def _adopt(self, it: Iteration) -> int | None:
        """The deployment this iteration made before a crash, if it made one."""
        assert it.endpoint is not None and it.deployment is not None
        for seq in range(it.deployment, it.deployment + 5):
            try:
                d = self.metadata.endpoints.deployment(it.endpoint, seq)
            except NotFound:
                return None
            if it.model in d.weights:
                return seq
        return None

    def _watch(self, it: Iteration) -> Iteration:
        """The rollout is the endpoint's servers' to decide; the controller reads the verdict."""
        assert it.endpoint is not None and it.deployment is not None
        d = self.metadata.endpoints.deployment(it.endpoint, it.deployment)
        if d.state is EndpointState.PROGRESSING:
            return it
        numbers = self._verdict(it.endpoint, it.deployment)
        if d.state in (EndpointState.PROMOTED, EndpointState.STABLE):
            said = f"endpoint {it.endpoint} promoted {it.model}: {d.reason}"
            return self._promote_alias(it, Outcome.PROMOTED, said, numbers)
        if d.state is EndpointState.ROLLED_BACK:
            said = f"endpoint {it.endpoint}: {d.reason}"
            return self._end(it, Outcome.ROLLED_BACK, said, details=numbers)
        said = f"endpoint {it.endpoint}: {d.reason}"
        return self._end(it, Outcome.FAILED, said, error=d.reason, details=numbers)

    def _verdict(self, endpoint: str, sequence: int) -> dict[str, Any]:
        """The numbers behind the servers' decision on the deployment (the analysis of its last
        interval, the weight it had), from the endpoint's Event, for the controller's own."""
        for event in self.metadata.events.find(f"endpoint/{endpoint}", limit=20):
            if event.details.get("deployment") == sequence:
                keys = ("deployment", "weight", "analysis")
                return {k: event.details[k] for k in keys if k in event.details}
        return {"deployment": sequence}

    def _promote_alias(
        self, it: Iteration, outcome: Outcome, reason: str, numbers: Mapping[str, Any] | None = None
    ) -> Iteration:
        """Move the alias to the challenger (once: a restart finds it moved) and end."""
        assert it.model is not None
        version = self.promoter.models.get(it.model)
        alias = self.policy(it.pipeline).alias
        try:
            holder = self.promoter.models.get(f"{version.name}@{alias}").version
        except NotFound:
            holder = None
        if holder != version.version:
            self.promoter.models.set_alias(version.name, version.version, alias, reason=reason)
        return self._end(it, outcome, reason, details=numbers)


class Retry(Exception):
    """A step that cannot be taken now (a watched folder unreachable) and is tried again at
    the next tick; the iteration stays where it is."""


def _orphaned(run: Run) -> bool:
    """A run recorded as running in this very process, which runs one step at a time and is
    not running it now: its run_graph ended without closing it (the store went away under it).
    Nothing else would call it lost while this process lives; it is resumed like a lost one."""
    import os

    from mloop.services.tracking.heartbeat import HEARTBEATS, HOST

    if run.status is not RunStatus.RUNNING or (run.host, run.pid) != (HOST, os.getpid()):
        return False
    return all(run.id not in ids for ids in HEARTBEATS.open_runs().values())


def _with(it: Iteration, gates: list[Any]) -> dict[str, Any]:
    return {**it.numbers, "gates": gates}
