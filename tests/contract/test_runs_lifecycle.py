"""The run lifecycle beyond start and end, on every implementation: heartbeats and `lost` runs,
failing a run only while it runs, soft deletion and restoration."""

from __future__ import annotations

import pytest

from mloop.domain.event import Event
from mloop.domain.model import ModelVersion
from mloop.domain.query import parse_filter, parse_sort
from mloop.domain.run import Liveness, RunStatus
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import (
    FINISHED,
    T0,
    add_family,
    add_run,
    created,
    deleting,
    digest,
    make_run,
    version_of,
)


def ended(store: MetadataStore, run_id: str, status: RunStatus = RunStatus.FINISHED) -> None:
    store.runs.end(run_id, status, T0 + 1, None, Event(T0 + 1, "ada", "run.ended", f"run/{run_id}"))


def ids(runs: list) -> list[str]:
    return sorted(r.id[0] for r in runs)


@pytest.fixture
def beating(metadata_store: MetadataStore) -> MetadataStore:
    """a: running, beat at T0+100; b: running, beat at T0+10; c: running, never beat (started
    T0); d: finished long ago; e: running on this host, with a process the reader saw die."""
    add_run(metadata_store, id="a" * 32, pid=11, host="h1", heartbeat=T0 + 100)
    add_run(metadata_store, id="b" * 32, pid=12, host="h1", heartbeat=T0 + 10)
    add_run(metadata_store, id="c" * 32)
    add_run(metadata_store, id="d" * 32, pid=13, host="h2", heartbeat=T0, **FINISHED)
    add_run(metadata_store, id="e" * 32, pid=14, host="h2", heartbeat=T0 + 100)
    return metadata_store


RULE = Liveness(stale_before=T0 + 50, dead=frozenset({"e" * 32}))


def test_a_running_run_without_a_recent_heartbeat_reads_as_lost(beating: MetadataStore) -> None:
    found = {r.id[0]: r.status for r in beating.runs.find(liveness=RULE)}

    assert found == {
        "a": RunStatus.RUNNING,
        "b": RunStatus.LOST,  # its last beat is older than the rule allows
        "c": RunStatus.LOST,  # no beat at all: its start is its last sign of life
        "d": RunStatus.FINISHED,  # an ended run is never lost
        "e": RunStatus.LOST,  # fresh beat, but its process is gone
    }
    for run in beating.runs.find(liveness=RULE):
        assert RULE.status_of(beating.runs.get(run.id)) == run.status  # one rule, SQL and Python
        assert beating.runs.get(run.id, RULE).status == run.status
    assert beating.runs.get("b" * 32).status is RunStatus.RUNNING  # as stored, without a rule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status = lost", "bce"),
        ("status = running", "a"),
        ("not status = lost", "ad"),
        ("status != finished and status != lost", "a"),
    ],
)
def test_status_lost_filters_and_counts(beating: MetadataStore, text: str, expected: str) -> None:
    where = parse_filter(text)

    assert ids(beating.runs.find(where, liveness=RULE)) == list(expected)
    assert beating.runs.count(where, liveness=RULE) == len(expected)


def test_sorting_by_status_sees_lost(beating: MetadataStore) -> None:
    found = beating.runs.find(order=parse_sort("status"), liveness=RULE)

    assert [r.status.value for r in found] == ["finished", "lost", "lost", "lost", "running"]


def test_a_heartbeat_refreshes_only_running_runs(beating: MetadataStore) -> None:
    beating.runs.record_heartbeat(["b" * 32, "d" * 32], T0 + 200)

    assert beating.runs.get("b" * 32).heartbeat == T0 + 200
    assert beating.runs.get("b" * 32, RULE).status is RunStatus.RUNNING
    assert beating.runs.get("d" * 32).heartbeat == T0  # ended: left as it was


def test_running_runs_on_a_host(beating: MetadataStore) -> None:
    assert sorted(beating.runs.running_on("h1")) == [("a" * 32, 11), ("b" * 32, 12)]
    assert beating.runs.running_on("h2") == [("e" * 32, 14)]  # d has ended
    assert beating.runs.running_on("elsewhere") == []


def test_ending_only_a_running_run_is_a_conflict_once_it_ended(
    metadata_store: MetadataStore,
) -> None:
    run = add_run(metadata_store)
    ended(metadata_store, run.id)
    event = Event(T0 + 5, "bob", "run.failed", f"run/{run.id}")

    with pytest.raises(Conflict, match="ended already"):
        metadata_store.runs.end(run.id, RunStatus.FAILED, T0 + 5, "x", event, only_running=True)
    assert metadata_store.runs.get(run.id).status is RunStatus.FINISHED
    assert [e.action for e in metadata_store.events.find(f"run/{run.id}")] == [
        "run.ended",
        "run.started",
    ]


