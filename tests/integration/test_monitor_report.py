"""`mloop monitor report`: a real project (two versions of a classifier registered from a run
that read a dataset), two hours of logged traffic whose second hour moved on `age`, the
servers' reports, labels stored with `mloop feedback`; the HTML report opened in the real
Chromium with the network blocked. And the per-bucket drift series against
`DriftMonitor.compare` on each bucket's rows."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import mloop
from mloop.domain.analysis import VersionStats
from mloop.domain.prediction import Window
from mloop.project import Project
from mloop.services.monitoring.drift import DriftMonitor
from mloop.services.monitoring.timeline import bucket_starts, bucket_step, pinned_rules, timeline
from tests.conftest import CliResult
from tests.integration.test_model_card import CHROMIUM, CHROMIUM_ARGS

HOSTILE = "<b>x</b>"  # a feature name with markup in it: shown as written, never as bold
NAMES = ("plan", HOSTILE, "age", "group")  # the drifted one not first
CONFIG = """
bias_columns: [group]
models:
  churn:
    holdout: train
    label: churn
    gates:
      - demographic_parity(group) <= 0.5
"""
ROWS = 20  # per request: a 15-minute bucket holds 1,200 rows
REQUESTS = 240  # per hour, two hours


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    data = pd.DataFrame(
        {
            "age": rng.normal(40 + 15 * shift, 10, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]),
            HOSTILE: rng.normal(0, 1, n),
            "group": rng.choice(["a", "b"], n),
        }
    )
    score = (data.age - 40) / 10 + data[HOSTILE] + (data.plan == "pro") + rng.normal(0, 1, n)
    data["churn"] = (score > 0.5).astype(int)
    return data


@dataclass
class Traffic:
    """What the test logged and labelled, to compute the report's numbers independently."""

    answers: pd.DataFrame  # request_id, row, model, age, group, prediction, label (NaN: none)
    first: float


