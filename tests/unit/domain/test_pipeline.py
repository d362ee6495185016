"""The graph rules: order, cycles, missing inputs, downstream sets and cache keys."""

from __future__ import annotations

import pytest

from mloop.domain.pipeline import (
    Input,
    StepNode,
    StepOptions,
    cache_key,
    downstream,
    order,
    parse_target,
    value_digest,
)
from mloop.errors import PipelineError


def node(name: str, *upstream: str) -> StepNode:
    inputs = tuple((f"in{i}", Input("output", step=up)) for i, up in enumerate(upstream))
    return StepNode(name, f"m:{name}", inputs)


def test_order_puts_every_step_after_what_it_reads() -> None:
    steps = [node("d", "b", "c"), node("c", "a"), node("b", "a"), node("a")]
    names = [s.name for s in order(steps)]
    assert names == ["a", "b", "c", "d"]


def test_a_cycle_is_named() -> None:
    with pytest.raises(PipelineError, match="cycle"):
        order([node("a", "b"), node("b", "a"), node("c")])


def test_an_input_from_an_unknown_step_is_refused() -> None:
    with pytest.raises(PipelineError, match="not a step of this pipeline"):
        order([node("a", "ghost")])


def test_an_output_index_beyond_the_step_s_outputs_is_refused() -> None:
    bad = StepNode("b", "m:b", (("x", Input("output", step="a", output=3)),))
    with pytest.raises(PipelineError, match="output 3"):
        order([node("a"), bad])


def test_downstream_follows_every_path() -> None:
    steps = [node("a"), node("b", "a"), node("c", "b"), node("d")]
    assert downstream(steps, ["a"]) == {"a", "b", "c"}
    assert downstream(steps, ["d"]) == {"d"}


def test_cache_keys_change_with_code_inputs_environment_and_trust_only() -> None:
    base = cache_key("s" * 64, {"x": "i" * 64}, "e" * 64, StepOptions())
    assert base == cache_key("s" * 64, {"x": "i" * 64}, "e" * 64, StepOptions(retries=3))
    assert base != cache_key("t" * 64, {"x": "i" * 64}, "e" * 64, StepOptions())
    assert base != cache_key("s" * 64, {"x": "j" * 64}, "e" * 64, StepOptions())
    assert base != cache_key("s" * 64, {"y": "i" * 64}, "e" * 64, StepOptions())
    assert base != cache_key("s" * 64, {"x": "i" * 64}, "f" * 64, StepOptions())
    assert base != cache_key("s" * 64, {"x": "i" * 64}, "e" * 64, StepOptions(trust=True))


def test_equal_values_have_equal_digests_whatever_the_key_order() -> None:
    assert value_digest({"a": 1, "b": [1, 2]}) == value_digest({"b": [1, 2], "a": 1})
    assert value_digest(1) != value_digest("1")


@pytest.mark.parametrize(
    "target",
    ["../../etc/passwd:x", "pipeline", "pipeline:", ":train", "pipe line:train", "a/b:c", "a:b c"],
    ids=["path", "no-colon", "no-function", "no-module", "space", "slash", "space-in-function"],
)
def test_a_target_that_is_not_module_colon_function_is_refused(target: str) -> None:
    with pytest.raises(PipelineError, match="is not module:function"):
        parse_target(target)


def test_a_dotted_target_is_split_at_the_colon() -> None:
    assert parse_target("pkg.flows:Train.run") == ("pkg.flows", "Train.run")
