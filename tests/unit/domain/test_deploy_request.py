"""Deploy options as people type them: durations, steps, weights, keys, and which go together."""

from __future__ import annotations

import json

import pytest

from mloop.domain.abtest import OutcomeKind
from mloop.domain.deploy_request import (
    parse_latency_bound,
    parse_request,
    parse_steps,
    parse_weights,
)
from mloop.domain.durations import format_duration, parse_duration
from mloop.domain.endpoint import (
    POLICIES,
    ABPolicy,
    BlueGreenPolicy,
    CanaryPolicy,
    DeployedVersion,
    Deployment,
    EndpointState,
    KeySource,
    LatencyBound,
    Role,
    ShadowPolicy,
    StickyKey,
    Strategy,
)
from mloop.domain.names import ModelRef
from mloop.domain.records import from_plain, to_plain
from mloop.errors import InvalidAddress, InvalidInput

V3, V4, V5 = ModelRef("churn", 3), ModelRef("churn", 4), ModelRef("churn", 5)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("60s", 60.0), ("10m", 600.0), ("1h", 3600.0), ("1.5m", 90.0), (" 2S ", 2.0)],
)
def test_durations_read_with_their_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    "text",
    ["0s", "0ms", "-1s", "nan", "inf", "infs", "60", "1e3s", "١٠s", "10d", "800h", "", "s", "1 s"],
    ids=lambda t: repr(t),
)
def test_a_bad_duration_is_refused_with_the_option_and_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text, "--interval")
    assert "--interval" in caught.value.message
    assert "500ms, 60s, 10m, 1h" in (caught.value.hint or "")


@pytest.mark.parametrize("seconds", [0.001, 0.1 + 0.2, 1.0005, 59.999, 7200.0, 86400.0 * 31])
def test_any_duration_is_written_so_it_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("10,25,50,100", (10, 25, 50, 100)),
        ("10,50", (10, 50, 100)),
        (" 5 , 100 ", (5, 100)),
        ("100", (100,)),
    ],
)
def test_steps_climb_to_100(text: str, steps: tuple[int, ...]) -> None:
    assert parse_steps(text) == steps


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("10,10,50", "not strictly increasing"),
        ("50,25", "not strictly increasing"),
        ("0,50", "from 1 to 100"),
        ("10,101", "from 1 to 100"),
        ("10,-5", "from 1 to 100"),
        ("10,,50", "from 1 to 100"),
        ("١٠,50", "from 1 to 100"),
        ("10.5,50", "from 1 to 100"),
    ],
)
def test_bad_steps_say_why(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why) as caught:
        parse_steps(text)
    assert "--steps 10,25,50,100" in (caught.value.hint or "")


def test_weights_are_one_whole_percent_per_model_summing_to_100() -> None:
    assert parse_weights("50,50", 2) == (50, 50)
    assert parse_weights("20, 30,50", 3) == (20, 30, 50)
    with pytest.raises(InvalidInput, match="sums to 90, not 100") as caught:
        parse_weights("50,40", 2)
    assert caught.value.hint == "give one weight per model, summing to 100: --weights 50,50"
    with pytest.raises(InvalidInput, match="2 weights for 3 models"):
        parse_weights("50,50", 3)
    for bad in ("0,100", "٥0,50", "50.0,50", "-50,150"):
        with pytest.raises(InvalidInput, match="--weights"):
            parse_weights(bad, 2)


def test_a_p99_bound_is_a_time_or_a_factor_of_stable() -> None:
    assert parse_latency_bound("500ms") == LatencyBound(0.5)
    assert parse_latency_bound("2x") == LatencyBound(2.0, relative=True)
    assert str(parse_latency_bound("1.5X")) == "1.5x" and str(LatencyBound(0.75)) == "750ms"
    assert LatencyBound(2.0, relative=True).bound(0.1) == 0.2
    assert LatencyBound(2.0, relative=True).bound(None) is None
    for bad in ("0.5x", "nanx", "x", "500", "0ms", "200x"):
        with pytest.raises(InvalidInput, match="--max-p99"):
            parse_latency_bound(bad)


def test_a_sticky_key_is_a_header_or_a_field() -> None:
    assert StickyKey.parse("header:X-User-Id") == StickyKey(KeySource.HEADER, "x-user-id")
    assert StickyKey.parse("field:user_id") == StickyKey(KeySource.FIELD, "user_id")
    assert str(StickyKey.parse("field:User.Id")) == "field:User.Id"
    for bad in ("cookie:x", "header:", "header:a b", "user_id", "field:a:b", "header:\n"):
        with pytest.raises(InvalidInput, match="sticky key") as caught:
            StickyKey.parse(bad)
        assert "header:NAME" in (caught.value.hint or "")


def test_a_canary_request_takes_flaggers_defaults_and_reads_every_option() -> None:
    assert parse_request("web", "canary", [V4], {}).policy == CanaryPolicy()
    assert CanaryPolicy() == CanaryPolicy(
        (10, 25, 50, 100), 60.0, 5, 100, 99.0, LatencyBound(0.5), 3600.0
    )
    options = {
        "steps": "20,60",
        "interval": "2s",
        "threshold": "3",
        "min-requests": "50",
        "min-success-rate": "99.5",
        "max-p99": "2x",
        "deadline": "5m",
        "accuracy-margin": "0.02",
        "min-labels": "30",
    }
    policy = parse_request("web", "canary", [V4], options).policy
    assert policy == CanaryPolicy(
        (20, 60, 100), 2.0, 3, 50, 99.5, LatencyBound(2.0, True), 300.0, 0.02, 30
    )


