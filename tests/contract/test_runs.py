"""The run store's contract (`store.runs`) on every implementation (ids `sqlite`, `postgres`):
runs read back as created, their data, their end, their children and their lineage.

Records are built straight from mloop.domain and go in and out through
`open_metadata_store(uri)`, as the services use the store."""

from __future__ import annotations

import math

import pytest

from mloop.domain.event import Event
from mloop.domain.query import parse_filter
from mloop.domain.run import Metric, RunInput, RunOutput, RunStatus
from mloop.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import HUGE, T0, TOO_BIG, add_run, digest, make_run, started


def test_run_reads_back_as_created_by_id_and_unique_prefix(metadata_store: MetadataStore) -> None:
    run = make_run(
        "baseline",
        params={"lr": "0.1", "model": "rf"},
        tags={"team": "vision"},
        metrics={"loss": Metric("loss", 0.25, 3, T0 + 1)},
    )
    metadata_store.runs.create(run, started(run))
    add_run(metadata_store, "other")

    assert metadata_store.runs.get(run.id) == run
    assert metadata_store.runs.get(run.id[:6]) == run
    assert metadata_store.runs.get(run.id.upper()) == run


def test_ambiguous_run_prefix_is_invalid_input(metadata_store: MetadataStore) -> None:
    first = add_run(metadata_store, id="abcd" + "0" * 28)
    second = add_run(metadata_store, id="abcd" + "1" * 28)

    with pytest.raises(InvalidInput, match="ambiguous"):
        metadata_store.runs.get("abcd")
    assert metadata_store.runs.get("abcd0").id == first.id
    assert metadata_store.runs.get("abcd1").id == second.id


@pytest.mark.parametrize("ref", ["f" * 32, "ffff"], ids=["full-id", "prefix"])
def test_unknown_run_is_not_found(metadata_store: MetadataStore, ref: str) -> None:
    add_run(metadata_store, id="0" * 32)

    with pytest.raises(NotFound):
        metadata_store.runs.get(ref)


def test_creating_a_run_twice_is_refused_without_an_event(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store, "first")

    with pytest.raises(AlreadyExists):
        metadata_store.runs.create(make_run("second", id=run.id), started(run))
    assert metadata_store.runs.get(run.id).name == "first"
    assert len(metadata_store.events.find(f"run/{run.id}")) == 1


def test_a_run_with_an_unknown_parent_is_refused(metadata_store: MetadataStore) -> None:
    run = make_run(parent_id="f" * 32)

    with pytest.raises(NotFound, match="parent"):
        metadata_store.runs.create(run, started(run))
    assert metadata_store.runs.count() == 0
    assert metadata_store.events.find() == []


def test_run_data_accumulates_and_latest_metric_has_the_highest_step(
    metadata_store: MetadataStore,
) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(
        run.id,
        params=[("lr", "0.1")],
        tags=[("stage", "dev")],
        metrics=[
            Metric("loss", 0.9, 0, T0),
            Metric("loss", 0.5, 5, T0 + 5),
            Metric("loss", 0.7, 2, T0 + 2),
        ],
    )
    metadata_store.runs.write_data(
        run.id,
        params=[("lr", "0.1"), ("depth", "3")],  # logging the same value again is fine
        tags=[("stage", "prod")],
        metrics=[Metric("loss", 0.6, 4, T0 + 10), Metric("acc", 0.8, 0, T0 + 10)],
    )

    got = metadata_store.runs.get(run.id)
    assert got.params == {"lr": "0.1", "depth": "3"}
    assert got.tags == {"stage": "prod"}
    assert got.metrics == {
        "loss": Metric("loss", 0.5, 5, T0 + 5),
        "acc": Metric("acc", 0.8, 0, T0 + 10),
    }
    history = metadata_store.runs.metric_history(run.id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (2, 0.7), (4, 0.6), (5, 0.5)]
    assert metadata_store.runs.metric_history(run.id, "never-logged") == []


def test_at_the_same_step_the_later_metric_wins(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, metrics=[Metric("acc", 0.1, 7, T0)])
    metadata_store.runs.write_data(run.id, metrics=[Metric("acc", 0.2, 7, T0 + 1)])
    metadata_store.runs.write_data(run.id, metrics=[Metric("acc", 0.3, 7, T0 - 1)])

    assert metadata_store.runs.get(run.id).metrics["acc"].value == 0.2


