"""The rollout state machine: each transition, and whole canaries driven by simulated traffic."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from mloop.domain.analysis import GateCheck, StepAnalysis, Verdict, VersionStats, analyse
from mloop.domain.deploy_request import parse_request, plan
from mloop.domain.endpoint import (
    CanaryPolicy,
    DeployedVersion,
    Deployment,
    EndpointState,
    Role,
    loaded,
)
from mloop.domain.names import ModelRef
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
from mloop.domain.traffic import Router
from mloop.errors import Conflict, InvalidInput

V3, V4, V5 = ModelRef("churn", 3), ModelRef("churn", 4), ModelRef("churn", 5)
FAST = {"interval": "1s", "threshold": "3", "min-requests": "50", "deadline": "30s"}
PASS = StepAnalysis(Verdict.PASS, (GateCheck("p99", Verdict.PASS, 0.02, 0.5, "p99 20ms"),))
FAIL = StepAnalysis(Verdict.FAIL, (GateCheck("success_rate", Verdict.FAIL, 95.0, 99.0, "95%"),))
NO_DATA = StepAnalysis(Verdict.NO_DATA, (GateCheck("requests", Verdict.NO_DATA, 3.0, 50.0, "3"),))


def deploy(
    strategy: str, models: list[ModelRef], current: Deployment | None, **options: str
) -> Deployment:
    request = parse_request(
        "web", strategy, models, {k.replace("_", "-"): v for k, v in options.items()}
    )
    decisions = plan(request, current, actor="ana", now=100.0)
    return decisions[-1].deployment


def serving_v3() -> Deployment:
    return deploy("direct", [V3], None)


def canary(**options: str) -> Deployment:
    """A canary of churn:4 on churn:3, ready at t=200 with its first step."""
    return ready(deploy("canary", [V4], serving_v3(), **{**FAST, **options}), now=200.0).deployment


def weights(deployment: Deployment) -> dict[str, int]:
    return deployment.weights


def test_a_direct_deployment_serves_its_version_alone_at_once() -> None:
    (decision,) = plan(parse_request("web", "direct", [V3], {}), None, actor="ana", now=5.0)
    d = decision.deployment
    assert (d.sequence, d.state, weights(d), d.started) == (
        1,
        EndpointState.STABLE,
        {"churn:3": 100},
        5.0,
    )
    event = decision.event
    assert (event.action, event.ref, event.actor, event.at) == (
        "endpoint.deployed",
        "endpoint/web",
        "ana",
        5.0,
    )
    assert event.details["weights"] == {"churn:3": 100} and event.details["deployment"] == 1


def test_a_canary_starts_at_0_until_ready_then_takes_its_first_step() -> None:
    d = deploy("canary", [V4], serving_v3(), **FAST)
    assert (d.sequence, d.state, d.started) == (2, EndpointState.PROGRESSING, None)
    assert [(v.role, v.weight) for v in d.versions] == [(Role.STABLE, 100), (Role.CANARY, 0)]
    assert V4 in {v.model for v in loaded(d)}  # loaded and checked before it gets traffic
    up = ready(d, now=200.0)
    assert up.action == "endpoint.ready" and weights(up.deployment) == {
        "churn:3": 90,
        "churn:4": 10,
    }
    assert (up.deployment.started, up.deployment.step) == (200.0, 0)
    with pytest.raises(Conflict, match="already got"):
        ready(up.deployment, now=201.0)


def test_a_rollout_needs_a_serving_version_and_a_different_one() -> None:
    with pytest.raises(InvalidInput, match="serves nothing yet") as caught:
        deploy("canary", [V4], None)
    assert caught.value.hint == "deploy one first: mloop deploy web churn:4 --strategy direct"
    with pytest.raises(InvalidInput, match="churn:3 already serves endpoint 'web'"):
        deploy("blue_green", [V3], serving_v3())


def test_passing_intervals_climb_the_steps_then_promote() -> None:
    d = canary()
    seen = []
    for at in (201.0, 202.0, 203.0):
        decision = advance(d, PASS, now=at)
        d = decision.deployment
        seen.append((decision.action, weights(d)))
    assert seen == [
        ("endpoint.advanced", {"churn:3": 75, "churn:4": 25}),
        ("endpoint.advanced", {"churn:3": 50, "churn:4": 50}),
        ("endpoint.promoted", {"churn:4": 100}),
    ]
    assert d.state is EndpointState.PROMOTED and d.versions == (
        DeployedVersion(V4, Role.STABLE, 100),
    )
    assert decision.details["retired"] == ["churn:3"] and decision.details["weight"] == 50
    assert decision.details["analysis"]["gates"][0]["detail"] == "p99 20ms"
    assert decision.event.actor == ROLLOUT_ACTOR and "passed at 50%" in decision.reason


def test_failures_count_in_a_row_and_roll_back_at_the_threshold_naming_the_gate() -> None:
    d = canary()
    d = advance(d, FAIL, now=201.0).deployment
    d = advance(d, FAIL, now=202.0).deployment
    assert (d.failures, d.state, weights(d)["churn:4"]) == (2, EndpointState.PROGRESSING, 10)
    assert d.reason.startswith("success_rate failed at 10% (2 of 3)")
    last = advance(d, FAIL, now=203.0)
    assert (
        last.action == "endpoint.rolled_back" and last.deployment.state is EndpointState.ROLLED_BACK
    )
    assert weights(last.deployment) == {"churn:3": 100, "churn:4": 0}
    assert last.reason.startswith("success_rate failed 3 intervals in a row at 10%")
    assert loaded(last.deployment) == (DeployedVersion(V3, Role.STABLE, 100),)  # the canary goes


def test_a_pass_breaks_a_run_of_failures_and_no_data_neither_counts_nor_breaks_it() -> None:
    d = canary()
    for analysis in (FAIL, FAIL, PASS):
        d = advance(d, analysis, now=201.0).deployment
    assert (d.failures, weights(d)["churn:4"]) == (0, 25)
    for analysis in (FAIL, NO_DATA, FAIL):
        d = advance(d, analysis, now=202.0).deployment
    assert (d.failures, d.state, weights(d)["churn:4"]) == (2, EndpointState.PROGRESSING, 25)


def test_no_data_never_promotes_and_the_deadline_rolls_back() -> None:
    d = canary()  # deadline 30s from t=200
    for at in range(201, 230):
        decision = advance(d, NO_DATA, now=float(at))
        d = decision.deployment
        assert decision.action == "endpoint.held" and weights(d)["churn:4"] == 10
    late = advance(d, NO_DATA, now=230.0)
    assert late.action == "endpoint.rolled_back" and weights(late.deployment)["churn:4"] == 0
    assert late.reason == "deadline: canary at 10% after 30s, not promoted within 30s"
    assert late.details["analysis"]["verdict"] == "no_data"


def test_the_deadline_counts_from_creation_while_the_canary_never_became_ready() -> None:
    d = deploy("canary", [V4], serving_v3(), **FAST)  # created at t=100, never ready
    assert tick(d, now=129.0) is None
    late = tick(d, now=130.0)
    assert late is not None and late.deployment.state is EndpointState.ROLLED_BACK
    assert late.reason.startswith("deadline: canary at 0%")


def simulate(
    behaviour: Callable[[random.Random], tuple[float, bool]], per_interval: int = 2000
) -> tuple[list[Decision], int]:
    """Drive a canary with simulated requests, split by the Router, one analysis per interval,
    until it settles; the canary's requests are shaped by `behaviour` (latency, 5xx)."""
    d, rng, decisions = canary(), random.Random(42), []
    for interval in range(1, 20):
        router = Router.for_deployment(d)
        seen: dict[ModelRef, tuple[list[float], int]] = {V3: ([], 0), V4: ([], 0)}
        for _ in range(per_interval):
            model = router.choose(None, rng).model
            latency, error = behaviour(rng) if model == V4 else (rng.uniform(0.01, 0.05), False)
            latencies, errors = seen[model]
            latencies.append(latency)
            seen[model] = (latencies, errors + error)
        stats = {m: VersionStats.measured(lat, err) for m, (lat, err) in seen.items()}
        decision = advance(d, analyse(d.policy, stats[V4], stats[V3]), now=200.0 + interval)  # type: ignore[arg-type]
        decisions.append(decision)
        d = decision.deployment
        if d.state is not EndpointState.PROGRESSING:
            return decisions, interval
    raise AssertionError(f"the canary never settled: {d}")