def test_other_strategies_read_their_options() -> None:
    assert parse_request("web", "blue_green", [V4], {"keep": "30s"}).policy == BlueGreenPolicy(30)
    assert parse_request("web", "shadow", [V4], {"fraction": "0.2"}).policy == ShadowPolicy(0.2)
    ab = parse_request("web", "ab", [V3, V4], {"weights": "90,10", "sticky": "header:x-user"})
    assert ab.weights == (90, 10)
    assert ab.policy == ABPolicy(StickyKey(KeySource.HEADER, "x-user"), 0.05)
    assert parse_request("web", "ab", [V3, V4, V5], {}).weights == (34, 33, 33)
    means = parse_request("web", "ab", [V3, V4], {"outcome": "mean", "alpha": "0.01"}).policy
    assert means == ABPolicy(None, 0.01, OutcomeKind.MEAN)
    with pytest.raises(InvalidInput, match="--outcome 'clicks' is not an outcome kind") as bad:
        parse_request("web", "ab", [V3, V4], {"outcome": "clicks"})
    assert "--outcome mean" in (bad.value.hint or "")
    direct = parse_request("web", "direct", [V3], {})
    assert direct.policy is None and direct.strategy is Strategy.DIRECT


@pytest.mark.parametrize(
    ("strategy", "models", "options", "message", "hint"),
    [
        (
            "canary",
            [V4],
            {"weights": "50,50"},
            "--weights is an option of --strategy ab, not of canary",
            "--strategy ab",
        ),
        (
            "direct",
            [V4],
            {"steps": "10,100"},
            "--steps is an option of --strategy canary",
            "drop --steps",
        ),
        (
            "canary",
            [V4],
            {"keep": "10m"},
            "--keep is an option of --strategy blue_green",
            "drop --keep",
        ),
        (
            "ab",
            [V3, V4],
            {"fraction": "0.5"},
            "--fraction is an option of --strategy shadow",
            "drop",
        ),
        (
            "canary",
            [V4],
            {"colour": "red"},
            "--colour is not an option of mloop deploy",
            "drop --colour",
        ),
        ("ab", [V3], {}, "an ab test takes 2 to 10 models, not 1", "--weights 50,50"),
        ("ab", [V3, V3], {}, "churn:3 is named twice", "once"),
        ("canary", [V3, V4], {}, "--strategy canary deploys one model, not 2", "--strategy ab"),
        ("rolling", [V3], {}, "unknown strategy 'rolling'", "direct|blue_green|canary|ab|shadow"),
        ("ab", [V3, V4], {"weights": "60,60"}, "sums to 120", "--weights 50,50"),
        ("shadow", [V4], {"fraction": "0"}, "--fraction '0' is not a number above 0", "--fraction"),
        ("shadow", [V4], {"fraction": "1.5"}, "and at most 1", "--fraction"),
        ("shadow", [V4], {"fraction": "nan"}, "--fraction 'nan'", "--fraction"),
        ("canary", [V4], {"min-success-rate": "101"}, "from 0 to 100", "--min-success-rate"),
        (
            "canary",
            [V4],
            {"threshold": "0"},
            "--threshold '0' is not a whole number",
            "--threshold",
        ),
        ("canary", [V4], {"min-requests": "1e3"}, "--min-requests '1e3'", "--min-requests"),
        ("canary", [V4], {"interval": "0s"}, "--interval '0s' is out of range", "60s"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_request_that_does_not_fit_its_strategy_is_refused(
    strategy: str, models: list[ModelRef], options: dict[str, str], message: str, hint: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request("web", strategy, models, options)
    assert message in caught.value.message
    assert hint in (caught.value.hint or "")


def test_a_deployment_holds_exact_versions_only() -> None:
    with pytest.raises(InvalidAddress, match="exact versions, not 'churn@champion'"):
        DeployedVersion(ModelRef("churn", alias="champion"), Role.STABLE, 100)


@pytest.mark.parametrize(
    "policy",
    [
        None,
        CanaryPolicy(max_p99=LatencyBound(2.0, True), accuracy_margin=0.01),
        BlueGreenPolicy(30.0),
        ABPolicy(StickyKey(KeySource.FIELD, "user_id"), 0.01),
        ABPolicy(),
        ShadowPolicy(0.25),
    ],
    ids=lambda p: type(p).__name__,
)
def test_a_deployment_round_trips_through_json_in_the_shape_status_shows(policy: object) -> None:
    deployment = Deployment(
        "web",
        2,
        Strategy.CANARY,
        (DeployedVersion(V3, Role.STABLE, 75), DeployedVersion(V4, Role.CANARY, 25)),
        EndpointState.PROGRESSING,
        "ana",
        1.0,
        2.5,
        policy,  # type: ignore[arg-type]
        "passed at 10%",
        step=1,
        failures=2,
        started=1.5,
    )
    plain = json.loads(json.dumps(to_plain(deployment), allow_nan=False))
    assert plain["versions"] == [
        {"model": "churn:3", "role": "stable", "weight": 75},
        {"model": "churn:4", "role": "canary", "weight": 25},
    ]
    assert plain["state"] == "progressing" and plain["strategy"] == "canary"
    assert from_plain(Deployment, plain) == deployment


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_stored_policy_is_read_back_by_its_strategy(strategy: Strategy) -> None:
    models = [V3, V4] if strategy is Strategy.AB else [V4]
    policy = parse_request("web", strategy, models, {}).policy
    kind = POLICIES[strategy]
    assert (policy is None) if kind is None else isinstance(policy, kind)
    if kind is not None:
        assert from_plain(kind, json.loads(json.dumps(to_plain(policy)))) == policy
