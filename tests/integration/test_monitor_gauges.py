"""What a server's monitor measures for /metrics (`GaugeMonitor.measure`), on a real project
and a real prediction log: drift per served version against each version's own reference, the
registered metrics as the accuracy reference, a version without a reference named as a problem
while the rest is measured, and an empty window refused rather than measured as zeros."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import mloop
from mloop.cli.serve import ProjectMonitor
from mloop.errors import NotFound
from mloop.project import Project
from mloop.server.monitor import Monitor
from mloop.services.monitoring.gauges import GaugeMonitor, Measured
from mloop.services.serving.shared_gauges import SharedGauges
from tests.integration.test_drift_monitor import NAMES, frame, trained  # noqa: F401 - a fixture


def _samples(measured: Measured, name: str) -> dict[tuple[str, ...], float]:
    (family,) = [f for f in measured.families if f.name == name]
    return {labels: value for labels, value in family.samples}


def _log(opened: Project, rows: Any, model: str, role: str, at: float) -> None:
    loaded = opened.models.load_predictor(model)
    plog = opened.prediction_log(flush_seconds=3600.0, flush_requests=100)
    for i, first in enumerate(range(0, len(rows), 10)):
        request = rows.iloc[first : first + 10][list(NAMES)]
        plog.record("web", model, role, f"{model}-{i}", request, loaded.predict(request), at, NAMES)
    plog.close()


def test_each_version_is_measured_against_its_own_reference(
    trained: Project,  # noqa: F811 - the fixture imported above
    project: Path,
) -> None:
    with mloop.start_run("refit"):  # spend:2, from a run that read the same data
        data = mloop.data.get("train").to_pandas()
        encode = make_column_transformer(
            (OneHotEncoder(), ["plan", "trial"]), remainder="passthrough"
        )
        model = make_pipeline(encode, LinearRegression()).fit(data[list(NAMES)], data["spend"])
        mloop.log_metrics({"rmse": 5.0, "training_seconds": 2.0})
        mloop.register_model(model, "spend", input_example=data[list(NAMES)].head())
    mloop.register_model(model, "spend", input_example=data[list(NAMES)].head())  # spend:3
    rng = np.random.default_rng(11)
    now = time.time()
    _log(trained, frame(rng, 2000), "spend:1", "stable", now - 60)
    _log(trained, frame(rng, 2000, shift=1.0, pro=0.6), "spend:2", "canary", now - 60)
    _log(trained, frame(rng, 200), "spend:3", "shadow", now - 60)  # no training data named

    monitor = Project.open(project).gauges
    started = time.perf_counter()
    measured = monitor.measure("web", now)
    cost = time.perf_counter() - started
    assert cost < 30  # what it costs is on /metrics; here only that it finishes

    assert measured.problems == (
        "no drift for spend:3: spend:3 names no training dataset version to compare its "
        "traffic with",
    )
    assert _samples(measured, "mloop_monitor_window_requests") == {("web",): 420.0}
    scores = _samples(measured, "mloop_drift_score")
    limits = _samples(measured, "mloop_drift_threshold")
    assert {labels[1] for labels in scores} == {"spend:1", "spend:2"}
    assert {labels[2] for labels in scores if labels[1] == "spend:1"} == {*NAMES, "prediction"}
    drifted = {
        (labels[1], labels[2])
        for labels, score in scores.items()
        if score >= limits[labels]  # distances: over 1,000 rows each
    }
    assert drifted == {("spend:2", "age"), ("spend:2", "plan"), ("spend:2", "prediction")}
    assert ("web", "spend:1", "age", "wasserstein") in scores
    assert ("web", "spend:1", "plan", "jensenshannon") in scores
    # the registered metrics feedback can be held to (rmse), not the others; none unlabelled
    assert _samples(measured, "mloop_accuracy_reference") == {("web", "spend:2", "rmse"): 5.0}
    assert _samples(measured, "mloop_accuracy") == {}

    with pytest.raises(NotFound, match="no request to endpoint 'web' was logged"):
        monitor.measure("web", now + 7200)  # nothing in the last hour: said, not zeros
    # a busy endpoint: only the window's latest `monitoring_max_requests` are read and measured
    capped = GaugeMonitor(monitor.monitoring, monitor.window, max_requests=150)
    latest = capped.measure("web", now)
    assert _samples(latest, "mloop_monitor_window_requests") == {("web",): 150.0}


def _open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on `path`."""
    fds = Path("/proc/self/fd")
    found = 0
    for fd in fds.iterdir():
        try:
            found += Path(os.readlink(fd)) == path
        except OSError:
            continue  # closed since it was listed
    return found


def test_the_servers_monitor_closes_its_own_project_when_it_stops(project: Path) -> None:
    database = (project / ".mloop" / "mloop.db").resolve()
    before = _open_files(database)
    gauges = SharedGauges(4096)
    monitor = Monitor(partial(ProjectMonitor, str(project)), "web", gauges)
    assert not monitor.run_once() and gauges.read().passes == 1  # nothing logged yet
    assert _open_files(database) > before  # its own connection, opened by its first pass
    monitor.close()  # what its process does when it stops
    assert _open_files(database) == before