def test_a_canary_answering_5xx_on_5_percent_is_rolled_back_within_threshold_plus_one() -> None:
    decisions, intervals = simulate(lambda rng: (rng.uniform(0.01, 0.05), rng.random() < 0.05))
    last = decisions[-1]
    assert intervals <= 3 + 1 and last.action == "endpoint.rolled_back"
    assert weights(last.deployment)["churn:4"] == 0 and "success_rate" in last.reason
    gate = next(g for g in last.details["analysis"]["gates"] if g["gate"] == "success_rate")
    assert gate["verdict"] == "fail" and 90 < gate["observed"] < 99 and gate["bound"] == 99


def test_a_canary_adding_600ms_is_rolled_back_within_threshold_plus_one() -> None:
    decisions, intervals = simulate(lambda rng: (rng.uniform(0.01, 0.05) + 0.6, False))
    last = decisions[-1]
    assert intervals <= 3 + 1 and last.action == "endpoint.rolled_back"
    assert weights(last.deployment)["churn:4"] == 0 and last.reason.startswith("p99 failed")


def test_a_healthy_canary_is_promoted_by_simulated_traffic() -> None:
    decisions, intervals = simulate(lambda rng: (rng.uniform(0.01, 0.05), False))
    assert intervals == 3 and [d.action for d in decisions][-1] == "endpoint.promoted"


