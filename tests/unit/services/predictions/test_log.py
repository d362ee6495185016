"""The prediction log's writer on a real SQLite store and a real artifact folder: what it keeps
(sampling by request id), what it turns away (a full buffer, counted), that close stores all it
took, and that a store that fails (its folder replaced by a file) costs the caller nothing: the
upload is retried, bounded, and spooled for the next writer when the server stops."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.domain.prediction import Window
from mloop.services.predictions.log import PredictionLog, Source
from mloop.services.predictions.reader import PredictionReader
from mloop.store import open_artifact_store, open_metadata_store
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.metadata.protocol import MetadataStore
from tests.servers import wait_for

NAMES = ("age", "income")
T0 = 1_790_000_000.0
IDLE = {"flush_seconds": 3600.0, "flush_requests": 10**9}  # only close/flush write


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[MetadataStore, ArtifactStore]]:
    metadata = open_metadata_store(f"sqlite:///{tmp_path / 'mloop.db'}")
    yield metadata, open_artifact_store(str(tmp_path / "objects"))
    metadata.close()


class Outage:
    """The artifact store's folder replaced by a file: every write fails with a real OSError."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.away = folder.with_name(folder.name + ".away")

    def __enter__(self) -> Outage:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.rename(self.away)
        self.folder.write_text("not a folder")
        return self

    def __exit__(self, *exc: object) -> None:
        self.folder.unlink()
        self.away.rename(self.folder)


def _record(plog: PredictionLog, count: int, role: str = "stable", start: int = 0) -> None:
    for i in range(start, start + count):
        row = np.array([[float(i), 2.0 * i]])
        plog.record("web", "churn:3", role, f"req-{i}", row, np.array([i % 2]), T0 + i, NAMES)


def _read(stores: tuple[MetadataStore, ArtifactStore], **window: object) -> pd.DataFrame:
    found = PredictionReader(*stores).read("web", Window(**window))  # type: ignore[arg-type]
    return found.table.to_pandas()


def test_close_stores_every_request_it_took(stores: tuple[MetadataStore, ArtifactStore]) -> None:
    plog = PredictionLog(*stores, **IDLE)
    _record(plog, 250)
    _record(plog, 250, role="shadow")  # a shadow's copies, under the primary's ids
    plog.close()

    rows = _read(stores)
    assert (plog.written, plog.written_rows, plog.dropped) == (500, 500, 0)
    assert len(rows) == 500 and rows["feature.income"].tolist()[:4] == [0.0, 0.0, 2.0, 2.0]
    assert list(rows.columns[:6]) == ["request_id", "row", "at", "endpoint", "model", "role"]
    both = rows.groupby("request_id")["role"].apply(sorted)
    assert (both.map(tuple) == ("shadow", "stable")).all()
    batches = stores[0].predictions.find("web")
    assert sorted(b.role for b in batches) == ["shadow", "stable"]
    assert all(b.rows == 250 and b.requests == 250 for b in batches)


