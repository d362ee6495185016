"""The run lifecycle beyond start and end, on every implementation: heartbeats and `lost` runs,
failing a run only while it runs, soft deletion and restoration, and gc's purge."""

from __future__ import annotations

import pytest

from mloop.domain.dataset import FileEntry
from mloop.domain.event import Event
from mloop.domain.model import ModelVersion
from mloop.domain.query import parse_filter, parse_sort
from mloop.domain.run import Liveness, Metric, RunInput, RunOutput, RunStatus
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.protocol import MetadataStore
from mloop.store.metadata.sql.db import Tx
from tests.contract.test_metadata_store import T0, add_run, created, digest, make_run, version_of

FINISHED = {"status": RunStatus.FINISHED, "ended": T0 + 1}


def ended(store: MetadataStore, run_id: str, status: RunStatus = RunStatus.FINISHED) -> None:
    store.runs.end(run_id, status, T0 + 1, None, Event(T0 + 1, "ada", "run.ended", f"run/{run_id}"))


def ids(runs: list) -> list[str]:
    return sorted(r.id[0] for r in runs)


# liveness -----------------------------------------------------------------------------------
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


# listing ------------------------------------------------------------------------------------
def test_parent_null_selects_top_level_runs(metadata_store: MetadataStore) -> None:
    top = add_run(metadata_store, "top")
    add_run(metadata_store, "step", parent_id=top.id)
    other = add_run(metadata_store, "other")

    for text in ("parent = null", "parent = NULL", "parent = ''", "parent = none"):
        assert sorted(r.id for r in metadata_store.runs.find(parse_filter(text))) == sorted(
            [top.id, other.id]
        )
    assert [r.name for r in metadata_store.runs.find(parse_filter("parent != null"))] == ["step"]


def test_found_runs_carry_their_inputs_and_outputs_in_a_fixed_number_of_queries(
    metadata_store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def add_runs(n: int) -> None:
        for i in range(n):
            run = add_run(metadata_store, f"r{i}")
            metadata_store.runs.write_data(
                run.id,
                inputs=[RunInput("dataset", f"sales:{i}", "train")],
                outputs=[RunOutput("model.pkl", digest(str(i)), i), RunOutput("b", digest("b"), 1)],
                metrics=[Metric("acc", 0.5, 0, T0)],
            )

    statements: list[str] = []
    real_execute = Tx.execute

    def counting(tx: Tx, sql: str, params: object = None) -> object:
        statements.append(sql)
        return real_execute(tx, sql, params)  # type: ignore[arg-type]

    add_runs(3)
    monkeypatch.setattr(Tx, "execute", counting)
    few = metadata_store.runs.find()
    few_statements = len(statements)
    monkeypatch.undo()
    add_runs(27)
    monkeypatch.setattr(Tx, "execute", counting)
    statements.clear()
    many = metadata_store.runs.find()

    assert len(statements) == few_statements  # 30 runs cost what 3 cost: no query per run
    assert len(few) == 3 and len(many) == 30
    r0 = next(r for r in many if r.name == "r0")
    assert r0.inputs == (RunInput("dataset", "sales:0", "train"),)
    assert r0.outputs == (RunOutput("b", digest("b"), 1), RunOutput("model.pkl", digest("0"), 0))


# deleting and restoring ---------------------------------------------------------------------
@pytest.fixture
def family(metadata_store: MetadataStore) -> tuple[MetadataStore, list[str]]:
    """A pipeline run with two steps, the second with a child of its own; all ended."""
    parent = add_run(metadata_store, "pipeline", **FINISHED)
    one = add_run(metadata_store, "one", parent_id=parent.id, **FINISHED)
    two = add_run(metadata_store, "two", parent_id=parent.id, **FINISHED)
    deep = add_run(metadata_store, "deep", parent_id=two.id, **FINISHED)
    return metadata_store, [parent.id, one.id, two.id, deep.id]


def deleting(run_id: str) -> Event:
    return Event(T0 + 10, "bob", "run.deleted", f"run/{run_id}", "smoke test", {})


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


# purging ------------------------------------------------------------------------------------
def test_purge_removes_what_was_deleted_before_the_cutoff_and_its_references(
    family: tuple[MetadataStore, list[str]],
) -> None:
    store, (parent, one, two, deep) = family
    store.runs.write_data(
        deep,
        params=[("lr", "0.1")],
        tags=[("t", "x")],
        metrics=[Metric("acc", 0.9, 0, T0)],
        inputs=[RunInput("artifact", digest("in"))],
        outputs=[RunOutput("model", digest("only-deep"), 5), RunOutput("s", digest("shared"), 1)],
    )
    kept = add_run(store, "kept", **FINISHED)
    store.runs.write_data(kept.id, outputs=[RunOutput("s", digest("shared"), 1)])
    late = add_run(store, "late", **FINISHED)
    store.runs.write_data(late.id, outputs=[RunOutput("l", digest("late"), 1)])
    store.runs.delete(parent, T0 + 10, deleting(parent))
    store.runs.delete(late.id, T0 + 30, deleting(late.id))
    before = {d for d, _, _ in store.housekeeping.referenced_objects()}

    planned = store.housekeeping.purge_removed(T0 + 20, dry_run=True)
    after_purge = {d for d, _, _ in store.housekeeping.referenced_objects(purged_before=T0 + 20)}
    assert store.runs.count(deleted=True) == 5  # a dry run purges nothing
    purged = store.housekeeping.purge_removed(T0 + 20, event=Event(T0 + 40, "gc", "purged", ""))

    assert planned == purged
    assert sorted(purged[0]) == sorted([parent, one, two, deep]) and purged[1] == []
    assert before - after_purge == {digest("only-deep"), digest("in")}
    assert {d for d, _, _ in store.housekeeping.referenced_objects()} == after_purge
    assert [r.id for r in store.runs.find(deleted=True)] == [late.id]  # deleted after the cutoff
    with pytest.raises(NotFound):
        store.runs.get(deep)
    assert store.runs.metric_history(deep, "acc") == []
    assert store.runs.with_output(digest("only-deep")) == []
    assert [e.action for e in store.events.find(f"run/{deep}")][:2] == ["run.purged", "run.deleted"]


def test_purge_takes_removed_dataset_versions_and_their_files(
    metadata_store: MetadataStore,
) -> None:
    files = (FileEntry("a.csv", digest("a"), 1), FileEntry("b.csv", digest("b"), 1))
    for _ in range(2):
        metadata_store.datasets.create_version(version_of("sales", *files), created("sales"))
    metadata_store.datasets.create_version(
        version_of("sales", FileEntry("a.csv", digest("a2"), 1)), created("sales")
    )
    removing = Event(T0, "bob", "dataset.removed", "dataset/sales")
    metadata_store.datasets.remove_versions("sales", 3, T0 + 10, removing)

    assert metadata_store.housekeeping.purge_removed(T0 + 5) == ([], [])  # removed after the cutoff
    assert metadata_store.housekeeping.purge_removed(
        T0 + 10, event=Event(T0, "gc", "purged", "")
    ) == (
        [],
        ["sales:3"],
    )
    assert {d for d, _, _ in metadata_store.housekeeping.referenced_objects()} == {
        digest("a"),
        digest("b"),
    }
    with pytest.raises(NotFound, match="no version 3"):
        metadata_store.datasets.get_version("sales", 3)
    with pytest.raises(NotFound):
        metadata_store.datasets.restore_versions("sales", 3, removing)
    assert metadata_store.datasets.get_version("sales").version == 2
    assert metadata_store.events.find("dataset/sales:3")[0].action == "dataset.purged"
