"""Tracing pipelines: the graph a body builds, and definition errors found before any run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.errors import PipelineError
from mloop.services.pipelines.dsl import dataset, pipeline, step
from mloop.services.pipelines.fingerprint import source_digest


@step
def load(name: str) -> list:
    return [name]


@step
def split(rows: list) -> tuple[list, list]:
    return rows[:1], rows[1:]


@step
def fit(train: list, depth: int = 3) -> dict:
    return {"n": len(train), "depth": depth}


@step
def nothing(model: dict) -> None:
    return None


@pipeline(metric="n")
def flow(depth: int = 3, source: str = "rows"):
    train, test = split(load(source))
    model = fit(train, depth=depth)
    nothing(model)
    fit(test)


def test_tracing_builds_the_graph_from_the_data_flow() -> None:
    graph = flow.build({"depth": 5})
    assert graph.params == {"depth": 5, "source": "rows"}
    assert [s.name for s in graph.steps] == ["load", "split", "fit", "nothing", "fit-2"]
    fit_node = graph.step("fit")
    assert dict(fit_node.inputs)["train"].step == "split"
    assert dict(fit_node.inputs)["depth"].value == 5
    assert dict(graph.step("fit-2").inputs)["train"].output == 1
    assert graph.step("split").outputs == 2
    assert graph.step("nothing").outputs == 0
    assert graph.metric == "n"


def test_a_step_outside_a_pipeline_is_a_plain_function() -> None:
    assert split(["a", "b", "c"]) == (["a"], ["b", "c"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (lambda: fit(), "cannot be called like this"),
        (lambda: fit([1], depht=3), "cannot be called like this"),
        (lambda: fit(object()), "neither a step output"),
        (lambda: fit([load("x")]), "inside a list"),
        (lambda: bool(load("x")), "not known until the pipeline runs"),
        (lambda: load("x") + 1, "not known until the pipeline runs"),
    ],
    ids=["missing-input", "unknown-argument", "not-json", "nested-output", "branch", "math"],
)
def test_definition_errors_come_before_anything_runs(body, message: str) -> None:
    @pipeline
    def broken():
        body()

    with pytest.raises(PipelineError, match=message):
        broken.build()


def test_unknown_and_missing_params_are_named() -> None:
    with pytest.raises(PipelineError, match="has no param 'depht'"):
        flow.build({"depht": 2})

    @pipeline
    def needs(size: int):
        load(str(size))

    with pytest.raises(PipelineError, match="missing a required argument"):
        needs.build()


def test_a_pipeline_without_steps_is_refused() -> None:
    @pipeline
    def empty():
        return None

    with pytest.raises(PipelineError, match="calls no steps"):
        empty.build()


def test_dataset_names_follow_the_naming_rule() -> None:
    assert dataset("sales", 2).version == 2
    with pytest.raises(Exception, match="invalid dataset name"):
        dataset("Bad_Name")


def test_the_fingerprint_follows_project_helpers_but_not_libraries(tmp_path: Path) -> None:
    before = source_digest(fit.fn, Path(__file__).parent)
    assert before == source_digest(fit.fn, Path(__file__).parent)
    other = source_digest(split.fn, Path(__file__).parent)
    assert before != other