def test_close_closes_its_own_stores_once_after_the_last_flush(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    held: list[int] = []  # the batches the store held when the log closed it
    plog = PredictionLog(
        *stores, closes=lambda: held.append(len(stores[0].predictions.find("web"))), **IDLE
    )
    _record(plog, 10)
    plog.close()
    plog.close()
    assert held == [1]


def test_the_thread_flushes_on_its_own(stores: tuple[MetadataStore, ArtifactStore]) -> None:
    plog = PredictionLog(*stores, flush_seconds=3600.0, flush_requests=100)
    _record(plog, 100)  # the 100th wakes the writer
    wait_for(lambda: plog.written == 100, 10, "the flush the 100th request woke")
    plog.close()
    assert len(_read(stores)) == 100


def test_a_full_buffer_turns_entries_away_and_counts_them(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    plog = PredictionLog(*stores, max_requests=40, **IDLE)
    _record(plog, 100)
    plog.close()
    _record(plog, 5, start=100)  # after close nothing is taken

    assert (plog.written, plog.dropped) == (40, 65)
    assert _read(stores)["request_id"].tolist() == [f"req-{i}" for i in range(40)]


def test_sampling_keeps_a_share_by_request_id(stores: tuple[MetadataStore, ArtifactStore]) -> None:
    plog = PredictionLog(*stores, sample_rate=0.25, **IDLE)
    _record(plog, 4000)
    _record(plog, 4000, role="shadow")
    plog.close()

    rows = _read(stores)
    kept = set(rows.loc[rows["role"] == "stable", "request_id"])
    # 4000 draws at 0.25: 1000 +- 3.3 standard deviations (27)
    assert 910 <= len(kept) <= 1090
    assert set(rows.loc[rows["role"] == "shadow", "request_id"]) == kept  # pairs stay whole
    again = PredictionLog(*stores, sample_rate=0.25, **IDLE)  # another server process
    _record(again, 4000, start=0)
    assert len(again._buffer) == len(kept)
    again.close()
    assert PredictionLog(*stores, sample_rate=0.0, **IDLE)._threshold == 0


def test_a_failing_store_is_retried_and_never_reaches_the_caller(
    stores: tuple[MetadataStore, ArtifactStore], tmp_path: Path
) -> None:
    plog = PredictionLog(*stores, **IDLE)
    with Outage(tmp_path / "objects"):
        _record(plog, 30)
        assert plog.flush() == 0  # no raise
        _record(plog, 30, start=30)  # the caller is never told
        assert plog.flush() == 0
        assert plog.failures == 2 and plog.waiting == 60 and plog.written == 0
    assert plog.flush() == 2  # both files, once the store is back
    plog.close()
    assert (plog.written, plog.dropped) == (60, 0)
    assert len(_read(stores)) == 60


def test_a_long_outage_gives_up_the_oldest_files_counted(
    stores: tuple[MetadataStore, ArtifactStore], tmp_path: Path
) -> None:
    plog = PredictionLog(*stores, max_requests=50, **IDLE)
    with Outage(tmp_path / "objects"):
        for start in (0, 20, 40):
            _record(plog, 20, start=start)
            plog.flush()
    plog.close()

    assert (plog.written, plog.dropped) == (40, 20)  # the first 20 went when 60 waited
    assert _read(stores)["request_id"].iloc[0] == "req-20"


def test_close_spools_what_it_cannot_store_and_the_next_writer_uploads_it(
    stores: tuple[MetadataStore, ArtifactStore], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    plog = PredictionLog(*stores, spool=spool, **IDLE)
    with Outage(tmp_path / "objects"):
        _record(plog, 25)
        plog.close()
    assert plog.dropped == 0 and len(list(spool.glob("*.parquet"))) == 1
    assert stores[0].predictions.find("web") == []

    after = PredictionLog(*stores, spool=spool, **IDLE)  # the restarted server
    wait_for(lambda: after.recovered == 25, 10, "the spooled file's upload")
    after.close()
    assert list(spool.iterdir()) == []
    assert _read(stores)["request_id"].tolist() == [f"req-{i}" for i in range(25)]


def test_frames_lists_and_several_outputs_are_logged(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    plog = PredictionLog(*stores, **IDLE)
    frame = pd.DataFrame({"age": [30, 40], "plan": ["basic", "pro"]})
    plog.record("web", "churn:3", "stable", "a", frame, [0.1, 0.9], T0)
    scores = np.array([[0.2, 0.8], [0.6, 0.4]])
    plog.record("web", "churn:4", "canary", "b", frame, scores, T0 + 1)
    plog.record("web", "churn:3", "stable", "c", frame.iloc[:1], ["yes"], T0 + 2)  # text now
    plog.close()

    three = _read(stores, model="churn:3")
    assert three["feature.plan"].tolist() == ["basic", "pro", "basic"]
    assert three["row"].tolist() == [0, 1, 0]
    assert three["prediction"].tolist() == ["0.1", "0.9", "yes"]  # types that cannot merge: text
    four = _read(stores, model="churn:4")
    assert four[["prediction.0", "prediction.1"]].to_numpy().tolist() == scores.tolist()


def test_a_spooled_file_claimed_by_a_dead_process_is_taken_up(
    stores: tuple[MetadataStore, ArtifactStore], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    plog = PredictionLog(*stores, spool=spool, **IDLE)
    with Outage(tmp_path / "objects"):
        _record(plog, 5)
        plog.close()
    (name,) = [p.name for p in spool.iterdir()]
    shutil.move(spool / name, spool / name.replace(".parquet", ".999999999.claimed"))

    after = PredictionLog(*stores, spool=spool, **IDLE)
    wait_for(lambda: after.recovered == 5, 10, "the abandoned file's upload")
    after.close()
    assert len(_read(stores)) == 5


def test_an_answer_that_cannot_be_stored_costs_only_itself(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    plog = PredictionLog(*stores, **IDLE)
    plog.record("web", "odd:1", "stable", "x", np.array([[1.0]]), object(), T0, ("a",))
    _record(plog, 3)
    plog.close()

    assert (plog.written, plog.given_up, plog.dropped) == (3, 1, 1)
    assert _read(stores)["model"].tolist() == ["churn:3"] * 3


def test_arrays_stacked_whole_and_sorted_by_shape_log_the_same_rows(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    """A flush of ndarrays under one feature list is stacked at once; one request of another
    width sends the whole flush the request-by-request way. Both give the same rows."""
    rows = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0]])]
    answers = [np.array([0, 1]), np.array([1])]
    same = PredictionLog(*stores, **IDLE)
    for i, (data, answer) in enumerate(zip(rows, answers, strict=True)):
        same.record("web", "churn:3", "stable", f"s-{i}", data, answer, T0 + i, NAMES)
    same.close()
    mixed = PredictionLog(*stores, **IDLE)
    for i, (data, answer) in enumerate(zip(rows, answers, strict=True)):
        mixed.record("web", "churn:4", "stable", f"m-{i}", data, answer, T0 + i, NAMES)
    mixed.record("web", "churn:4", "stable", "m-2", np.array([[7.0]]), np.array([0]), T0 + 2)
    mixed.close()

    stacked, sorted_ = _read(stores, model="churn:3"), _read(stores, model="churn:4")
    assert stacked["request_id"].tolist() == ["s-0", "s-0", "s-1"]
    assert stacked["row"].tolist() == [0, 1, 0] and stacked["at"].tolist() == [T0, T0, T0 + 1]
    assert stacked["feature.income"].tolist() == [2.0, 4.0, 6.0]
    assert stacked["prediction"].tolist() == [0, 1, 1]
    shared = ["row", "at", "feature.age", "feature.income", "prediction"]
    assert sorted_[shared].iloc[:3].equals(stacked[shared])
    assert sorted_["feature.0"].iloc[3] == 7.0 and sorted_["feature.age"].isna().iloc[3]


def test_a_predict_call_is_logged_whole_each_request_with_its_rows(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    """What a server's batcher hands over: one call of three requests (the second of two
    rows), beside a request recorded on its own, in one flush and one file."""
    plog = PredictionLog(*stores, **IDLE)
    stable = Source("web", "churn:3", "stable", NAMES)
    tags = [(stable, "a"), (stable, "b"), (stable, "c")]
    data = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    plog.record_tagged(tags, [0, 0, 0], [1, 2, 1], data, np.array([0, 1, 1, 0]))
    plog.record("web", "churn:3", "stable", "d", np.array([[5.0, 50.0]]), np.array([1]), T0, NAMES)
    plog.close()

    rows = _read(stores).sort_values(["request_id", "row"], ignore_index=True)
    assert rows["request_id"].tolist() == ["a", "b", "b", "c", "d"]
    assert rows["row"].tolist() == [0, 0, 1, 0, 0]
    assert rows["feature.income"].tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert rows["prediction"].tolist() == [0, 1, 1, 0, 1]
    assert rows["at"].iloc[:4].nunique() == 1  # the call's time, for each of its requests
    assert (plog.written, plog.written_rows) == (4, 5)
    assert [(b.requests, b.rows) for b in stores[0].predictions.find("web")] == [(4, 5)]


def test_a_call_shared_by_two_versions_is_logged_under_each(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    """Versions that are one model share their calls; each request is logged under the
    version it was routed to, and a request not kept (None) is not logged at all."""
    plog = PredictionLog(*stores, **IDLE)
    one = Source("web", "churn:1", "variant", NAMES)
    two = Source("web", "churn:2", "variant", NAMES)
    frame = pd.DataFrame({"age": [1.0, 2.0, 3.0, 4.0, 5.0], "income": [0.0] * 5})
    tags = [(one, "a"), (two, "b"), None, (one, "d")]
    plog.record_tagged(tags, [0, 0, 0, 0], [1, 2, 1, 1], frame, np.array([1, 2, 3, 4, 5]))
    plog.close()

    first, second = _read(stores, model="churn:1"), _read(stores, model="churn:2")
    assert first["request_id"].tolist() == ["a", "d"]
    assert first["feature.age"].tolist() == [1.0, 5.0] and first["prediction"].tolist() == [1, 5]
    assert second["request_id"].tolist() == ["b", "b"] and second["row"].tolist() == [0, 1]
    assert second["prediction"].tolist() == [2, 3]
    assert plog.written == 3


def test_a_request_cut_into_calls_keeps_its_row_numbers(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    plog = PredictionLog(*stores, **IDLE)
    stable = Source("web", "churn:3", "stable", NAMES)
    for first in (0, 2):  # the batcher's parts of one request of four rows
        part = np.array([[float(first), 0.0], [first + 1.0, 0.0]])
        plog.record_tagged([(stable, "big")], [first], [2], part, np.array([first, first + 1]))
    plog.close()

    rows = _read(stores)
    assert rows["row"].tolist() == [0, 1, 2, 3] and rows["prediction"].tolist() == [0, 1, 2, 3]
    assert rows["request_id"].unique().tolist() == ["big"]


def test_a_call_that_cannot_be_logged_costs_the_server_nothing(
    stores: tuple[MetadataStore, ArtifactStore],
) -> None:
    """Rows the log cannot take out of a call (here: answers with no rows) are counted as
    dropped; `record_tagged` itself never raises into the batcher."""
    plog = PredictionLog(*stores, **IDLE)
    one, two = Source("web", "churn:1", "variant"), Source("web", "churn:2", "variant")
    plog.record_tagged([(one, "a"), (two, "b")], [0, 0], [1, 1], np.zeros((2, 2)), object())
    _record(plog, 2)
    plog.close()
    assert (plog.written, plog.dropped) == (2, 2)
