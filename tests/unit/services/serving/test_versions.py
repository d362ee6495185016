"""Per-version serving counters: shared blocks that follow versions as they come and go, the
interval counts the rollout analysis takes, the shadow's agreement rule, and the sticky keys
read from payloads."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mloop.errors import InvalidInput, MloopError
from mloop.server.routing import csv_key, mlflow_key, oip_key, request_id
from mloop.server.slots import ServedVersion, ServingPlan, weighted
from mloop.services.serving.intervals import Intervals
from mloop.services.serving.shadow import agree
from mloop.services.serving.versions import (
    REQUESTS,
    SLOTS,
    Labels,
    VersionBlocks,
    VersionCounters,
)


def test_workers_blocks_add_up_by_labels_and_a_retired_block_keeps_its_series() -> None:
    counters = VersionCounters(2)
    first, second = VersionBlocks(counters, 0), VersionBlocks(counters, 1)
    v1 = Labels("churn", "churn:1", "stable")
    first.take(v1).request(200, 0.001)
    second.take(v1).request(200, 0.002)
    second.take(Labels("churn", "churn:2", "canary")).request(500, 0.003)
    totals = dict(counters.totals())
    assert totals[v1][REQUESTS] == 2
    first.release(v1)
    assert dict(counters.totals())[v1][REQUESTS] == 2  # released, still counted
    again = first.take(v1)  # a rollback counts on where it stopped
    again.request(200, 0.001)
    assert dict(counters.totals())[v1][REQUESTS] == 3


def test_a_worker_reuses_the_oldest_released_block_once_all_are_used() -> None:
    blocks = VersionBlocks(VersionCounters(1), 0)
    labels = [Labels("e", f"m:{i}", "stable") for i in range(SLOTS)]
    for found in labels:
        blocks.take(found)
    with pytest.raises(MloopError, match="versions at once"):
        blocks.take(Labels("e", "m:99", "stable"))
    blocks.release(labels[3])
    blocks.take(Labels("e", "m:99", "stable"))
    names = {found.model for found, _ in blocks.counters.totals()}
    assert "m:3" not in names and "m:99" in names


def test_intervals_are_taken_and_reset_and_a_retired_version_is_handed_over_once() -> None:
    intervals = Intervals("churn")
    counts = intervals.counts("churn:1", "stable")
    counts.add(200, 0.004)
    counts.add(503, 2.0)
    intervals.retire("churn:1", "stable")
    taken = intervals.take()["versions"]
    assert [(v["requests"], v["errors"], sum(v["latency_buckets"])) for v in taken] == [(2, 1, 2)]
    assert intervals.take()["versions"] == []


def test_predictions_agree_as_labels_or_close_numbers() -> None:
    assert agree(np.array([1, 0]), np.array([1, 0]))
    assert not agree(np.array([1, 0]), np.array([1, 1]))
    assert agree(np.array([0.25]), np.array([0.25 + 1e-12]))
    assert not agree(np.array([0.25]), np.array([0.3]))
    assert not agree(np.array([1, 0]), np.array([1]))


def test_the_sticky_field_is_read_from_every_payload_shape() -> None:
    assert mlflow_key({"dataframe_split": {"columns": ["x", "u"], "data": [[1, "a"]]}}, "u") == b"a"
    assert mlflow_key({"inputs": {"u": [7, 8]}}, "u") == b"7"
    assert mlflow_key({"instances": [{"u": 1.5}]}, "u") == b"1.5"
    assert mlflow_key({"inputs": [[1, 2]]}, "u") is None  # rows without names carry no key
    tensor = {"name": "u", "shape": [2], "datatype": "FP64", "data": [7, 8]}
    assert oip_key({"inputs": [tensor]}, "u") == b"7"
    assert csv_key(b"x,u\n1,a\n2,b\n", "u") == b"a"
    assert csv_key(b"x\n1\n", "u") is None


def test_a_weighted_choice_is_sticky_by_key_and_never_picks_a_shadow() -> None:
    versions = (
        ServedVersion("m:1", "stable", 90),
        ServedVersion("m:2", "canary", 10),
        ServedVersion("m:3", "shadow", 0),
    )
    choose = weighted(versions)
    picks = [choose(f"user-{i}".encode()) for i in range(2000)]
    assert picks == [choose(f"user-{i}".encode()) for i in range(2000)]
    assert set(picks) == {0, 1} and 100 < picks.count(1) < 300


def test_a_plan_needs_a_version_that_answers_and_a_known_sticky_kind() -> None:
    with pytest.raises(InvalidInput, match="no version to answer"):
        ServingPlan("e", (ServedVersion("m:1", "shadow", 0),))
    with pytest.raises(InvalidInput, match="neither header:NAME nor field:NAME"):
        ServingPlan("e", (ServedVersion("m:1"),), sticky="cookie:id")


def test_a_forked_worker_makes_request_ids_of_its_own() -> None:
    """Workers are forked from the server: a child that kept its parent's id prefix and counter
    would hand out the parent's next ids, and labels would join to the wrong requests."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, then out without running pytest's teardown
        os.write(write, b",".join(request_id([]) for _ in range(3)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().split(b",")
    os.waitpid(pid, 0)
    ours = [request_id([]) for _ in range(3)]
    assert len(set(child)) == 3 and not set(child) & set(ours)
    assert {len(i) for i in child + ours} == {32}
    assert {i[:16] for i in child} != {i[:16] for i in ours}