def test_nan_is_stored_and_read_back_as_none(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(
        run.id,
        metrics=[
            Metric("loss", 1.0, 0, T0),
            Metric("loss", math.nan, 1, T0 + 1),
            Metric("grad", math.inf, 0, T0),
        ],
    )

    got = metadata_store.runs.get(run.id)
    assert got.metrics["loss"].value is None
    assert got.metrics["grad"].value == math.inf
    assert [m.value for m in metadata_store.runs.metric_history(run.id, "loss")] == [1.0, None]
    assert metadata_store.runs.find(parse_filter("metrics.loss < 100")) == []


def test_changing_a_param_is_a_conflict_and_writes_nothing(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, params=[("lr", "0.1")])

    with pytest.raises(Conflict, match="lr"):
        metadata_store.runs.write_data(
            run.id,
            params=[("lr", "0.2")],
            tags=[("stage", "dev")],
            metrics=[Metric("loss", 1.0, 0, T0)],
        )
    got = metadata_store.runs.get(run.id)
    assert (got.params, got.tags, got.metrics) == ({"lr": "0.1"}, {}, {})
    assert metadata_store.runs.metric_history(run.id, "loss") == []


def test_writing_to_an_unknown_run_is_not_found(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        metadata_store.runs.write_data("f" * 32, metrics=[Metric("loss", 1.0, 0, T0)])


def test_end_run_records_status_time_error_and_event(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    ref = f"run/{run.id}"

    metadata_store.runs.end(
        run.id,
        RunStatus.FAILED,
        T0 + 60,
        "ValueError: boom",
        Event(T0 + 60, "ada", "run.failed", ref),
    )

    got = metadata_store.runs.get(run.id)
    assert (got.status, got.ended, got.error, got.duration) == (
        RunStatus.FAILED,
        T0 + 60,
        "ValueError: boom",
        60,
    )
    assert [e.action for e in metadata_store.events.find(ref)] == ["run.failed", "run.started"]


def test_ending_an_unknown_run_is_not_found_and_records_no_event(
    metadata_store: MetadataStore,
) -> None:
    ref = f"run/{'f' * 32}"

    with pytest.raises(NotFound):
        metadata_store.runs.end("f" * 32, RunStatus.FINISHED, T0, None, Event(T0, "ada", "x", ref))
    assert metadata_store.events.find(ref) == []


def test_child_runs_are_listed_oldest_first(metadata_store: MetadataStore) -> None:
    parent = add_run(metadata_store, "parent")
    late = add_run(metadata_store, "late", parent_id=parent.id, started=T0 + 20)
    early = add_run(metadata_store, "early", parent_id=parent.id, started=T0 + 10)

    assert [r.id for r in metadata_store.runs.children(parent.id)] == [early.id, late.id]
    assert metadata_store.runs.children(late.id) == []


def test_runs_with_input_and_output(metadata_store: MetadataStore) -> None:
    model = digest("model")
    late = add_run(metadata_store, "late", started=T0 + 1)
    early = add_run(metadata_store, "early", started=T0)
    other = add_run(metadata_store, "other")
    for run in (late, early):
        metadata_store.runs.write_data(
            run.id,
            inputs=[RunInput("dataset", "sales:1", "train"), RunInput("dataset", "sales:1")],
            outputs=[RunOutput("model.pkl", model, 7), RunOutput("b/plot.png", digest("p"), 3)],
        )
    metadata_store.runs.write_data(other.id, inputs=[RunInput("artifact", model)])

    assert [r.id for r in metadata_store.runs.with_input("dataset", "sales:1")] == [
        early.id,
        late.id,
    ]
    assert [r.id for r in metadata_store.runs.with_input("artifact", model)] == [other.id]
    assert metadata_store.runs.with_input("dataset", "sales:2") == []
    assert [r.id for r in metadata_store.runs.with_output(model)] == [early.id, late.id]
    got = metadata_store.runs.get(late.id)
    assert got.inputs == (RunInput("dataset", "sales:1", "train"),)
    assert got.outputs == (
        RunOutput("b/plot.png", digest("p"), 3),
        RunOutput("model.pkl", model, 7),
    )


@pytest.mark.parametrize(
    "ref",
    ["%874bfc", "%", "_", "a%", "ab_d", "", "run-1", "a" * 33],
    ids=["percent-prefix", "percent", "underscore", "trailing-percent", "underscore-inside",
         "empty", "not-hex", "too-long"],
)  # fmt: skip
def test_a_run_ref_that_is_not_hex_is_refused(metadata_store: MetadataStore, ref: str) -> None:
    add_run(metadata_store, id="ed98ae555f874bfca477" + "0" * 12)
    add_run(metadata_store, id="abcd" + "1" * 28)

    with pytest.raises(InvalidInput, match="invalid run id") as caught:
        metadata_store.runs.get(ref)
    assert repr(ref) in caught.value.message
    assert "mloop runs list" in (caught.value.hint or "")


@pytest.mark.parametrize("limit", [TOO_BIG, HUGE, -1], ids=["2^63", "10^20", "negative"])
def test_a_limit_out_of_range_is_invalid_input(metadata_store: MetadataStore, limit: int) -> None:
    add_run(metadata_store)

    with pytest.raises(InvalidInput, match=f"limit {limit} is out of range"):
        metadata_store.runs.find(limit=limit)
    assert len(metadata_store.runs.find(limit=2**63 - 1)) == 1


def test_a_metric_step_out_of_range_is_invalid_input_and_writes_nothing(
    metadata_store: MetadataStore,
) -> None:
    run = add_run(metadata_store)

    with pytest.raises(InvalidInput, match=f"step {TOO_BIG} is out of range"):
        metadata_store.runs.write_data(
            run.id, metrics=[Metric("loss", 1.0, 0, T0), Metric("loss", 0.5, TOO_BIG, T0)]
        )
    assert metadata_store.runs.metric_history(run.id, "loss") == []
    assert metadata_store.runs.find(parse_filter("metrics.loss > 0")) == []