def test_blue_green_moves_all_traffic_at_once_keeps_blue_then_retires_it() -> None:
    d = deploy("blue_green", [V4], serving_v3(), keep="10m")
    assert [(v.role, v.weight) for v in d.versions] == [(Role.BLUE, 100), (Role.GREEN, 0)]
    switched = ready(d, now=200.0)
    d = switched.deployment
    assert weights(d) == {"churn:3": 0, "churn:4": 100} and d.state is EndpointState.PROGRESSING
    assert switched.reason == "green churn:4 ready: all traffic moved; blue kept 10m"
    assert {v.model for v in loaded(d)} == {V3, V4}  # blue stays loaded
    assert tick(d, now=799.0) is None
    done = tick(d, now=800.0)
    assert done is not None and done.action == "endpoint.promoted"
    assert done.deployment.versions == (DeployedVersion(V4, Role.STABLE, 100),)
    with pytest.raises(Conflict, match="is promoted: the version before it is retired"):
        rollback(done.deployment, now=801.0, actor="ana")


def test_blue_green_rolls_back_instantly_while_blue_is_kept() -> None:
    d = ready(deploy("blue_green", [V4], serving_v3(), keep="10m"), now=200.0).deployment
    back = rollback(d, now=300.0, actor="ana", reason="bad answers")
    assert back.deployment.state is EndpointState.ROLLED_BACK and back.event.actor == "ana"
    assert back.deployment.versions == (
        DeployedVersion(V3, Role.STABLE, 100),
        DeployedVersion(V4, Role.GREEN, 0),
    )
    assert back.reason == "bad answers"


def test_a_canary_is_promoted_or_rolled_back_by_hand_at_any_step() -> None:
    up = promote(canary(), now=210.0, actor="ana")
    assert up.deployment.versions == (DeployedVersion(V4, Role.STABLE, 100),)
    assert up.reason == "churn:4 promoted by hand" and up.event.actor == "ana"
    down = rollback(canary(), now=210.0, actor="ana")
    assert weights(down.deployment) == {"churn:3": 100, "churn:4": 0}
    with pytest.raises(Conflict, match="is rolled_back, not progressing"):
        promote(down.deployment, now=211.0, actor="ana")
    with pytest.raises(InvalidInput, match="churn:5 is not the new version"):
        promote(canary(), now=210.0, actor="ana", winner=V5)


def test_a_new_version_that_never_becomes_ready_fails_and_gets_nothing() -> None:
    failed = fail(deploy("canary", [V4], serving_v3(), **FAST), now=150.0, reason="readiness: 500")
    assert failed.action == "endpoint.failed" and failed.deployment.state is EndpointState.FAILED
    assert weights(failed.deployment) == {"churn:3": 100, "churn:4": 0}
    assert failed.deployment.reason == "readiness: 500"


