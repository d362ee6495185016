"""The traffic split: shares follow the weights, a sticky key keeps its version everywhere."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest

from mloop.domain.deploy_request import parse_request, plan
from mloop.domain.endpoint import DeployedVersion, Role
from mloop.domain.names import ModelRef
from mloop.domain.rollout import ready, rollback
from mloop.domain.traffic import Router, mirror
from mloop.errors import InvalidInput

STABLE, CANARY = ModelRef("churn", 3), ModelRef("churn", 4)
Z_999 = 3.2905  # two-sided 99.9% quantile of the normal distribution


def within_999(count: int, n: int, share: float) -> bool:
    """Whether `count` of `n` lies in the 99.9% binomial interval around `share` (the normal
    approximation; n * share is at least 100 in every use here, where it is close)."""
    return abs(count - n * share) <= Z_999 * math.sqrt(n * share * (1 - share))


def canary_router(weight: int) -> Router:
    return Router(
        (
            DeployedVersion(STABLE, Role.STABLE, 100 - weight),
            DeployedVersion(CANARY, Role.CANARY, weight),
        ),
        salt="web",
    )


def keys(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"user-{rng.getrandbits(64):016x}" for _ in range(count)]


@pytest.mark.parametrize("weight", [10, 25, 50, 90])
def test_the_canary_share_of_1000_requests_lies_within_the_999_interval(weight: int) -> None:
    router, rng = canary_router(weight), random.Random(weight)
    share = sum(router.choose(None, rng).model == CANARY for _ in range(1000))
    assert within_999(share, 1000, weight / 100), share


def test_the_interval_check_itself_rejects_a_wrong_share() -> None:
    assert not within_999(150, 1000, 0.10) and not within_999(40, 1000, 0.10)
    assert within_999(100, 1000, 0.10)


@pytest.mark.parametrize("weight", [10, 25, 50, 90])
def test_sticky_shares_over_10000_keys_follow_the_weights(weight: int) -> None:
    router = canary_router(weight)
    share = sum(router.choose(key, random.Random()).model == CANARY for key in keys(10_000))
    assert within_999(share, 10_000, weight / 100), share


def test_a_sticky_key_always_gets_the_same_version() -> None:
    router = canary_router(50)
    again = canary_router(50)  # another process builds its own router from the same deployment
    for key in keys(2000):
        first = router.choose(key, random.Random(1)).model
        assert router.choose(key, random.Random(2)).model == first
        assert again.choose(key.encode(), random.Random(3)).model == first


def test_a_sticky_key_gets_the_same_version_in_another_process() -> None:
    sample = keys(200, seed=7)
    here = [str(canary_router(50).choose(k, random.Random()).model) for k in sample]
    script = (
        "import json, random, sys\n"
        "from mloop.domain.endpoint import DeployedVersion, Role\n"
        "from mloop.domain.names import ModelRef\n"
        "from mloop.domain.traffic import Router\n"
        "r = Router((DeployedVersion(ModelRef('churn', 3), Role.STABLE, 50),"
        " DeployedVersion(ModelRef('churn', 4), Role.CANARY, 50)), salt='web')\n"
        "keys = json.loads(sys.stdin.read())\n"
        "print(json.dumps([str(r.choose(k, random.Random()).model) for k in keys]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # Python's own hash() would differ here
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == here
    assert 50 < here.count("churn:4") < 150  # and the sample really spans both versions


def test_the_endpoint_salts_the_hash() -> None:
    a = canary_router(50)
    b = Router(a.versions, salt="search")
    sample = keys(1000)
    differ = sum(
        a.choose(k, random.Random()).model != b.choose(k, random.Random()).model for k in sample
    )
    assert within_999(differ, 1000, 0.5)  # independent assignments: half of them differ


def test_the_users_of_a_canary_keep_it_as_its_weight_grows() -> None:
    sample, rng = keys(5000), random.Random()
    routers = {w: canary_router(w) for w in (10, 25, 50)}
    at = {w: {k for k in sample if r.choose(k, rng).model == CANARY} for w, r in routers.items()}
    assert at[10] and at[10] <= at[25] <= at[50]


def test_a_weight_of_0_never_gets_traffic() -> None:
    zero = DeployedVersion(ModelRef("churn", 9), Role.CANARY, 0)
    router = Router(
        (DeployedVersion(STABLE, Role.STABLE, 50), zero, DeployedVersion(CANARY, Role.VARIANT, 50))
    )
    rng = random.Random(0)
    chosen = [router.choose(None, rng) for _ in range(5000)] + [
        router.choose(k, rng) for k in keys(5000)
    ]
    assert zero not in chosen
    assert {v.model for v in chosen} == {STABLE, CANARY}


def test_a_router_needs_a_version_that_takes_traffic() -> None:
    with pytest.raises(InvalidInput, match="every weight is 0"):
        Router((DeployedVersion(STABLE, Role.STABLE, 0),))


def test_a_version_not_ready_gives_its_share_to_the_largest_ready_one() -> None:
    direct = parse_request("web", "direct", [STABLE], {})
    canary = parse_request("web", "canary", [CANARY], {"steps": "25"})
    (first,) = plan(direct, None, actor="ana", now=0.0)
    (second,) = plan(canary, first.deployment, actor="ana", now=1.0)
    deployment = ready(second.deployment, now=2.0).deployment
    waiting = Router.for_deployment(deployment, ready={STABLE})
    assert [(v.model, v.weight) for v in waiting.versions] == [(STABLE, 100)]
    everyone = Router.for_deployment(deployment)
    assert [v.weight for v in everyone.versions] == [75, 25]
    with pytest.raises(InvalidInput, match="no version of endpoint 'web'"):
        Router.for_deployment(deployment, ready=set())


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_a_shadow_gets_its_fraction_of_requests(fraction: float) -> None:
    rng = random.Random(11)
    copies = sum(mirror(fraction, rng) for _ in range(10_000))
    assert within_999(copies, 10_000, fraction), copies


def test_a_full_shadow_gets_every_request_and_none_gets_none() -> None:
    rng = random.Random(0)
    assert all(mirror(1.0, rng) for _ in range(1000))
    assert not any(mirror(0.0, rng) for _ in range(1000))


def test_each_deployment_draws_its_own_assignment_and_every_server_the_same() -> None:
    direct = parse_request("web", "direct", [STABLE], {})
    test = parse_request("web", "ab", [STABLE, CANARY], {"sticky": "header:x-user"})
    (first,) = plan(direct, None, actor="ana", now=0.0)
    (second,) = plan(test, first.deployment, actor="ana", now=1.0)
    (third,) = plan(
        test, rollback(second.deployment, now=2.0, actor="ana").deployment, actor="ana", now=3.0
    )
    sample, rng = keys(1000), random.Random()
    a, b = (Router.for_deployment(d.deployment) for d in (second, third))
    again = Router.for_deployment(second.deployment)  # another server, same deployment
    assert all(a.choose(k, rng) == again.choose(k, rng) for k in sample)
    differ = sum(a.choose(k, rng).model != b.choose(k, rng).model for k in sample)
    assert within_999(differ, 1000, 0.5)  # the next test is randomised afresh
