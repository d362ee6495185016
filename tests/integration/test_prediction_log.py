"""The prediction log end to end on each backend: a real `PredictionLog` built by the project
writes, `mloop monitor export` reads a window back (Parquet, CSV, --last, --model), bad input is
one clear line, a missing file is named and left out, and gc expires what is past retention."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mloop.project import Project
from tests.conftest import CliResult

BACKENDS = [
    pytest.param("sqlite", "local", id="sqlite-local"),
    pytest.param("postgres", "s3", id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
]
NAMES = ("age", "income")


def _serve(root: Path, start: float, count: int, model: str = "churn:3", offset: int = 0) -> None:
    """What a server process does: one log, a record per answer, close on shutdown."""
    project = Project.open(root)
    plog = project.prediction_log(flush_seconds=3600.0, flush_requests=40)
    for i in range(offset, offset + count):
        rows = np.array([[float(i), 10.0 * i], [float(i), 1.0]])  # two rows per request
        plog.record("web", model, "stable", f"r{i}", rows, np.array([1, 0]), start + i, NAMES)
    plog.close()
    assert (plog.written, plog.dropped) == (count, 0)
    project.close()


@pytest.mark.parametrize(("store", "artifacts"), BACKENDS)
def test_export_reads_a_window_back_on_each_backend(
    make_project: Callable[..., Path], cli: Callable[..., CliResult], store: str, artifacts: str
) -> None:
    root = make_project(store=store, artifacts=artifacts)
    now = time.time()
    _serve(root, now - 7200, 100)  # two hours ago
    _serve(root, now - 600, 50, model="churn:4", offset=100)  # ten minutes ago

    done = cli("monitor", "export", "web", "--since", "1h", "-o", "recent.parquet", "--json")
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert (summary["rows"], summary["requests"], summary["file"]) == (100, 50, "recent.parquet")
    table = pq.read_table(root / "recent.parquet")
    assert set(table.column("model").to_pylist()) == {"churn:4"}
    assert table.column("request_id").to_pylist()[:4] == ["r100", "r100", "r101", "r101"]
    assert table.column("feature.income").to_pylist()[:2] == [1000.0, 1.0]

    done = cli("monitor", "export", "web", "--last", "3", "--model", "churn:3", "-o", "l.csv")
    assert done.code == 0, done.err
    assert "wrote 6 rows of 3 requests" in done.out
    last = pacsv.read_csv(root / "l.csv")
    assert last.column("request_id").to_pylist() == ["r97", "r97", "r98", "r98", "r99", "r99"]

    moment = datetime.fromtimestamp(now - 7200 + 9.5, UTC).replace(tzinfo=None)
    until = moment.isoformat()  # no zone: read as UTC
    done = cli("monitor", "export", "web", "--until", until, "-o", "first.csv", "--json")
    assert json.loads(done.out)["requests"] == 10  # r0 .. r9, an ISO time read as UTC


def test_bad_input_is_one_clear_line(project: Path, cli: Callable[..., CliResult]) -> None:
    _serve(project, time.time() - 7200, 5)

    cases = {
        ("nope",): "no endpoint 'nope'",
        ("web", "--since", "10m"): "no request to endpoint 'web' was logged in",
        ("web", "--since", "yesterday"): "--since 'yesterday' is neither a time nor an age",
        ("web", "--since", "1h", "--until", "3h"): "the window starts (1h) after it ends (3h)",
        ("web", "--model", "churn@champion"): "the log names versions, not aliases",
    }
    for args, message in cases.items():
        done = cli("monitor", "export", *args, "-o", "out.csv")
        assert done.code == 1 and message in done.err, (args, done.err)
        assert "Traceback" not in done.err and not (project / "out.csv").exists()
    done = cli("monitor", "export", "web", "-o", "out.txt")
    assert done.code == 1 and "name the file .parquet (or .pq) or .csv" in done.err
    done = cli("monitor", "export", "web", "-o", "no/such/folder/out.csv")
    assert done.code == 1 and "no/such/folder/out.csv': No such file" in done.err


def test_a_missing_file_is_named_and_left_out(project: Path, cli: Callable[..., CliResult]) -> None:
    now = time.time()
    _serve(project, now - 300, 40)  # one file
    _serve(project, now - 200, 40, offset=40)  # another
    opened = Project.open(project)
    lost = opened.metadata.predictions.find("web")[0]  # the newer one
    opened.artifacts.delete(lost.digest)

    done = cli("monitor", "export", "web", "-o", "out.parquet", "--json")
    assert done.code == 0, done.err
    assert f"prediction log file {lost.digest[:12]}" in done.err and "mloop fsck" in done.err
    assert json.loads(done.out)["missing"] == [lost.id]
    assert pq.read_table(project / "out.parquet").num_rows == 80  # the other file's rows
    opened.artifacts.delete(opened.metadata.predictions.find("web")[1].digest)
    done = cli("monitor", "export", "web", "-o", "none.parquet")
    assert done.code == 1 and "every file of the prediction log of endpoint 'web'" in done.err


def test_gc_expires_what_is_past_retention(
    project: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    _serve(project, now - 40 * 86_400, 5)  # forty days ago
    _serve(project, now - 60, 5, offset=5)
    monkeypatch.setenv("MLOOP_PREDICTIONS_RETENTION", "30d")

    planned = json.loads(cli("gc", "--dry-run", "--grace", "0", "--json").out)
    assert len(planned["expired_predictions"]) == 1 and len(planned["removed"]) == 1
    done = cli("gc", "--grace", "0")
    assert done.code == 0 and "expired 1 prediction log files" in done.out
    exported = json.loads(cli("monitor", "export", "web", "-o", "all.csv", "--json").out)
    assert (exported["requests"], exported["missing"]) == (5, [])
    events = json.loads(cli("events", "--json").out)
    assert any(e["action"] == "predictions.expired" for e in events)
