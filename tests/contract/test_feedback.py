"""Labels (`store.feedback`) on every implementation: read back as given (classes and numbers),
found by request id, a second label for the same request and row replacing the first (counted,
also within one batch), kept per endpoint, listed by when they arrived."""

from __future__ import annotations

from mloop.domain.feedback import Label, Stored
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import T0


def _label(rid: str, value: object, at: float = 0.0, row: int = 0) -> Label:
    return Label(rid, value, T0 + at, "http", row)  # type: ignore[arg-type]


def test_labels_are_read_back_as_given(metadata_store: MetadataStore) -> None:
    labels = [
        _label("a", "churned"),
        _label("b", 1),
        _label("c", 2.5),
        _label("d", True),
        _label("e", 0, row=3),
        _label("e", "x" * 1000, row=4),
    ]
    assert metadata_store.feedback.add("web", labels) == Stored(6, 0)

    found = metadata_store.feedback.find("web", ["e", "a", "b", "c", "d", "nope"])
    assert found == sorted(labels, key=lambda x: (x.request_id, x.row))
    assert [type(x.value) for x in found[:4]] == [str, int, float, bool]  # JSON keeps the type
    assert metadata_store.feedback.find("other", ["a"]) == []  # per endpoint
    assert metadata_store.feedback.find("web", []) == []


def test_a_second_label_replaces_the_first_and_says_so(metadata_store: MetadataStore) -> None:
    metadata_store.feedback.add("web", [_label("a", 0), _label("b", 0)])
    metadata_store.feedback.add("other", [_label("a", 5)])

    stored = metadata_store.feedback.add("web", [_label("a", 1, at=5), _label("c", 1, at=5)])
    assert stored == Stored(2, 1)
    # within one batch, the last label of a request wins and counts as a replacement
    again = metadata_store.feedback.add("web", [_label("d", 0, at=6), _label("d", 1, at=7)])
    assert again == Stored(2, 1)

    found = {x.request_id: x for x in metadata_store.feedback.find("web", ["a", "b", "c", "d"])}
    assert found["a"] == _label("a", 1, at=5)
    assert found["d"] == _label("d", 1, at=7)
    assert metadata_store.feedback.find("other", ["a"]) == [_label("a", 5)]  # untouched


def test_labels_are_listed_by_when_they_arrived(metadata_store: MetadataStore) -> None:
    early, middle, late = _label("x", 0, at=0), _label("y", 1, at=10), _label("z", 1, at=20)
    metadata_store.feedback.add("web", [late, early, middle])
    received = metadata_store.feedback.received

    assert metadata_store.feedback.received("web") == [early, middle, late]
    assert received("web", since=T0 + 10) == [middle, late]
    assert received("web", until=T0 + 10) == [early, middle]
    assert received("web", since=T0 + 11, until=T0 + 19) == []
    assert received("other") == []


def test_many_labels_are_written_and_found_in_one_call(metadata_store: MetadataStore) -> None:
    labels = [_label(f"r{i}", i % 3) for i in range(2500)]  # over the IN clause's chunk
    assert metadata_store.feedback.add("web", labels) == Stored(2500, 0)
    assert metadata_store.feedback.add("web", labels[:1200]) == Stored(1200, 1200)

    found = metadata_store.feedback.find("web", [x.request_id for x in labels])
    assert sorted(found, key=lambda x: int(x.request_id[1:])) == labels
