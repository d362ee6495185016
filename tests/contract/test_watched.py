"""Watched files (`store.watched`) on every implementation: remembered per trigger, a second
save of a path replacing the first, forgotten paths gone, paths that are not plain ASCII and
large sizes read back as given."""

from __future__ import annotations

from mloop.domain.landing import WatchedFile
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import T0

KEY = "triggers.train[0].new_data"


def _file(path: str, size: int = 10, digest: str = "", rows: int = 0) -> WatchedFile:
    return WatchedFile(path, size, "1700000000123456789", T0, digest, rows, T0 + 1)


def test_watched_files_are_read_back_as_given_per_trigger(metadata_store: MetadataStore) -> None:
    files = [
        _file("landing/a.csv", digest="a" * 64, rows=1000),
        _file("s3://bucket/landing/ünï €.parquet", size=5 * 2**40, digest="b" * 64, rows=7),
        _file("landing/growing.csv"),  # still being written: no digest yet
    ]
    assert metadata_store.watched.files(KEY) == {}
    metadata_store.watched.save(KEY, files)
    metadata_store.watched.save("triggers.score[0].new_data", [_file("landing/a.csv", size=1)])

    assert metadata_store.watched.files(KEY) == {f.path: f for f in files}
    assert metadata_store.watched.files("triggers.score[0].new_data")["landing/a.csv"].size == 1


def test_a_save_replaces_what_it_names_and_forgets_what_is_gone(
    metadata_store: MetadataStore,
) -> None:
    metadata_store.watched.save(KEY, [_file("a.csv"), _file("b.csv"), _file("c.csv")])
    read = _file("a.csv", size=12, digest="c" * 64, rows=3)
    metadata_store.watched.save(KEY, [read], gone=["b.csv", "never-there.csv"])

    assert metadata_store.watched.files(KEY) == {"a.csv": read, "c.csv": _file("c.csv")}
    many = [f"f{i:05}.csv" for i in range(2500)]  # more than one IN (...) chunk
    metadata_store.watched.save(KEY, [_file(p) for p in many])
    metadata_store.watched.save(KEY, [], gone=many)
    assert set(metadata_store.watched.files(KEY)) == {"a.csv", "c.csv"}