@pytest.fixture
def family(metadata_store: MetadataStore) -> tuple[MetadataStore, list[str]]:
    """A pipeline run with two steps, the second with a child of its own; all ended."""
    return metadata_store, add_family(metadata_store)


def test_deleting_a_run_deletes_the_runs_below_and_hides_them(
    family: tuple[MetadataStore, list[str]],
) -> None:
    store, (parent, one, two, deep) = family
    other = add_run(store, "other", **FINISHED)

    deleted = store.runs.delete(parent, T0 + 10, deleting(parent))

    assert deleted[0] == parent and sorted(deleted) == sorted([parent, one, two, deep])
    assert [r.id for r in store.runs.find()] == [other.id]
    assert store.runs.count() == 1
    assert sorted(r.id for r in store.runs.find(deleted=True)) == sorted(deleted)
    assert store.runs.count(deleted=True) == 4
    assert store.runs.get(deep).deleted == T0 + 10  # still readable by id, marked
    for run_id in deleted:
        [event] = [e for e in store.events.find(f"run/{run_id}") if e.action == "run.deleted"]
        assert (event.actor, event.reason) == ("bob", "smoke test")


def test_restoring_brings_back_what_was_deleted_with_it(
    family: tuple[MetadataStore, list[str]],
) -> None:
    store, (parent, one, two, deep) = family
    store.runs.delete(deep, T0 + 5, deleting(deep))  # deleted on its own, earlier
    store.runs.delete(parent, T0 + 10, deleting(parent))

    with pytest.raises(Conflict, match="parent") as caught:
        store.runs.restore(two, Event(T0, "bob", "run.restored", f"run/{two}"))
    assert f"mloop runs restore {parent[:12]}" in (caught.value.hint or "")
    restored = store.runs.restore(parent, Event(T0 + 20, "bob", "run.restored", f"run/{parent}"))

    assert sorted(restored) == sorted([parent, one, two])
    assert [r.id for r in store.runs.find(deleted=True)] == [deep]
    assert store.runs.restore(deep, Event(T0, "bob", "run.restored", "")) == [deep]
    assert store.runs.count() == 4 and store.runs.count(deleted=True) == 0
    with pytest.raises(Conflict, match="not deleted"):
        store.runs.restore(deep, Event(T0, "bob", "run.restored", ""))


def test_a_run_that_has_not_ended_cannot_be_deleted(
    family: tuple[MetadataStore, list[str]],
) -> None:
    store, (parent, *_) = family
    running = add_run(store, "late step", parent_id=parent)

    with pytest.raises(Conflict, match="has not ended") as caught:
        store.runs.delete(parent, T0 + 10, deleting(parent))
    assert f"mloop runs fail {running.id[:12]}" in (caught.value.hint or "")
    assert store.runs.count() == 5 and store.events.find(f"run/{parent}")[0].action != "run.deleted"


def test_a_run_a_model_or_dataset_version_came_from_cannot_be_deleted(
    family: tuple[MetadataStore, list[str]],
) -> None:
    store, (parent, _, two, deep) = family
    model = ModelVersion("churn", 0, T0, "ada", "sklearn", digest("m"), 1, run_id=deep)
    store.models.create_version(model, [], Event(T0, "ada", "registered", "model/churn"))
    store.datasets.create_version(version_of("scores", run_id=two), created("scores"))

    with pytest.raises(Conflict, match="made model version churn:1"):
        store.runs.delete(parent, T0 + 10, deleting(parent))
    assert store.runs.count() == 4
    other = add_run(store, "other", **FINISHED)
    store.datasets.create_version(version_of("scores", run_id=other.id), created("scores"))
    with pytest.raises(Conflict, match="made dataset version scores:2") as caught:
        store.runs.delete(other.id, T0 + 10, deleting(other.id))
    assert caught.value.hint == "remove the dataset version first: mloop data remove scores:2"


def test_nothing_new_refers_to_a_deleted_run(family: tuple[MetadataStore, list[str]]) -> None:
    store, (parent, *_) = family
    store.runs.delete(parent, T0 + 10, deleting(parent))

    with pytest.raises(NotFound, match="deleted"):
        child = make_run("late", parent_id=parent)
        store.runs.create(child, Event(T0, "ada", "run.started", f"run/{child.id}"))
    with pytest.raises(NotFound, match="deleted"):
        model = ModelVersion("churn", 0, T0, "ada", "sklearn", digest("m"), 1, run_id=parent)
        store.models.create_version(model, [], Event(T0, "ada", "registered", "model/churn"))
    with pytest.raises(NotFound, match="deleted"):
        store.datasets.create_version(version_of("scores", run_id=parent), created("scores"))
