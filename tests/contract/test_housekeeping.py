"""The housekeeping store's contract (`store.housekeeping`) on every implementation: the digests
the metadata names, across every noun's tables, and gc's purge of what was removed."""

from __future__ import annotations

import pytest

from mloop.domain.dataset import FileEntry
from mloop.domain.event import Event
from mloop.domain.lineage import Environment
from mloop.domain.run import Metric, RunInput, RunOutput
from mloop.errors import InvalidInput, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import (
    FINISHED,
    T0,
    add_family,
    add_run,
    created,
    deleting,
    digest,
    version_of,
)


@pytest.fixture
def digests(metadata_store: MetadataStore) -> dict[str, str]:
    """Digests referenced from every table that holds them, some sharing a prefix."""
    found = {
        "out1": "ab12" + "0" * 60,
        "out2": "ab34" + "0" * 60,
        "packages": "cd" + "1" * 62,
        "file": "ef" + "2" * 62,
    }
    run = add_run(metadata_store)
    metadata_store.runs.write_data(
        run.id,
        outputs=[
            RunOutput("a", found["out1"], 1),
            RunOutput("b", found["out2"], 1),
            RunOutput("c", found["file"], 1),
        ],
    )
    metadata_store.environments.put(Environment(digest("env"), "CPython", found["packages"], 1))
    metadata_store.datasets.create_version(
        version_of("sales", FileEntry("x", found["file"], 1)), created("sales")
    )
    return found


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("ab1", "out1"), ("AB34", "out2"), ("cd", "packages"), ("ef22", "file")],
    ids=["run-output", "upper-case", "environment", "dataset-file-and-output"],
)
def test_resolve_digest_finds_a_unique_prefix(
    metadata_store: MetadataStore, digests: dict[str, str], prefix: str, expected: str
) -> None:
    assert metadata_store.housekeeping.resolve_digest(prefix) == digests[expected]


def test_resolve_digest_refuses_ambiguous_and_missing(
    metadata_store: MetadataStore, digests: dict[str, str]
) -> None:
    with pytest.raises(InvalidInput, match="ambiguous"):
        metadata_store.housekeeping.resolve_digest("ab")
    with pytest.raises(NotFound):
        metadata_store.housekeeping.resolve_digest("ff")


def test_a_digest_prefix_that_is_not_hex_is_refused(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, outputs=[RunOutput("m", digest("m"), 1)])

    for prefix in ("%", "_", f"%{digest('m')[1:6]}"):
        with pytest.raises(InvalidInput, match="invalid digest"):
            metadata_store.housekeeping.resolve_digest(prefix)
    assert metadata_store.housekeeping.resolve_digest(digest("m")[:6]) == digest("m")


def test_referenced_objects_names_every_owner(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    env = Environment(digest("env"), "CPython", digest("packages"), 1)
    metadata_store.environments.put(env)
    metadata_store.runs.write_data(
        run.id,
        outputs=[RunOutput("model.pkl", digest("m"), 7)],
        inputs=[RunInput("artifact", digest("in")), RunInput("dataset", "sales:1")],
    )
    metadata_store.datasets.create_version(
        version_of("sales", FileEntry("a.csv", digest("a"), 3)), created("sales")
    )

    assert set(metadata_store.housekeeping.referenced_objects()) == {
        (digest("a"), 3, "dataset/sales:1 a.csv"),
        (digest("m"), 7, f"run/{run.id} model.pkl"),
        (digest("in"), None, f"run/{run.id} input"),
        (digest("packages"), None, f"environment {env.digest}"),
    }


def test_purge_removes_what_was_deleted_before_the_cutoff_and_its_references(
    metadata_store: MetadataStore,
) -> None:
    store = metadata_store
    parent, one, two, deep = add_family(store)
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
