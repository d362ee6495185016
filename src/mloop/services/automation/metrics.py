"""The controller's metrics for Prometheus, read from the store at each scrape: iterations by
outcome (an alert on `mloop_controller_iterations_total{outcome="failed"}` sees a retrain that
failed), whether this process holds the lease, each trigger's failed checks in a row, and the
evaluations in a row that could not finish (kept in the process: the store may be down)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mloop.domain.controller import Outcome
from mloop.errors import MloopError

if TYPE_CHECKING:
    from mloop.services.automation.controller import Controller


class ControllerCollector(Collector):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def collect(self) -> Iterator[Metric]:
        failed = GaugeMetricFamily(
            "mloop_controller_evaluation_failures",
            "evaluations in a row that could not finish (the store unreachable); 0 once one does",
        )
        failed.add_metric([], float(self.controller.failures))
        yield failed
        up = GaugeMetricFamily(
            "mloop_controller_store_up", "1 if the controller's last look at the store worked"
        )
        try:
            status = self.controller.status(limit=1)
        except MloopError:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        ended = CounterMetricFamily(
            "mloop_controller_iterations",
            "iterations of the loop that ended, by outcome",
            labels=["outcome"],
        )
        for outcome in Outcome:
            ended.add_metric([str(outcome)], float(status.outcomes.get(str(outcome), 0)))
        yield ended
        leader = GaugeMetricFamily(
            "mloop_controller_leader", "1 if this process holds the controller lease"
        )
        leader.add_metric([], 1.0 if status.holder == self.controller.holder else 0.0)
        yield leader
        running = GaugeMetricFamily(
            "mloop_controller_iterations_in_progress", "iterations in progress, by pipeline",
            labels=["pipeline"],
        )  # fmt: skip
        for pipeline in self.controller.triggers.triggers:
            busy = any(i.pipeline == pipeline for i in status.current)
            running.add_metric([pipeline], 1.0 if busy else 0.0)
        yield running
        failing = GaugeMetricFamily(
            "mloop_controller_trigger_check_failures",
            "failed checks in a row of each trigger (a watched folder gone, a bucket failing)",
            labels=["trigger"],
        )
        for t in status.triggers:
            failing.add_metric([t.trigger], float(t.failures))
        yield failing
