"""Every example in docs/ runs as the README says: the tour script and the example programs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import mloop
from mloop.project import Project

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"


def test_the_readme_tour_runs_start_to_end() -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # In a session of its own, so a time-out stops the servers the tour started in the background.
    tour = subprocess.Popen(
        ["bash", str(REPO / "docs" / "demo.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = tour.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(tour.pid, signal.SIGKILL)
        stdout, stderr = tour.communicate()
        raise AssertionError("the tour did not end in 600 s:\n" + stdout[-3000:]) from None
    done = subprocess.CompletedProcess(tour.args, tour.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "sales:2: 1 files" in out
    assert "used by run" in out  # lineage found the runs that used sales:1
    assert "all present and intact" in out
    assert "values differ (marked *)" in out
    assert "refused by the gates, as it should be" in out  # a weak model was not promoted
    assert '{"predictions":[' in out  # the served champion answered curl
    assert re.search(r"predicted \d+ rows with churn:\d+; wrote scored.csv", out)
    assert re.search(r"churn:\d+: reproduced", out)  # same metrics and model from the commit
    assert "digest:   match" in out
    assert "endpoint web: promoted" in out  # the canary climbed its steps on the tour's traffic
    assert "rolled back by the analysis, as it should be" in out  # the flaky version
    assert re.search(r"endpoint web: churn:\d+ wins", out)  # the A/B test named its winner
    assert "won the ab test" in out  # promoted with the test's numbers, in the history
    assert re.search(r"\d+ requests; answered by churn:\d+: \d+, churn:\d+: \d+", out)
    assert "connection errors 0" in out
    assert re.search(r"wrote \d+ rows of \d+ requests to 'web'", out)  # the prediction log
    assert re.search(r"error rate: +\d+\.\d\d%", out)  # monitor status, from the reports
    assert re.search(r"stored \d+ labels for endpoint .web. from labels.csv", out)  # mloop feedback
    assert re.search(r"classification from feedback: \d+ labelled", out)  # accuracy per version
    assert '"request_id","row","at","endpoint","model","role"' in out  # its CSV header
    # the drifted batch: monthly_charges moved, the inputs the tour left alone did not
    drifted = out.split("monitor status web --last 1500", 1)[1]
    assert re.search(r"monthly_charges +wasserstein +[\d.]+ +0\.1 +DRIFTED", drifted)
    assert re.search(r"tenure_months +wasserstein +[\d.e-]+ +0\.1 +no", drifted)
    assert re.search(r"contract +jensenshannon +[\d.e-]+ +0\.1 +no", drifted)
    assert re.search(r"wrote the report of \d+ requests to 'web' \(\d of 5 features drifted\)", out)
    assert "triggers.train[0].new_data  250 new rows in 1 file (threshold 200): fires" in out
    # the controller acts on it: one iteration, from the landed rows to the gates' verdict
    assert re.search(r"train iteration \w+: snapshotted: .* \(dataset churn:\d+\)", out)
    assert re.search(r"train iteration \w+: done, (held|passed): .* \(dataset churn:\d+", out)
    assert "controller.triggered" in out and "controller.retrained" in out
    # step 15: the loop by itself, each step said as the controller takes it
    loop = out.split("--interval 2s --metrics-port 9108", 1)[1]
    said = [
        r"triggered by triggers\.train\[0\]\.new_data: 300 new rows >= 200 in landing/",
        r"training: retraining \(dataset churn:\d+\)",
        r"registered: retrained, .* model churn:\d+\)",
        r"gated: the challenger passed the registry's gates",
        r"rolling_out: .* endpoint web, deployment \d+\)",
        r"done, promoted: the rollout promoted the challenger",
        r"triggered by triggers\.train\[0\]\.new_data: 300 new rows >= 200 in landing/",
        r"registered: retrained, ",
        r"rolling_out: ",
        r"done, rolled_back: rollback: the endpoint went back to the champion",
    ]
    at = 0
    for line in said:  # in this order: promoted first, then the broken one rolled back
        found = re.compile(rf"train iteration \w+: {line}").search(loop, at)
        assert found, f"{line!r} not after position {at}:\n{loop[at : at + 3000]}"
        at = found.end()
    assert "rolled back by the canary, as it should be" in loop
    assert re.search(r'mloop_controller_iterations_total\{outcome="promoted"\} 1\.0', loop)
    assert re.search(r'mloop_controller_iterations_total\{outcome="rolled_back"\} 1\.0', loop)
    events = loop.split("mloop events pipeline/train", 1)[1]
    for action in ("rolled_back", "deployed", "approved", "promoted", "retrained", "triggered"):
        assert f"controller.{action}" in events
    assert re.search(r"labels stored [1-9]\d*", loop)  # the traffic's feedback
    assert re.search(r"wrote the report of \d+ requests to 'web'", loop)


def test_train_example_logs_a_run_with_its_dataset(project: Path) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_sales.py"), "data/sales.csv", "--rows", "80"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    mloop.data.add("sales", "data/sales.csv")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "train.py"), "--alpha", "0.5"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("alpha=0.5 rmse=")
    tracking = Project.open().runs
    run = tracking.get(tracking.find(limit=1)[0].id)
    assert run.params == {"alpha": "0.5", "dataset": "sales"}
    assert [(i.kind, i.ref) for i in run.inputs] == [("dataset", "sales:1")]
    assert [o.name for o in run.outputs] == ["model/weights.txt"]
    assert run.metrics["rmse"].step == 19
