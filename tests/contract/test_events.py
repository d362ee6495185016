"""The event store's contract (`store.events`) on every implementation: appended, listed newest
first by ref, refs matched literally."""

from __future__ import annotations

import pytest

from mloop.domain.event import Event
from mloop.errors import InvalidInput
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import HUGE, T0, TOO_BIG, created, version_of


def test_events_are_listed_newest_first_by_ref(metadata_store: MetadataStore) -> None:
    for _ in range(3):
        metadata_store.datasets.create_version(version_of("sales"), created("sales"))
    metadata_store.datasets.create_version(version_of("sales-eu"), created("sales-eu"))
    metadata_store.events.append(
        Event(T0, "bob", "dataset.tagged", "dataset/sales:2", "why", {"tag": ["a", 1]})
    )

    refs = [e.ref for e in metadata_store.events.find("dataset/sales")]
    assert refs == ["dataset/sales:2", *(f"dataset/sales:{n}" for n in (3, 2, 1))]
    tagged = metadata_store.events.find("dataset/sales:2")
    assert [(e.action, e.actor, e.reason, e.details) for e in tagged] == [
        ("dataset.tagged", "bob", "why", {"tag": ["a", 1]}),
        ("dataset.version_created", "ada", "new data", {"n": 1}),
    ]
    assert all(e.id is not None for e in tagged)
    latest_two = metadata_store.events.find(limit=2)
    assert [e.ref for e in latest_two] == ["dataset/sales:2", "dataset/sales-eu:1"]


@pytest.mark.parametrize("ref", ["dataset/s%", "dataset/s_les", "dataset/_"])
def test_event_refs_match_literally(metadata_store: MetadataStore, ref: str) -> None:
    metadata_store.datasets.create_version(version_of("sales"), created("sales"))

    assert metadata_store.events.find(ref) == []
    assert len(metadata_store.events.find("dataset/sales")) == 1


@pytest.mark.parametrize("limit", [TOO_BIG, HUGE, -1], ids=["2^63", "10^20", "negative"])
def test_a_limit_out_of_range_is_invalid_input(metadata_store: MetadataStore, limit: int) -> None:
    metadata_store.events.append(Event(T0, "ada", "dataset.tagged", "dataset/sales:1"))

    with pytest.raises(InvalidInput, match=f"limit {limit} is out of range"):
        metadata_store.events.find(limit=limit)
    assert len(metadata_store.events.find(limit=2**63 - 1)) == 1
