"""The prediction log's index (`store.predictions`) on every implementation: a batch is read
back whole, found by the window it overlaps (newest first, per model version or model), added
twice without a second row, expired by age and removed by id."""

from __future__ import annotations

import dataclasses
import uuid

from mloop.domain.digests import digest_bytes
from mloop.domain.names import ModelRef
from mloop.domain.prediction import PredictionBatch
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import T0


def _batch(
    first: float, last: float, model: str = "churn:3", endpoint: str = "web"
) -> PredictionBatch:
    return PredictionBatch(
        id=uuid.uuid4().hex,
        endpoint=endpoint,
        model=ModelRef.parse(model),
        role="stable",
        first_at=T0 + first,
        last_at=T0 + last,
        rows=10,
        requests=7,
        digest=digest_bytes(uuid.uuid4().bytes),
        bytes=2048,
        created=T0 + last + 1,
    )


def test_a_batch_is_found_by_the_windows_it_overlaps(metadata_store: MetadataStore) -> None:
    early, middle, late = _batch(0, 10), _batch(10, 20), _batch(30, 40)
    for batch in (early, middle, late, _batch(0, 40, endpoint="other")):
        metadata_store.predictions.add(batch)
    find = metadata_store.predictions.find

    assert find("web") == [late, middle, early]  # newest first, read back whole
    assert find("web", since=T0 + 15) == [late, middle]
    assert find("web", until=T0 + 10) == [middle, early]  # both hold a row at T0 + 10
    assert find("web", since=T0 + 21, until=T0 + 29) == []
    assert find("web", since=T0 + 35, until=T0 + 36) == [late]
    assert find("web", limit=2) == [late, middle]
    assert find("nope") == []


def test_a_model_filter_takes_a_version_or_every_version(metadata_store: MetadataStore) -> None:
    three, four = _batch(0, 1, "churn:3"), _batch(2, 3, "churn:4")
    other = _batch(4, 5, "churner:1")  # a name that begins like another: not one of its versions
    for batch in (three, four, other):
        metadata_store.predictions.add(batch)

    assert metadata_store.predictions.find("web", model="churn:3") == [three]
    assert metadata_store.predictions.find("web", model="churn") == [four, three]
    assert metadata_store.predictions.find("web", model="churn_") == []  # no LIKE wildcard


def test_adding_a_batch_again_changes_nothing(metadata_store: MetadataStore) -> None:
    batch = _batch(0, 1)
    metadata_store.predictions.add(batch)
    metadata_store.predictions.add(dataclasses.replace(batch, rows=99))  # a writer's retry

    assert metadata_store.predictions.find("web") == [batch]


def test_old_batches_expire_and_are_removed_by_id(metadata_store: MetadataStore) -> None:
    old, straddling, new = _batch(0, 10), _batch(5, 25), _batch(30, 40)
    for batch in (new, straddling, old):
        metadata_store.predictions.add(batch)

    assert metadata_store.predictions.expired(T0 + 20) == [old]  # a row after 20: kept
    assert metadata_store.predictions.expired(T0 + 26) == [old, straddling]
    assert metadata_store.predictions.remove([old.id, straddling.id, "no-such-id"]) == 2
    assert metadata_store.predictions.find("web") == [new]
    assert metadata_store.predictions.remove([]) == 0


def test_gc_keeps_what_the_index_names(metadata_store: MetadataStore) -> None:
    batch = _batch(0, 1)
    metadata_store.predictions.add(batch)
    found = list(metadata_store.housekeeping.referenced_objects())

    assert (batch.digest, batch.bytes, f"predictions/web churn:3 batch {batch.id}") in found
    assert metadata_store.housekeeping.resolve_digest(batch.digest[:10]) == batch.digest
