"""Starting and ending a run are one transaction each, on every implementation: the run with its
first params, tags and environment; the end with what the run logged last. All or nothing."""

from __future__ import annotations

import pytest

from mloop.domain.event import Event
from mloop.domain.lineage import Environment
from mloop.domain.run import Metric, RunInput, RunOutput, RunStatus
from mloop.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import T0, add_run, digest, make_run, started

ENV = Environment(digest("env"), "CPython 3.11.9 (linux)", digest("packages"), 42)


def end(store: MetadataStore, run_id: str, **logged: object) -> None:
    """End the run as finished at T0 + 5, with `logged` (and `only_running`) as given."""
    event = Event(T0 + 5, "ada", "run.finished", f"run/{run_id}")
    store.runs.end(run_id, RunStatus.FINISHED, T0 + 5, None, event, **logged)  # type: ignore[arg-type]


def test_a_run_is_created_with_its_params_tags_and_environment(
    metadata_store: MetadataStore,
) -> None:
    run = make_run(params={"lr": "0.1"}, tags={"stage": "dev"}, environment=ENV.digest)

    metadata_store.runs.create(run, started(run), environment=ENV)

    got = metadata_store.runs.get(run.id)
    assert (got.params, got.tags, got.environment) == ({"lr": "0.1"}, {"stage": "dev"}, ENV.digest)
    assert metadata_store.environments.get(ENV.digest) == ENV
    again = make_run(environment=ENV.digest)
    metadata_store.runs.create(again, started(again), environment=ENV)  # stored once, no error
    assert metadata_store.environments.get(ENV.digest) == ENV


def test_a_refused_run_leaves_neither_its_environment_nor_its_params(
    metadata_store: MetadataStore,
) -> None:
    first = add_run(metadata_store, "first")
    twin = make_run("twin", id=first.id, params={"lr": "0.1"})

    with pytest.raises(AlreadyExists):
        metadata_store.runs.create(twin, started(twin), environment=ENV)

    with pytest.raises(NotFound):
        metadata_store.environments.get(ENV.digest)
    assert metadata_store.runs.get(first.id).params == {}
    orphan = make_run(parent_id="f" * 32)
    with pytest.raises(NotFound, match="parent"):
        metadata_store.runs.create(orphan, started(orphan), environment=ENV)
    with pytest.raises(NotFound):
        metadata_store.environments.get(ENV.digest)


def test_ending_a_run_writes_what_it_logged_last(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, metrics=[Metric("loss", 0.5, 0, T0 + 1)])

    end(
        metadata_store,
        run.id,
        params=[("lr", "0.1")],
        tags=[("stage", "dev")],
        metrics=[Metric("loss", 0.25, 1, T0 + 2), Metric("acc", 0.9, 0, T0 + 2)],
        inputs=[RunInput("dataset", "sales:1")],
        outputs=[RunOutput("model.bin", digest("model"), 10)],
    )

    got = metadata_store.runs.get(run.id)
    assert (got.status, got.ended, got.params, got.tags) == (
        RunStatus.FINISHED,
        T0 + 5,
        {"lr": "0.1"},
        {"stage": "dev"},
    )
    assert (got.metrics["loss"].step, got.metrics["loss"].value) == (1, 0.25)
    assert got.metrics["acc"].value == 0.9
    assert [m.step for m in metadata_store.runs.metric_history(run.id, "loss")] == [0, 1]
    assert got.inputs == (RunInput("dataset", "sales:1"),)
    assert got.outputs == (RunOutput("model.bin", digest("model"), 10),)


def test_an_end_that_fails_writes_none_of_its_data(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, params=[("lr", "0.1")])
    data = {"tags": [("stage", "dev")], "metrics": [Metric("loss", 0.25, 1, T0)]}

    with pytest.raises(Conflict, match="lr"):  # a param stored with another value
        end(metadata_store, run.id, params=[("lr", "0.2")], **data)
    with pytest.raises(InvalidInput, match="step"):  # refused before anything is written
        end(metadata_store, run.id, metrics=[Metric("loss", 1.0, 2**63, T0)])

    got = metadata_store.runs.get(run.id)
    assert (got.status, got.tags, got.metrics) == (RunStatus.RUNNING, {}, {})
    end(metadata_store, run.id)
    with pytest.raises(Conflict, match="ended already"):  # a second end writes nothing either
        end(metadata_store, run.id, only_running=True, **data)
    got = metadata_store.runs.get(run.id)
    assert (got.status, got.tags, got.metrics) == (RunStatus.FINISHED, {}, {})
