"""The model store's contract (`store.models`), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mloop.domain.dataset import FileEntry
from mloop.domain.event import Event
from mloop.domain.gate import GateRecord
from mloop.domain.model import ColumnSpec, ModelStatus, ModelVersion, Signature
from mloop.domain.names import DatasetRef
from mloop.errors import InvalidInput, NotFound
from mloop.store import open_metadata_store
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import HUGE, T0, TOO_BIG, add_run, digest

DIGEST = "ab" * 32


def draft(name: str = "churn", **changes: object) -> ModelVersion:
    base = ModelVersion(
        name=name,
        version=0,
        created=time.time(),
        user="tester",
        flavor="sklearn",
        digest=DIGEST,
        size=100,
        signature=Signature((ColumnSpec("x", "float64"), ColumnSpec("g", "string", True))),
        metrics={"accuracy": 0.9},
        params={"C": "1.0"},
        datasets=(DatasetRef("sales", 1),),
        trusted_types=("numpy.dtype",),
    )
    return ModelVersion(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


def event(action: str = "model.version_registered") -> Event:
    return Event(time.time(), "tester", action, "model/churn")


FILES = [FileEntry("model.skops", "cd" * 32, 90)]


def test_versions_count_from_one_and_round_trip(metadata_store: MetadataStore) -> None:
    first = metadata_store.models.create_version(draft(), FILES, event())
    second = metadata_store.models.create_version(draft(), FILES, event())
    assert (first.version, second.version) == (1, 2)
    read = metadata_store.models.get_version("churn", 1)
    assert read.signature == draft().signature
    assert read.metrics == {"accuracy": 0.9}
    assert read.datasets == (DatasetRef("sales", 1),)
    assert read.trusted_types == ("numpy.dtype",)
    assert metadata_store.models.get_version("churn").version == 2  # latest
    assert [v.version for v in metadata_store.models.list_versions("churn")] == [1, 2]
    owners = {
        o for _, _, o in metadata_store.housekeeping.referenced_objects() if o.startswith("model/")
    }
    assert owners == {
        "model/churn:1",
        "model/churn:2",
        "model/churn:1 model.skops",
        "model/churn:2 model.skops",
    }


def test_versions_are_gap_free_under_concurrent_writers(metadata_uri: str) -> None:
    def register(_: int) -> int:
        store = open_metadata_store(metadata_uri)
        try:
            return store.models.create_version(draft("busy"), FILES, event()).version
        finally:
            store.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        numbers = sorted(pool.map(register, range(12)))
    assert numbers == list(range(1, 13))


def test_aliases_point_at_one_version_and_follow_archiving(metadata_store: MetadataStore) -> None:
    for _ in range(2):
        metadata_store.models.create_version(draft(), FILES, event())
    metadata_store.models.set_alias("churn", "champion", 1, event("model.alias_set"))
    metadata_store.models.set_alias("churn", "champion", 2, event("model.alias_set"))
    assert metadata_store.models.get_version("churn", alias="champion").version == 2
    assert metadata_store.models.get_version("churn", 2).aliases == ("champion",)
    assert metadata_store.models.all()[0].aliases == {"champion": 2}
    metadata_store.models.set_status("churn", 2, ModelStatus.ARCHIVED, event("model.archived"))
    assert metadata_store.models.get_version("churn", 2).status is ModelStatus.ARCHIVED
    assert metadata_store.models.get_version("churn", 1).status is ModelStatus.READY
    with pytest.raises(NotFound, match="no alias 'champion'"):
        metadata_store.models.get_version("churn", alias="champion")
    with pytest.raises(InvalidInput, match="archived"):
        metadata_store.models.set_alias("churn", "x", 2, event("model.alias_set"))
    with pytest.raises(NotFound):
        metadata_store.models.delete_alias("churn", "nope", event("model.alias_removed"))


def test_versions_of_a_run_are_listed_by_model_and_number(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.models.create_version(draft("zeta", run_id=run.id), FILES, event())
    metadata_store.models.create_version(draft("churn"), FILES, event())  # from no run
    metadata_store.models.create_version(draft("churn", run_id=run.id), FILES, event())

    assert [v.ref for v in metadata_store.models.versions_of_run(run.id)] == ["churn:2", "zeta:1"]
    assert metadata_store.models.versions_of_run("f" * 32) == []


def test_gate_records_are_stored_with_the_version(metadata_store: MetadataStore) -> None:
    metadata_store.models.create_version(draft(), FILES, event())
    records = [GateRecord("accuracy >= 0.95", False, 0.9, 0.95, "accuracy = 0.9, needs >= 0.95")]
    metadata_store.models.set_gates("churn", 1, records)
    assert metadata_store.models.get_version("churn", 1).gates == tuple(records)


def test_unknown_models_versions_and_runs(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFound, match="no model 'ghost'"):
        metadata_store.models.get_version("ghost")
    metadata_store.models.create_version(draft(), FILES, event())
    with pytest.raises(NotFound, match="no version 5"):
        metadata_store.models.get_version("churn", 5)
    with pytest.raises(NotFound, match="does not exist"):
        metadata_store.models.create_version(draft(run_id="f" * 32), FILES, event())
    assert metadata_store.models.get_version("churn").version == 1  # nothing half-registered


@pytest.mark.parametrize("number", [TOO_BIG, HUGE, -TOO_BIG - 1], ids=["2^63", "10^20", "-2^63-1"])
def test_version_numbers_out_of_range_are_not_found(
    metadata_store: MetadataStore, number: int
) -> None:
    model = ModelVersion(
        name="churn", version=0, created=T0, user="ada", flavor="sklearn", digest=digest("m"),
        size=1,
    )  # fmt: skip
    metadata_store.models.create_version(model, [], Event(T0, "ada", "registered", "model/churn"))
    event = Event(T0, "ada", "x", "model/churn:1")

    with pytest.raises(NotFound, match=f"no version {number}"):
        metadata_store.models.get_version("churn", number)
    with pytest.raises(NotFound):
        metadata_store.models.set_alias("churn", "champion", number, event)
    with pytest.raises(NotFound):
        metadata_store.models.set_status("churn", number, "archived", event)
    with pytest.raises(NotFound):
        metadata_store.models.set_gates("churn", number, [])
    assert metadata_store.models.get_version("churn").aliases == ()