def test_an_ab_test_names_its_winner_to_promote_and_rolls_back_to_the_control() -> None:
    d = deploy("ab", [V3, V4, V5], serving_v3(), weights="50,25,25", sticky="header:x-user")
    assert [(v.role, v.weight) for v in d.versions] == [(Role.VARIANT, w) for w in (50, 25, 25)]
    assert d.state is EndpointState.PROGRESSING and d.started == 100.0
    with pytest.raises(InvalidInput, match="name the winner") as caught:
        promote(d, now=300.0, actor="ana")
    assert "--winner churn:5" in (caught.value.hint or "")
    won = promote(d, now=300.0, actor="ana", winner=V4)
    assert won.deployment.versions == (DeployedVersion(V4, Role.STABLE, 100),)
    assert won.details["retired"] == ["churn:3", "churn:5"]
    back = rollback(d, now=300.0, actor="ana")
    assert weights(back.deployment) == {"churn:3": 100, "churn:4": 0, "churn:5": 0}


def test_a_shadow_is_loaded_at_0_and_promoted_in_place_of_stable() -> None:
    d = deploy("shadow", [V4], serving_v3(), fraction="0.2")
    assert [(v.model, v.role, v.weight) for v in d.versions] == [
        (V3, Role.STABLE, 100),
        (V4, Role.SHADOW, 0),
    ]
    assert {v.model for v in loaded(d)} == {V3, V4}
    assert promote(d, now=300.0, actor="ana").deployment.versions == (
        DeployedVersion(V4, Role.STABLE, 100),
    )
    assert loaded(rollback(d, now=300.0, actor="ana").deployment) == (
        DeployedVersion(V3, Role.STABLE, 100),
    )


def test_a_second_deployment_during_a_rollout_is_refused_unless_forced() -> None:
    running = canary()
    request = parse_request("web", "direct", [V5], {})
    with pytest.raises(Conflict, match="has a canary rollout in progress") as caught:
        plan(request, running, actor="ana", now=300.0)
    assert "churn:3 at 90%, churn:4 at 10%" in caught.value.message
    assert "--force" in (caught.value.hint or "")
    forced = parse_request("web", "canary", [V5], FAST, force=True)
    aborted, new = plan(forced, running, actor="ana", now=300.0)
    assert aborted.action == "endpoint.aborted" and aborted.reason == "aborted by deployment 3"
    assert weights(aborted.deployment) == {"churn:3": 100, "churn:4": 0}
    assert new.deployment.sequence == 3  # a canary of churn:5 on churn:3, which serves again
    assert [(v.model, v.weight) for v in new.deployment.versions] == [(V3, 100), (V5, 0)]


def test_transitions_refuse_the_wrong_strategy_or_state() -> None:
    with pytest.raises(Conflict, match="is stable, not progressing"):
        ready(serving_v3(), now=1.0)
    with pytest.raises(Conflict, match="is stable: the version before it is retired"):
        rollback(serving_v3(), now=1.0, actor="ana")
    with pytest.raises(Conflict, match="runs a blue_green deployment, not canary"):
        advance(ready(deploy("blue_green", [V4], serving_v3()), now=200.0).deployment, PASS, 201.0)
    with pytest.raises(Conflict, match="has no traffic yet"):
        advance(deploy("canary", [V4], serving_v3()), PASS, 201.0)
    assert tick(serving_v3(), now=1e9) is None


def test_wake_at_says_when_the_next_decision_is_due() -> None:
    waiting = deploy("canary", [V4], serving_v3(), **FAST)  # created at 100, deadline 30s
    assert wake_at(waiting) == 130.0
    d = canary()  # ready at 200, interval 1s
    assert wake_at(d) == 201.0
    d = advance(d, PASS, now=201.5).deployment
    assert wake_at(d) == 202.5
    late = dataclasses.replace(d, updated=229.5)
    assert wake_at(late) == 230.0  # the deadline comes before the next interval
    bg = ready(deploy("blue_green", [V4], serving_v3(), keep="10m"), now=200.0).deployment
    assert wake_at(bg) == 800.0
    assert wake_at(deploy("ab", [V3, V4], serving_v3())) is None  # only people end an ab test
    assert wake_at(serving_v3()) is None
    assert wake_at(rollback(d, now=300.0, actor="ana").deployment) is None


def test_a_canary_whose_only_step_is_100_is_promoted_once_ready() -> None:
    d = deploy("canary", [V4], serving_v3(), steps="100")
    assert d.policy == CanaryPolicy(steps=(100,))
    up = ready(d, now=200.0)
    assert up.action == "endpoint.promoted" and weights(up.deployment) == {"churn:4": 100}
