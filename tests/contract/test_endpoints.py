"""The endpoint store's contract (`store.endpoints`) on every implementation: a deployment and
its Event are written together by compare-and-set, read back whole (policy by strategy), listed;
traffic reports add up per version; exactly one holder gets a lease until it expires."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from mloop.domain.analysis import VersionStats, analyse
from mloop.domain.deploy_request import parse_request, plan
from mloop.domain.endpoint import CanaryPolicy, Deployment, EndpointState, Strategy
from mloop.domain.names import ModelRef
from mloop.domain.rollout import advance, ready, rollback
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import T0


def _deploy(
    store: MetadataStore, strategy: str, version: int, options: dict[str, str] | None = None
) -> Deployment:
    current = store.endpoints.find()[0] if store.endpoints.find() else None
    request = parse_request("web", strategy, [ModelRef("churn", version)], options or {})
    decisions = plan(request, current, actor="ana", now=T0 + version)
    store.endpoints.save([(d.deployment, d.event) for d in decisions], expected=current)
    return decisions[-1].deployment


def test_a_deployment_is_read_back_whole_with_its_event(metadata_store: MetadataStore) -> None:
    first = _deploy(metadata_store, "direct", 1)
    canary = _deploy(metadata_store, "canary", 2, {"steps": "20,100", "interval": "5s"})

    assert metadata_store.endpoints.current("web") == canary
    assert isinstance(canary.policy, CanaryPolicy) and canary.policy.steps == (20, 100)
    assert metadata_store.endpoints.deployment("web", 1) == first
    assert metadata_store.endpoints.history("web") == [canary, first]
    assert metadata_store.endpoints.find() == [canary]
    endpoint = metadata_store.endpoints.get("web")
    assert (endpoint.name, endpoint.user, endpoint.created) == ("web", "ana", T0 + 1)
    events = metadata_store.events.find("endpoint/web")
    assert [e.action for e in events] == ["endpoint.deployed", "endpoint.deployed"]
    assert events[0].details["weights"] == {"churn:1": 100, "churn:2": 0}


def test_changes_are_compared_and_set(metadata_store: MetadataStore) -> None:
    _deploy(metadata_store, "direct", 1)
    canary = _deploy(metadata_store, "canary", 2, {"steps": "20,100"})
    moved = ready(canary, now=T0 + 10)
    metadata_store.endpoints.save([(moved.deployment, moved.event)], expected=canary)

    stale = rollback(canary, now=T0 + 11, actor="bob")  # decided from the deployment before
    with pytest.raises(Conflict, match="changed while this was decided"):
        metadata_store.endpoints.save([(stale.deployment, stale.event)], expected=canary)
    assert metadata_store.endpoints.current("web") == moved.deployment
    assert metadata_store.endpoints.current("web").versions[1].weight == 20
    with pytest.raises(Conflict):  # a first deployment of an endpoint that has one
        metadata_store.endpoints.save([(moved.deployment, moved.event)], expected=None)
    assert len(metadata_store.events.find("endpoint/web")) == 3  # nothing of the refused ones


def test_a_forced_deployment_aborts_and_deploys_in_one_call(
    metadata_store: MetadataStore,
) -> None:
    _deploy(metadata_store, "direct", 1)
    canary = _deploy(metadata_store, "canary", 2)
    request = parse_request("web", "direct", [ModelRef("churn", 3)], {}, force=True)
    decisions = plan(request, canary, actor="bob", now=T0 + 20)
    metadata_store.endpoints.save([(d.deployment, d.event) for d in decisions], expected=canary)

    aborted = metadata_store.endpoints.deployment("web", 2)
    assert aborted.state is EndpointState.ROLLED_BACK and "aborted" in aborted.reason
    current = metadata_store.endpoints.current("web")
    assert (current.sequence, current.weights) == (3, {"churn:3": 100})


def test_unknown_endpoints_are_not_found(metadata_store: MetadataStore) -> None:
    for call in (
        lambda: metadata_store.endpoints.get("nope"),
        lambda: metadata_store.endpoints.current("nope"),
        lambda: metadata_store.endpoints.history("nope"),
        lambda: metadata_store.endpoints.deployment("nope", 1),
    ):
        with pytest.raises(NotFound, match="no endpoint 'nope'"):
            call()
    _deploy(metadata_store, "direct", 1)
    with pytest.raises(NotFound, match="no deployment 7"):
        metadata_store.endpoints.deployment("web", 7)


def test_reports_add_up_per_version_within_a_window(metadata_store: MetadataStore) -> None:
    _deploy(metadata_store, "direct", 1)
    canary = _deploy(metadata_store, "canary", 2)
    fast, slow = VersionStats.measured([0.01] * 150), VersionStats.measured([0.9] * 50, errors=5)
    for reporter in ("host-a:1", "host-b:7"):
        metadata_store.endpoints.report(
            "web", 2, reporter, T0 + 30, {"churn:1": fast, "churn:2": slow}
        )
    metadata_store.endpoints.report("web", 2, "host-a:1", T0 + 60, {"churn:2": slow})
    metadata_store.endpoints.report("web", 1, "host-a:1", T0 + 60, {"churn:1": fast})

    both = metadata_store.endpoints.stats("web", 2)
    assert both["churn:1"] == fast + fast
    assert both["churn:2"].requests == 150 and both["churn:2"].errors == 15
    late = metadata_store.endpoints.stats("web", 2, since=T0 + 30, until=T0 + 60)
    assert set(late) == {"churn:2"} and late["churn:2"] == slow
    stable, new = both["churn:1"], both["churn:2"]
    verdicts = analyse(dataclasses.replace(canary.policy, min_requests=10), new, stable)
    assert "success_rate" in {g.gate for g in verdicts.failed}
    assert metadata_store.endpoints.stats("web", 3) == {}
    every = metadata_store.endpoints.stats("web", None, since=T0 + 30)  # of every deployment
    assert every["churn:1"] == fast and every["churn:2"] == slow


def test_outcomes_and_a_shadows_copies_add_up_too(metadata_store: MetadataStore) -> None:
    _deploy(metadata_store, "direct", 1)
    posted = VersionStats(10, outcomes=8, outcome_sum=3.5, outcome_squares=6.25)
    copies = VersionStats(40, errors=1, agreed=30, dropped=2)
    for at in (T0 + 1, T0 + 2):
        metadata_store.endpoints.report("web", 1, "h:1", at, {"churn:1": posted, "churn:2": copies})
    metadata_store.endpoints.report("web", 1, "h:2", T0 + 3, {"churn:2": VersionStats(dropped=5)})
    seen = metadata_store.endpoints.stats("web", 1)
    assert seen["churn:1"] == posted + posted
    assert (seen["churn:2"].agreed, seen["churn:2"].dropped) == (60, 9)  # a drop alone counts


def test_an_ab_tests_last_look_is_kept_per_deployment(metadata_store: MetadataStore) -> None:
    assert metadata_store.endpoints.look("web", 1) is None
    metadata_store.endpoints.save_look("web", 1, T0, {"state": "running", "p": [0.5, None]})
    metadata_store.endpoints.save_look(
        "web", 1, T0 + 5, {"state": "winner", "p": [0.01]}
    )  # replaces
    metadata_store.endpoints.save_look("web", 2, T0 + 6, {"state": "running"})
    assert metadata_store.endpoints.look("web", 1) == (T0 + 5, {"state": "winner", "p": [0.01]})
    assert metadata_store.endpoints.look("web", 2) == (T0 + 6, {"state": "running"})


def test_one_holder_has_the_lease_until_it_expires(metadata_store: MetadataStore) -> None:
    leases = metadata_store.endpoints
    assert leases.lease("web", "a", T0, ttl=10)
    assert leases.lease("web", "a", T0 + 5, ttl=10)  # renewed
    assert not leases.lease("web", "b", T0 + 9, ttl=10)
    assert leases.lease("web", "b", T0 + 16, ttl=10)  # a's ran out at T0 + 15
    assert not leases.lease("web", "a", T0 + 17, ttl=10)
    assert leases.lease("other", "a", T0 + 17, ttl=10)  # per endpoint


def test_racing_holders_get_one_lease(metadata_store: MetadataStore) -> None:
    won: list[str] = []
    start = threading.Barrier(4)

    def take(holder: str) -> None:
        start.wait()
        if metadata_store.endpoints.lease("web", holder, T0, ttl=30):
            won.append(holder)

    threads = [threading.Thread(target=take, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(won) == 1


def test_an_analysis_step_is_saved_with_its_numbers(metadata_store: MetadataStore) -> None:
    _deploy(metadata_store, "direct", 1)
    canary = _deploy(metadata_store, "canary", 2, {"steps": "10,50,100", "min-requests": "10"})
    started = ready(canary, now=T0 + 10)
    metadata_store.endpoints.save([(started.deployment, started.event)], expected=canary)
    seen = VersionStats.measured([0.01] * 40)
    step = advance(started.deployment, analyse(canary.policy, seen, seen), now=T0 + 80)
    metadata_store.endpoints.save([(step.deployment, step.event)], expected=started.deployment)

    now = metadata_store.endpoints.current("web")
    assert now.weights == {"churn:1": 50, "churn:2": 50} and now.step == 1
    (event, *_) = metadata_store.events.find("endpoint/web")
    assert event.action == "endpoint.advanced"
    assert event.details["analysis"]["verdict"] == "pass"
    assert Strategy(now.strategy) is Strategy.CANARY
