"""The monitor's shared region: what one process publishes, another (forked) process reads
whole; a result too large keeps what fits and counts the rest; a reader racing the writer never
sees a torn blob; /metrics shows it all."""

from __future__ import annotations

import multiprocessing
import os

from prometheus_client.parser import text_string_to_metric_families

from mloop.services.serving.metrics import ServingMetrics, SharedCounters
from mloop.services.serving.shared_gauges import SharedGauges

DRIFT = ("endpoint", "model", "feature", "method")


def _drift(scores: dict[str, float]) -> list[tuple[str, str, list[str], list[object]]]:
    samples = [(["web", "churn:1", f, "psi"], v) for f, v in scores.items()]
    return [("mloop_drift_score", "Drift", list(DRIFT), samples)]


def test_a_forked_reader_sees_what_was_published_and_failures_keep_it() -> None:
    board = SharedGauges(4096)
    assert board.read().families == () and board.read().last_run == 0.0
    board.publish(_drift({"age": 0.4, "income": 0.02}), 0.25)
    context = multiprocessing.get_context("fork")
    to_parent, from_child = context.Pipe(duplex=False)
    to_child, from_parent = context.Pipe(duplex=False)
    pid = os.fork()
    if pid == 0:  # the child reads what the parent published before the fork, and after
        found = board.read()
        from_child.send((found.families, found.passes, found.duration))
        to_child.recv()
        from_child.send(board.read().families)
        os._exit(0)
    families, passes, duration = to_parent.recv()
    assert families == (
        (
            "mloop_drift_score",
            "Drift",
            DRIFT,
            (
                (("web", "churn:1", "age", "psi"), 0.4),
                (("web", "churn:1", "income", "psi"), 0.02),
            ),
        ),
    )
    assert passes == 1.0 and duration == 0.25
    board.publish(_drift({"age": 0.9}), 0.1)
    from_parent.send(True)
    assert to_parent.recv()[0][3] == ((("web", "churn:1", "age", "psi"), 0.9),)
    os.waitpid(pid, 0)
    board.failed()
    after = board.read()
    assert after.errors == 1.0 and after.passes == 3.0
    assert after.families[0][3] == ((("web", "churn:1", "age", "psi"), 0.9),)  # kept


def test_a_result_too_large_keeps_what_fits_and_counts_the_rest() -> None:
    board = SharedGauges(1024)
    board.publish(_drift({f"feature_{i:03d}": i / 100 for i in range(100)}), 0.5)
    found = board.read()
    kept = found.families[0][3]
    assert 0 < len(kept) < 100 and found.dropped == 100 - len(kept)
    assert [values[2] for values, _ in kept] == [f"feature_{i:03d}" for i in range(len(kept))]
    board.publish(_drift({"age": 0.1}), 0.5)  # a smaller result fits whole again
    assert board.read().dropped == 0 and len(board.read().families[0][3]) == 1


def test_a_reader_racing_the_writer_sees_only_whole_results() -> None:
    board = SharedGauges(64 * 1024)
    stop = multiprocessing.get_context("fork").Event()
    pid = os.fork()
    if pid == 0:  # the writer: each result has every score equal to its round
        n = 0
        while not stop.is_set():
            n += 1
            board.publish(_drift({f"f{i}": float(n) for i in range(300)}), 0.0)
        os._exit(0)
    seen = set()
    try:
        while len(seen) < 50:
            found = board.read()
            if not found.families:
                continue
            values = {value for _, value in found.families[0][3]}
            assert len(values) == 1 and len(found.families[0][3]) == 300, "a torn result"
            seen |= values
    finally:
        stop.set()
        os.waitpid(pid, 0)


def test_metrics_show_the_gauges_and_the_monitor_counts_only_when_monitored() -> None:
    counters = SharedCounters(2)
    plain = ServingMetrics(counters, 1).render().decode()
    assert "mloop_monitor_" not in plain
    counters.monitored = True
    counters.gauges.publish(_drift({"age": 0.4}), 0.03)
    counters.gauges.failed()
    text = ServingMetrics(counters, 1).render().decode()
    found = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = found["mloop_drift_score"].samples
    assert sample.labels == dict(zip(DRIFT, ("web", "churn:1", "age", "psi"), strict=True))
    assert sample.value == 0.4
    assert found["mloop_monitor_errors"].samples[0].value == 1.0
    assert found["mloop_monitor_passes"].samples[0].value == 2.0
    assert found["mloop_monitor_last_run_timestamp_seconds"].samples[0].value > 0
    assert found["mloop_monitor_duration_seconds"].samples[0].value == 0.03
