"""Removing dataset versions softly, on every implementation: hidden from every listing, undone
until purged, refused (without force) when a registered model version was trained on them."""

from __future__ import annotations

import pytest

from mloop.domain.dataset import DatasetSummary, FileEntry
from mloop.domain.event import Event
from mloop.domain.model import ModelVersion
from mloop.domain.names import DatasetRef
from mloop.domain.run import RunStatus
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import T0, add_run, created, digest, version_of

REMOVING = Event(T0 + 50, "bob", "dataset.removed", "dataset/sales", "bad export", {})
RESTORING = Event(T0 + 60, "bob", "dataset.restored", "dataset/sales", None, {})


@pytest.fixture
def sales(metadata_store: MetadataStore) -> MetadataStore:
    """sales:1..3 (3 files of 1, 2 and 3 bytes), iris:1."""
    for n in (1, 2, 3):
        entry = FileEntry("a.csv", digest(f"a{n}"), n)
        metadata_store.datasets.create_version(
            version_of("sales", entry, created=T0 + n), created("sales")
        )
    metadata_store.datasets.create_version(version_of("iris", created=T0), created("iris"))
    return metadata_store


def test_a_removed_version_is_hidden_and_the_one_before_is_latest(sales: MetadataStore) -> None:
    assert sales.datasets.remove_versions("sales", 3, T0 + 50, REMOVING) == [3]

    assert sales.datasets.get_version("sales").version == 2
    assert [v.version for v in sales.datasets.list_versions("sales")] == [1, 2]
    assert sales.datasets.all() == [
        DatasetSummary("iris", 1, T0, T0, 0, 0),
        DatasetSummary("sales", 2, T0 + 1, T0 + 2, 1, 2),
    ]
    with pytest.raises(NotFound, match="sales:3 was removed") as caught:
        sales.datasets.get_version("sales", 3)
    assert caught.value.hint == "bring it back with `mloop data remove sales:3 --undo`"
    [event] = [e for e in sales.events.find("dataset/sales:3") if e.action == "dataset.removed"]
    assert (event.actor, event.reason) == ("bob", "bad export")
    # numbers are never reused: the next version is 4
    made = sales.datasets.create_version(version_of("sales"), created("sales"))
    assert made.version == 4


def test_removing_a_whole_dataset_hides_it_and_undo_brings_every_version_back(
    sales: MetadataStore,
) -> None:
    sales.datasets.remove_versions("sales", 2, T0 + 40, REMOVING)
    assert sales.datasets.remove_versions("sales", None, T0 + 50, REMOVING) == [1, 3]

    assert [d.name for d in sales.datasets.all()] == ["iris"]
    with pytest.raises(NotFound, match="no dataset 'sales'"):
        sales.datasets.get_version("sales")
    with pytest.raises(NotFound, match="no dataset 'sales'"):
        sales.datasets.list_versions("sales")
    with pytest.raises(Conflict, match="removed already") as caught:
        sales.datasets.remove_versions("sales", None, T0 + 60, REMOVING)
    assert "mloop data remove sales --undo" in (caught.value.hint or "")

    assert sales.datasets.restore_versions("sales", None, RESTORING) == [1, 2, 3]
    assert [v.version for v in sales.datasets.list_versions("sales")] == [1, 2, 3]
    assert [e.action for e in sales.events.find("dataset/sales:2")][:2] == [
        "dataset.restored",
        "dataset.removed",
    ]


def test_removing_twice_restoring_a_kept_version_and_unknown_names(sales: MetadataStore) -> None:
    sales.datasets.remove_versions("sales", 1, T0 + 50, REMOVING)

    with pytest.raises(Conflict, match="sales:1 is removed already"):
        sales.datasets.remove_versions("sales", 1, T0 + 50, REMOVING)
    with pytest.raises(Conflict, match="sales:2 is not removed"):
        sales.datasets.restore_versions("sales", 2, RESTORING)
    with pytest.raises(NotFound, match="no version 9"):
        sales.datasets.remove_versions("sales", 9, T0 + 50, REMOVING)
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        sales.datasets.remove_versions("nope", None, T0 + 50, REMOVING)
    assert sales.events.find("dataset/sales:2")[0].action == "dataset.version_created"


def test_a_version_a_model_was_trained_on_needs_force(sales: MetadataStore) -> None:
    for name, datasets in (("churn", ("sales:2", "iris:1")), ("other", ("sales-eu:2",))):
        refs = tuple(map(DatasetRef.parse, datasets))
        model = ModelVersion(name, 0, T0, "ada", "sklearn", digest(name), 1, datasets=refs)
        sales.models.create_version(model, [], Event(T0, "ada", "registered", f"model/{name}"))

    with pytest.raises(Conflict, match=r"sales:2 trained model version churn:1 \(sales:2\)") as c:
        sales.datasets.remove_versions("sales", 2, T0 + 50, REMOVING)
    assert "mloop data remove sales:2 --force" in (c.value.hint or "")
    with pytest.raises(Conflict, match=r"dataset sales trained model version churn:1"):
        sales.datasets.remove_versions("sales", None, T0 + 50, REMOVING)
    assert [v.version for v in sales.datasets.list_versions("sales")] == [1, 2, 3]

    assert sales.datasets.remove_versions("sales", 3, T0 + 50, REMOVING) == [3]  # not trained on
    assert sales.datasets.remove_versions("sales", 2, T0 + 50, REMOVING, force=True) == [2]
    assert [v.version for v in sales.datasets.list_versions("sales")] == [1]


def test_a_version_made_by_a_deleted_run_is_restored_only_with_its_run(
    metadata_store: MetadataStore,
) -> None:
    run = add_run(metadata_store, status=RunStatus.FINISHED, ended=T0 + 1)
    metadata_store.datasets.create_version(version_of("scores", run_id=run.id), created("scores"))
    metadata_store.datasets.remove_versions("scores", 1, T0 + 5, REMOVING)
    metadata_store.runs.delete(run.id, T0 + 10, Event(T0, "bob", "run.deleted", ""))

    with pytest.raises(Conflict, match="made by run") as caught:
        metadata_store.datasets.restore_versions("scores", 1, RESTORING)
    assert caught.value.hint == f"restore the run first: mloop runs restore {run.id[:12]}"
    metadata_store.runs.restore(run.id, Event(T0, "bob", "run.restored", ""))
    assert metadata_store.datasets.restore_versions("scores", 1, RESTORING) == [1]
