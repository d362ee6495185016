"""Window queries over the prediction log on a real SQLite store and artifact folder: a window
takes exactly the rows inside it, reads only the files the index names for it, and `last`
counts requests (a shadow's copy is the same request) across many files, newest first."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from mloop.domain.prediction import Window
from mloop.errors import InvalidInput, NotFound
from mloop.services.predictions.log import PredictionLog
from mloop.services.predictions.reader import FIRST_PAGE, PredictionReader
from mloop.store import open_artifact_store, open_metadata_store
from mloop.store.metadata.protocol import MetadataStore

T0 = 1_790_000_000.0
FILES = FIRST_PAGE * 2 + 5  # more than one page of the index


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictionReader]:
    """FILES flushes of 10 requests each, one second apart, each with a shadow's copy: two
    files a flush, one per role."""
    folder = tmp_path_factory.mktemp("log")
    metadata = open_metadata_store(f"sqlite:///{folder / 'mloop.db'}")
    artifacts = open_artifact_store(str(folder / "objects"))
    plog = PredictionLog(metadata, artifacts, flush_seconds=3600.0, flush_requests=10**9)
    for i in range(FILES * 10):
        row = np.array([[float(i)]])
        for role in ("stable", "shadow"):
            plog.record("web", "churn:3", role, f"r{i:04}", row, np.array([i]), T0 + i, ("x",))
        if i % 10 == 9:
            plog.flush()
    plog.close()
    yield PredictionReader(metadata, artifacts)
    metadata.close()


def _ids(reader: PredictionReader, window: Window) -> list[str]:
    return sorted(set(reader.read("web", window).table.column("request_id").to_pylist()))


def test_a_window_takes_the_rows_inside_it_both_ends_included(logged: PredictionReader) -> None:
    found = logged.read("web", Window(since=T0 + 15, until=T0 + 24))

    assert _ids(logged, Window(since=T0 + 15, until=T0 + 24)) == [f"r{i:04}" for i in range(15, 25)]
    assert found.batches == 4 and found.table.num_rows == 20  # a stable and a shadow file each
    assert found.table.column("at").to_pylist() == sorted(found.table.column("at").to_pylist())


def test_last_counts_requests_across_pages_of_files(logged: PredictionReader) -> None:
    total = FILES * 10
    wanted = (FIRST_PAGE + 3) * 10  # needs the index's second page
    found = logged.read("web", Window(last=wanted))

    assert _ids(logged, Window(last=wanted)) == [f"r{i:04}" for i in range(total - wanted, total)]
    assert found.table.num_rows == 2 * wanted
    assert found.batches < 2 * FILES  # the oldest files were never opened
    assert _ids(logged, Window(last=3, until=T0 + 100)) == ["r0098", "r0099", "r0100"]
    assert len(_ids(logged, Window(last=10**6))) == total  # more than there is: all of it


def test_a_model_filter_and_an_empty_window(logged: PredictionReader) -> None:
    assert len(_ids(logged, Window(until=T0 + 4, model="churn"))) == 5
    with pytest.raises(NotFound, match="no request to endpoint 'web' was logged in since"):
        logged.read("web", Window(since=T0 + 10**6))
    with pytest.raises(NotFound, match="was logged in of churn:4"):
        logged.read("web", Window(model="churn:4"))
    with pytest.raises(NotFound, match="no endpoint 'shop'"):
        logged.read("shop", Window())
    with pytest.raises(InvalidInput, match="starts after it ends"):
        logged.read("web", Window(since=T0 + 2, until=T0 + 1))


def test_only_the_files_the_index_names_are_read(logged: PredictionReader) -> None:
    metadata: MetadataStore = logged.metadata
    named = {b.digest for b in metadata.predictions.find("web", since=T0 + 500, until=T0 + 500)}
    opened: list[str] = []
    read_bytes = logged.artifacts.read_bytes

    def counting(digest: str) -> bytes:  # a spy on the real store, not a replacement
        opened.append(digest)
        return read_bytes(digest)

    logged.artifacts.read_bytes = counting  # type: ignore[method-assign]
    try:
        assert _ids(logged, Window(since=T0 + 500, until=T0 + 500)) == ["r0500"]
    finally:
        del logged.artifacts.read_bytes
    assert sorted(opened) == sorted(named) and len(named) == 2  # of 2 * FILES files
