"""The dataset store's contract (`store.datasets`) on every implementation: versions numbered by
the store, read back unchanged, found by file and by run. Removal is in test_datasets_removal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mloop.domain.dataset import ColumnProfile, DatasetSummary, FileEntry, Histogram, TableProfile
from mloop.domain.event import Event
from mloop.errors import NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import HUGE, T0, TOO_BIG, add_run, created, digest, version_of


def test_dataset_versions_are_numbered_by_the_store(metadata_store: MetadataStore) -> None:
    b, a = FileEntry("b.csv", digest("b"), 20), FileEntry("a.csv", digest("a"), 10)
    made = [
        metadata_store.datasets.create_version(
            version_of("sales", b, a, version=99, created=T0 + n, message=f"v{n}"),
            created("sales"),
        )
        for n in (1, 2, 3)
    ]

    assert [v.version for v in made] == [1, 2, 3]
    latest = metadata_store.datasets.get_version("sales")
    assert (latest.version, latest.message, latest.files) == (3, "v3", ())
    assert (latest.file_count, latest.total_size, latest.created) == (2, 30, T0 + 3)
    second = metadata_store.datasets.get_version("sales", 2, files=True)
    assert second.message == "v2"
    assert second.files == (a, b)  # the manifest, sorted by path
    assert [v.version for v in metadata_store.datasets.list_versions("sales")] == [1, 2, 3]


def test_missing_datasets_and_versions_are_not_found(metadata_store: MetadataStore) -> None:
    metadata_store.datasets.create_version(version_of("sales"), created("sales"))

    with pytest.raises(NotFound, match="latest is 1"):
        metadata_store.datasets.get_version("sales", 2)
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        metadata_store.datasets.get_version("nope")
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        metadata_store.datasets.get_version("nope", 1)
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        metadata_store.datasets.list_versions("nope")


def test_list_datasets_summarises_the_latest_version(metadata_store: MetadataStore) -> None:
    one = FileEntry("x.csv", digest("x"), 5)
    metadata_store.datasets.create_version(version_of("sales", created=T0), created("sales"))
    metadata_store.datasets.create_version(
        version_of("sales", one, created=T0 + 9), created("sales")
    )
    metadata_store.datasets.create_version(version_of("iris", one, created=T0 + 1), created("iris"))

    assert metadata_store.datasets.all() == [
        DatasetSummary("iris", 1, T0 + 1, T0 + 1, 1, 5),
        DatasetSummary("sales", 2, T0, T0 + 9, 1, 5),
    ]


def test_dataset_profile_and_sources_read_back_unchanged(metadata_store: MetadataStore) -> None:
    table = TableProfile(
        "train.csv",
        3,
        (
            ColumnProfile(
                "age", "int64", "numeric", 3, 0, 1.0, 9.0, 4.5, 2.5,
                ((0.5, 4.0),), Histogram((1.0, 5.0, 9.0), (2, 1)), (), 3,
            ),
            ColumnProfile("city", "object", "categorical", 3, 1, top=(("oslo", 2),)),
        ),
    )  # fmt: skip
    made = metadata_store.datasets.create_version(
        version_of("sales", sources=("s3://raw/sales",), tables=(table,)), created("sales")
    )

    assert metadata_store.datasets.get_version("sales", 1) == made


def test_concurrent_writers_get_distinct_version_numbers(metadata_store: MetadataStore) -> None:
    def make(_: int) -> int:
        return metadata_store.datasets.create_version(version_of("sales"), created("sales")).version

    with ThreadPoolExecutor(max_workers=4) as pool:
        numbers = sorted(pool.map(make, range(20)))

    assert numbers == list(range(1, 21))
    assert metadata_store.datasets.get_version("sales").version == 20


def test_a_failed_dataset_version_leaves_no_trace(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        metadata_store.datasets.create_version(
            version_of("sales", run_id="f" * 32), created("sales")
        )

    assert metadata_store.events.find("dataset/sales") == []
    made = metadata_store.datasets.create_version(version_of("sales"), created("sales"))
    assert made.version == 1


def test_dataset_versions_by_file_and_by_run(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    shared, only = FileEntry("a.csv", digest("a"), 1), FileEntry("b.csv", digest("b"), 1)
    metadata_store.datasets.create_version(version_of("sales", shared), created("sales"))
    metadata_store.datasets.create_version(
        version_of("sales", shared, only, run_id=run.id), created("sales")
    )
    metadata_store.datasets.create_version(version_of("iris", shared), created("iris"))

    with_shared = metadata_store.datasets.versions_with_file(shared.digest)
    assert [v.ref for v in with_shared] == ["iris:1", "sales:1", "sales:2"]
    assert [v.ref for v in metadata_store.datasets.versions_with_file(only.digest)] == ["sales:2"]
    assert [v.ref for v in metadata_store.datasets.versions_of_run(run.id)] == ["sales:2"]
    assert metadata_store.datasets.versions_of_run("f" * 32) == []


def test_file_digests_of_a_datasets_versions(metadata_store: MetadataStore) -> None:
    a, b, c = (FileEntry(f"{n}.csv", digest(n), 1) for n in "abc")
    for files in ((a,), (a, b), (c,)):
        metadata_store.datasets.create_version(version_of("sales", *files), created("sales"))
    metadata_store.datasets.create_version(version_of("iris", c), created("iris"))
    assert metadata_store.datasets.file_digests("sales") == {a.digest, b.digest, c.digest}
    digests = metadata_store.datasets.file_digests
    assert digests("sales", after=1) == {a.digest, b.digest, c.digest}
    assert digests("sales", after=2) == {c.digest} == digests("iris")
    assert digests("sales", after=3) == frozenset() == digests("nothing")
    removed = Event(T0 + 1, "ada", "dataset.versions_removed", "dataset/sales", "", {})
    metadata_store.datasets.remove_versions("sales", 3, T0 + 1, removed)
    assert digests("sales", after=1) == {a.digest, b.digest}  # a removed version's left out


@pytest.mark.parametrize("number", [TOO_BIG, HUGE, -TOO_BIG - 1], ids=["2^63", "10^20", "-2^63-1"])
def test_version_numbers_out_of_range_are_not_found(
    metadata_store: MetadataStore, number: int
) -> None:
    metadata_store.datasets.create_version(
        version_of("sales", FileEntry("a.csv", digest("a"), 1)), created("sales")
    )

    with pytest.raises(NotFound, match=f"no version {number}"):
        metadata_store.datasets.get_version("sales", number)
    with pytest.raises(NotFound):
        metadata_store.datasets.remove_versions("sales", number, T0, created("sales"))
    assert metadata_store.datasets.get_version("sales").version == 1
