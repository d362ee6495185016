"""Serving metrics: Prometheus text that parses, counts by status, sums over workers."""

from __future__ import annotations

import multiprocessing
import time

from prometheus_client.parser import text_string_to_metric_families

from mloop.services.serving.metrics import ENDPOINTS, ServingMetrics, SharedCounters


def samples(metrics: ServingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


INVOCATIONS = ENDPOINTS.index("invocations")


def test_requests_are_counted_by_endpoint_and_status() -> None:
    metrics = ServingMetrics(model="churn", version=3)
    for status, seconds in ((200, 0.0003), (200, 0.004), (422, 0.0002), (418, 0.1)):
        metrics.request(INVOCATIONS, status, seconds)
    found = samples(metrics)
    key = "mloop_requests_total"
    assert found[(key, (("endpoint", "invocations"), ("status", "200")))] == 2
    assert found[(key, (("endpoint", "invocations"), ("status", "422")))] == 1
    assert found[(key, (("endpoint", "invocations"), ("status", "other")))] == 1
    bucket = "mloop_request_duration_seconds_bucket"
    assert found[(bucket, (("endpoint", "invocations"), ("le", "0.0005")))] == 2
    assert found[(bucket, (("endpoint", "invocations"), ("le", "+Inf")))] == 4
    assert found[("mloop_model_info", (("name", "churn"), ("version", "3")))] == 1
    assert found[("process_resident_memory_bytes", ())] > 0
    assert 0 < time.time() - found[("process_start_time_seconds", ())] < 60  # uptime


def test_batches_in_flight_and_load_time() -> None:
    metrics = ServingMetrics()
    metrics.batch(rows=32, requests=30, seconds=0.0002)
    metrics.enter()
    metrics.loaded(1.25)
    found = samples(metrics)
    assert found[("mloop_batch_rows_bucket", (("le", "16"),))] == 0
    assert found[("mloop_batch_rows_bucket", (("le", "32"),))] == 1
    assert found[("mloop_batch_rows_sum", ())] == 32
    assert found[("mloop_batch_requests_sum", ())] == 30
    assert found[("mloop_requests_in_flight", ())] == 1
    assert found[("mloop_model_load_seconds", ())] == 1.25


def _count_in_child(counters: SharedCounters) -> None:
    ServingMetrics(counters, worker=1).request(INVOCATIONS, 200, 0.001)


def test_a_scrape_adds_up_every_forked_worker() -> None:
    counters = SharedCounters(2)
    metrics = ServingMetrics(counters, worker=0)
    metrics.request(INVOCATIONS, 200, 0.001)
    child = multiprocessing.get_context("fork").Process(target=_count_in_child, args=(counters,))
    child.start()
    child.join()
    found = samples(metrics)
    assert found[("mloop_requests_total", (("endpoint", "invocations"), ("status", "200")))] == 2


def _unknown_in_child(counters: SharedCounters) -> None:
    ServingMetrics(counters, worker=1).unknown_categories(1, 4)


def test_unknown_categories_are_counted_by_column_over_every_worker() -> None:
    counters = SharedCounters(2)
    metrics = ServingMetrics(counters, worker=0)
    metrics.watch_categories(["region", "plan"])
    key = "mloop_unknown_categories_total"
    assert samples(metrics)[(key, (("column", "plan"),))] == 0  # visible before the first
    metrics.unknown_categories(0, 2)
    child = multiprocessing.get_context("fork").Process(target=_unknown_in_child, args=(counters,))
    child.start()
    child.join()
    found = samples(metrics)
    assert found[(key, (("column", "region"),))] == 2
    assert found[(key, (("column", "plan"),))] == 4


def test_columns_past_the_counted_ones_share_the_last_slot() -> None:
    metrics = ServingMetrics()
    many = [f"c{i}" for i in range(40)]
    metrics.watch_categories(many)
    metrics.unknown_categories(35, 1)
    metrics.unknown_categories(31, 1)
    found = samples(metrics)
    assert found[("mloop_unknown_categories_total", (("column", "(others)"),))] == 2
    assert ("mloop_unknown_categories_total", (("column", "c31"),)) not in found
