"""What the store is given from outside — id prefixes, refs, limits, version numbers — never
reaches SQL as a wildcard or an integer the database cannot hold: a clear InvalidInput or
NotFound instead, on every implementation."""

from __future__ import annotations

import pytest

from mloop.domain.dataset import FileEntry
from mloop.domain.event import Event
from mloop.domain.model import ModelVersion
from mloop.domain.query import parse_filter
from mloop.domain.run import Metric, RunOutput
from mloop.errors import InvalidInput, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.test_metadata_store import T0, add_run, created, digest, version_of

TOO_BIG = 2**63  # one past the largest 64-bit integer
HUGE = 10**20


@pytest.mark.parametrize(
    "ref",
    ["%874bfc", "%", "_", "a%", "ab_d", "", "run-1", "a" * 33],
    ids=["percent-prefix", "percent", "underscore", "trailing-percent", "underscore-inside",
         "empty", "not-hex", "too-long"],
)  # fmt: skip
def test_a_run_ref_that_is_not_hex_is_refused(metadata_store: MetadataStore, ref: str) -> None:
    add_run(metadata_store, id="ed98ae555f874bfca477" + "0" * 12)
    add_run(metadata_store, id="abcd" + "1" * 28)

    with pytest.raises(InvalidInput, match="invalid run id") as caught:
        metadata_store.runs.get(ref)
    assert repr(ref) in caught.value.message
    assert "mloop runs list" in (caught.value.hint or "")


def test_a_digest_prefix_that_is_not_hex_is_refused(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, outputs=[RunOutput("m", digest("m"), 1)])

    for prefix in ("%", "_", f"%{digest('m')[1:6]}"):
        with pytest.raises(InvalidInput, match="invalid digest"):
            metadata_store.housekeeping.resolve_digest(prefix)
    assert metadata_store.housekeeping.resolve_digest(digest("m")[:6]) == digest("m")


@pytest.mark.parametrize("ref", ["dataset/s%", "dataset/s_les", "dataset/_"])
def test_event_refs_match_literally(metadata_store: MetadataStore, ref: str) -> None:
    metadata_store.datasets.create_version(version_of("sales"), created("sales"))

    assert metadata_store.events.find(ref) == []
    assert len(metadata_store.events.find("dataset/sales")) == 1


@pytest.mark.parametrize("limit", [TOO_BIG, HUGE, -1], ids=["2^63", "10^20", "negative"])
def test_a_limit_out_of_range_is_invalid_input(metadata_store: MetadataStore, limit: int) -> None:
    add_run(metadata_store)

    with pytest.raises(InvalidInput, match=f"limit {limit} is out of range"):
        metadata_store.runs.find(limit=limit)
    with pytest.raises(InvalidInput, match="out of range"):
        metadata_store.events.find(limit=limit)
    assert len(metadata_store.runs.find(limit=2**63 - 1)) == 1


@pytest.mark.parametrize("number", [TOO_BIG, HUGE, -TOO_BIG - 1], ids=["2^63", "10^20", "-2^63-1"])
def test_version_numbers_out_of_range_are_not_found(
    metadata_store: MetadataStore, number: int
) -> None:
    metadata_store.datasets.create_version(
        version_of("sales", FileEntry("a.csv", digest("a"), 1)), created("sales")
    )
    model = ModelVersion(
        name="churn", version=0, created=T0, user="ada", flavor="sklearn", digest=digest("m"),
        size=1,
    )  # fmt: skip
    metadata_store.models.create_version(model, [], Event(T0, "ada", "registered", "model/churn"))
    event = Event(T0, "ada", "x", "model/churn:1")

    with pytest.raises(NotFound, match=f"no version {number}"):
        metadata_store.datasets.get_version("sales", number)
    with pytest.raises(NotFound, match=f"no version {number}"):
        metadata_store.models.get_version("churn", number)
    with pytest.raises(NotFound):
        metadata_store.models.set_alias("churn", "champion", number, event)
    with pytest.raises(NotFound):
        metadata_store.models.set_status("churn", number, "archived", event)
    with pytest.raises(NotFound):
        metadata_store.models.set_gates("churn", number, [])
    with pytest.raises(NotFound):
        metadata_store.datasets.remove_versions("sales", number, T0, created("sales"))
    assert metadata_store.models.get_version("churn").aliases == ()


def test_a_metric_step_out_of_range_is_invalid_input_and_writes_nothing(
    metadata_store: MetadataStore,
) -> None:
    run = add_run(metadata_store)

    with pytest.raises(InvalidInput, match=f"step {TOO_BIG} is out of range"):
        metadata_store.runs.write_data(
            run.id, metrics=[Metric("loss", 1.0, 0, T0), Metric("loss", 0.5, TOO_BIG, T0)]
        )
    assert metadata_store.runs.metric_history(run.id, "loss") == []
    assert metadata_store.runs.find(parse_filter("metrics.loss > 0")) == []