@pytest.fixture
def traffic(project: Path, cli: Callable[..., CliResult]) -> Traffic:
    rng = np.random.default_rng(11)
    (project / "data").mkdir()
    frame(rng, 4000).to_csv(project / "data/train.csv", index=False)
    (project / "mloop.yaml").write_text((project / "mloop.yaml").read_text() + CONFIG)
    mloop.data.add("train", "data/train.csv")
    for c in (1.0, 0.01):
        with mloop.start_run("fit"):
            data = mloop.data.get("train").to_pandas()
            encode = make_column_transformer(
                (OneHotEncoder(), ["plan", "group"]), remainder="passthrough"
            )
            model = make_pipeline(encode, LogisticRegression(C=c, max_iter=500))
            model.fit(data[list(NAMES)], data["churn"])
            mloop.register_model(model, "churn", input_example=data[list(NAMES)].head())
    opened = Project.open(project)
    loaded = {m: opened.models.load_predictor(m) for m in ("churn:1", "churn:2")}
    first = (time.time() // 3600 - 3) * 3600  # on the hour: no bucket holds both hours
    plog = opened.prediction_log(flush_seconds=3600.0, flush_requests=100)
    logged = []
    for hour, shift in ((0, 0.0), (1, 1.0)):  # the second hour: older customers
        rows = frame(rng, REQUESTS * ROWS, shift)
        for i in range(REQUESTS):
            request = rows.iloc[i * ROWS : (i + 1) * ROWS]
            model = "churn:2" if i % 5 == 0 else "churn:1"
            role = "canary" if model == "churn:2" else "stable"
            answers = loaded[model].predict(request[list(NAMES)])
            rid, at = f"q{hour}-{i}", first + hour * 3600.0 + i * 3600.0 / REQUESTS
            plog.record("web", model, role, rid, request[list(NAMES)], answers, at, NAMES)
            logged.append(
                request.assign(
                    request_id=rid, row=range(ROWS), model=model, prediction=answers
                ).reset_index(drop=True)
            )
            if i % 10 == 0:  # what the servers report every few seconds
                took = [0.002 + 0.001 * k for k in range(10)] if hour else [0.001] * 10
                seen = {m: VersionStats.measured(took, errors=hour) for m in loaded}
                opened.metadata.endpoints.report("web", 1, "host:1", at + 1.0, seen)
    plog.close()
    assert plog.dropped == 0
    opened.close()
    answers = pd.concat(logged, ignore_index=True)
    labelled = answers[answers.request_id.str.endswith(("0", "2", "4", "7"))]  # 40% of them
    labelled[["request_id", "row", "churn"]].to_csv(project / "labels.csv", index=False)
    stored = cli(
        "feedback", "web", "labels.csv", "--id-column", "request_id", "--label-column", "churn",
        "--row-column", "row",
    )  # fmt: skip
    assert stored.code == 0, stored.err
    answers["label"] = np.where(answers.index.isin(labelled.index), answers.churn, np.nan)
    return Traffic(answers, first)


def test_the_report_renders_offline_in_chromium_with_every_section(
    project: Path, traffic: Traffic, cli: Callable[..., CliResult]
) -> None:
    from playwright.sync_api import Route, sync_playwright

    done = cli("monitor", "report", "web", "--html", "report.html")
    assert done.code == 0, done.err
    assert done.out.startswith("wrote the report of 480 requests to 'web' (1 of 4 features drifted")
    page_text = (project / "report.html").read_text()
    again = cli("monitor", "report", "web", "--html", "report.html")  # refused: not replaced
    assert again.code == 1 and "report.html already exists" in again.err
    assert "--force" in again.err and (project / "report.html").read_text() == page_text
    summary = cli("monitor", "report", "web", "--html", "report.html", "--force", "--json")
    assert summary.code == 0, summary.err
    plain = json.loads(summary.out)
    assert plain["drifted"] == ["age"] and plain["requests"] == 480
    assert plain["bytes"] == (project / "report.html").stat().st_size
    # nothing but the generation line depends on when the report was made (the first one
    # also noted that the reference was summarised, once)
    generated = re.compile(r"Generated by mloop on [^<]*")
    rewritten = (project / "report.html").read_text()
    assert cli("monitor", "report", "web", "--html", "report.html", "--force").code == 0
    third = (project / "report.html").read_text()
    assert generated.sub("", third) == generated.sub("", rewritten) != third

    # 4 inputs and the answers, drift over time, accuracy over time, latency and errors
    figures = 5 + 3
    blocked: list[str] = []
    errors: list[str] = []

    def only_files(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_files)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto((project / "report.html").as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot').length === {figures}",
                timeout=30_000,
            )
            drawn = page.eval_on_selector_all(
                ".js-plotly-plot",
                "plots => plots.map(p => p.querySelectorAll('svg.main-svg').length)",
            )
            bars = page.locator("figure.histogram .bars path").count()
            lines = page.locator(".js-plotly-plot .scatterlayer .trace").count()
            order = page.eval_on_selector_all(
                "figure.histogram", "found => found.map(f => f.dataset.feature)"
            )
            captions = {
                name: page.locator(f"figure.histogram >> nth={n} >> figcaption").inner_text()
                for n, name in enumerate(order)
            }
            titles = page.locator(".js-plotly-plot .xtitle").all_text_contents()
            bold = page.locator("main b").count()
            body = page.inner_text("body")
            accuracy = {
                cells[0]: cells
                for cells in page.eval_on_selector_all(
                    "#accuracy-table tr",
                    "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.innerText))",
                )
                if cells
            }
            bias = page.eval_on_selector_all(
                "table.bias",
                "tables => tables.map(t => [t.caption.innerText, [...t.querySelectorAll('tr')]"
                ".slice(1).map(r => [...r.querySelectorAll('td')].map(c => c.innerText))])",
            )
        finally:
            browser.close()
    assert blocked == [] and errors == []
    assert len(drawn) == figures and all(count >= 1 for count in drawn)
    assert bars > 0 and lines > 0

    # the drifted input first and marked, the others not
    assert order[0] == "age" and order[-1] == "prediction"
    assert set(order) == {*NAMES, "prediction"}
    assert "DRIFTED" in captions["age"]
    assert "no drift" in captions["plan"] and "DRIFTED" not in captions["plan"]

    # a name with markup in it is text, in the page and in plotly's titles
    assert HOSTILE in body and bold == 0 and HOSTILE in titles

    # accuracy per version, as the test computes it from what it sent and labelled
    answers = traffic.answers
    for model in ("churn:1", "churn:2"):
        mine = answers[(answers.model == model) & answers.label.notna()]
        expected = float(np.mean(mine.prediction == mine.label))
        shown = accuracy[model]
        assert int(shown[2]) == len(mine)
        assert float(shown[3]) == pytest.approx(expected, abs=5e-4)

    # bias: one table per version, a row per group, the gate's bound judged
    assert len(bias) == 2
    for caption, rows in bias:
        model = "churn:1" if "churn:1" in caption else "churn:2"
        mine = answers[answers.model == model]
        rates = mine.groupby("group").prediction.apply(lambda p: float(np.mean(p == 1)))
        assert [r[0] for r in rows] == ["a", "b"]
        assert [int(r[1]) for r in rows] == mine.groupby("group").size().tolist()
        assert [float(r[2]) for r in rows] == pytest.approx(rates.tolist(), abs=5e-4)
        gap = abs(rates["a"] - rates["b"])
        assert f"demographic parity difference {gap:.4g} (<= 0.5: pass)" in caption


def test_no_requests_no_labels_no_plotly_no_folder(
    project: Path, traffic: Traffic, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = cli("monitor", "report", "web", "--until", "2001-01-01", "--html", "empty.html")
    assert empty.code == 1 and "no request to endpoint 'web' was logged in" in empty.err
    assert "Traceback" not in empty.err and not (project / "empty.html").exists()
    # the newest request has no label yet: the page says how to send some
    last = cli("monitor", "report", "web", "--last", "1", "--html", "last.html", "--json")
    assert last.code == 0, last.err
    assert json.loads(last.out)["labelled"] is None and json.loads(last.out)["requests"] == 1
    page = (project / "last.html").read_text()
    assert "No feedback yet" in page and "mloop feedback web labels.csv --id-column" in page
    assert 'id="accuracy-table"' not in page
    folder = cli("monitor", "report", "web", "--html", "no/such/report.html")
    assert folder.code == 1 and "no folder 'no/such'" in folder.err
    for name in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if the report extra were not installed
    missing = cli("monitor", "report", "web", "--html", "report.html")
    assert missing.code == 1 and "pip install 'mloop[report]'" in missing.err
    assert not (project / "report.html").exists()


def test_bucket_boundaries() -> None:
    assert bucket_step(1000.0, 1000.0 + 7200) == 900.0  # two hours: 8 quarters, at most 12
    assert bucket_step(0.0, 59.0) == 60.0 and bucket_step(0.0, 30 * 86_400.0) == 7 * 86_400.0
    starts = bucket_starts(1000.0, 1000.0 + 7200, 900.0)
    assert starts[0] == 900.0 and starts[-1] == 8100.0  # the ones holding the first and last
    assert np.diff(starts).tolist() == [900.0] * (len(starts) - 1)


def test_each_bucket_scores_as_compare_on_its_rows(project: Path, traffic: Traffic) -> None:
    opened = Project.open(project)
    try:
        found = opened.predictions.read("web", Window()).table
        status = opened.monitoring.status_of("web", Window(), found)
        rules = pinned_rules(status.features, status.prediction)
        assert rules["age"].method == "wasserstein"  # the window's 9,600 rows: a distance
        line = timeline(opened.metadata, opened.drift, "web", Window(), found, rules)
        same = DriftMonitor(
            opened.models, opened.data, opened.predictions, opened.drift.cache, thresholds=rules
        )
        at = found.column("at").to_numpy()
        assert sum(b.requests for b in line.buckets) == status.requests
        assert line.buckets[0].start <= at.min() and at.max() < line.buckets[-1].end
        quiet, moved = [], []
        for bucket in line.buckets:
            inside = (at >= bucket.start) & (at < bucket.end)
            if not inside.any():
                assert set(bucket.scores.values()) == {None}
                continue
            rows = found.filter(inside)
            report = same.compare("web", Window(), rows)
            assert bucket.scores["age"] == report.features["age"].score
            assert bucket.scores["prediction"] == report.prediction.score
            assert bucket.scores["plan"] == report.features["plan"].score
            (moved if bucket.start >= traffic.first + 3600 else quiet).append(bucket)
        age = rules["age"].threshold
        assert quiet and all(b.scores["age"] < age for b in quiet)
        assert moved and all(b.scores["age"] >= age for b in moved)
        # the servers' reports of each bucket: the second hour answered slower, with errors
        assert all(b.error_rate == 0 for b in quiet) and all(b.error_rate > 0 for b in moved)
        assert max(b.p99 for b in quiet) < min(b.p99 for b in moved)
        # `--model churn` takes all its versions: their reports too, as their logged requests
        named = opened.monitoring.status("web", Window(model="churn"))
        assert named.requests == status.requests
        assert named.error_rate == status.error_rate and status.error_rate is not None
    finally:
        opened.close()
