"""`mloop monitor export prometheus|grafana DIR` as an operator uses them: the rules pass the
real `promtool check rules` and their own `promtool test rules` cases (each alert fires on its
series and stays quiet before its hold), with default and other thresholds; a real Prometheus
scraping a real `mloop serve` loads them, and every dashboard panel is a query it answers."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from mloop.deploy.monitoring import PANELS
from tests.conftest import CliResult
from tests.integration.test_serve_endpoint import models, serving  # noqa: F401 - a fixture
from tests.servers import prometheus, wait_for

PROMTOOL = shutil.which("promtool") or "promtool"  # `make system` installs it with prometheus


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "options",
    [[], ["--max-error-rate", "5", "--max-p99", "2s", "--accuracy-margin", "0.1", "--for", "10m"]],
    ids=["defaults", "other-thresholds"],
)
def test_the_rules_pass_promtool_and_their_own_tests(
    cli: Callable[..., CliResult], tmp_path: Path, options: list[str]
) -> None:
    out = tmp_path / "rules"
    done = cli("monitor", "export", "prometheus", str(out), "--job", "servers", *options)
    assert done.code == 0, done.err
    checked = _promtool("check", "rules", "mloop-rules.yml", cwd=out)
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked
    tested = _promtool("test", "rules", "mloop-rules.test.yml", cwd=out)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    rules = (out / "mloop-rules.yml").read_text()
    for alert in ("ServerDown", "HighErrorRate", "HighLatency", "FeatureDrift", "AccuracyDrop"):
        assert f"alert: Mloop{alert}" in rules
    # a monitor that stopped (its keeper killed, a pass stuck) leaves stale gauges: that alerts
    assert "increase(mloop_monitor_passes_total[15m]) == 0" in rules
    assert 'up{job="servers"} == 0' in rules
    # the tests do test: a rule that never fires fails them
    _edit_drift_rule(out, lambda expr: f"mloop_drift_score < 0 and ({expr})")
    assert _promtool("test", "rules", "mloop-rules.test.yml", cwd=out).returncode != 0
    # ...and so does one that two replicas of an endpoint, exporting the same gauges, break
    # (many-to-many matching): the cases give every monitor gauge from instances a and b
    per_series = "mloop_drift_score > on(endpoint, model, feature, method) mloop_drift_threshold"
    _edit_drift_rule(out, lambda expr: per_series)
    many = _promtool("test", "rules", "mloop-rules.test.yml", cwd=out)
    assert many.returncode != 0 and "many-to-many" in many.stdout + many.stderr, many.stdout


def _edit_drift_rule(folder: Path, edit: Callable[[str], str]) -> None:
    """Rewrite MloopFeatureDrift's expression in the rule file (as generated) with `edit`."""
    path = folder / "mloop-rules.yml"
    rules = yaml.safe_load(path.read_text())
    (drift,) = [r for r in rules["groups"][0]["rules"] if r["alert"] == "MloopFeatureDrift"]
    drift["expr"] = edit(drift["expr"])
    path.write_text(yaml.safe_dump(rules))


def test_bad_input_is_one_line_and_overwrites_nothing(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "rules"
    assert cli("monitor", "export", "prometheus", str(out)).code == 0
    (out / "mloop-rules.yml").write_text("# edited by hand\n")
    again = cli("monitor", "export", "prometheus", str(out))
    assert (
        again.code == 1 and "already holds mloop-rules.yml" in again.err and "--force" in again.err
    )
    assert (out / "mloop-rules.yml").read_text() == "# edited by hand\n"
    assert cli("monitor", "export", "prometheus", str(out), "--force").code == 0
    assert "alert: MloopServerDown" in (out / "mloop-rules.yml").read_text()
    missing = cli("monitor", "export", "grafana")
    assert missing.code == 1 and "mloop monitor export grafana DIR" in missing.err
    rate = cli("monitor", "export", "prometheus", str(tmp_path / "x"), "--max-error-rate", "100")
    assert rate.code == 1 and "--max-error-rate" in rate.err
    silence = cli("monitor", "export", "prometheus", str(tmp_path / "x"), "--monitor-silence", "1m")
    assert silence.code == 1 and "--monitor-silence 1m is too short" in silence.err
    hold = cli("monitor", "export", "prometheus", str(tmp_path / "x"), "--for", "30s")
    assert hold.code == 1 and "--for '30s' is not whole minutes" in hold.err
    assert not (tmp_path / "x").exists()


def test_a_real_prometheus_loads_the_rules_and_answers_every_panel(
    models: Path,  # noqa: F811 - the fixture imported above
    cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    rules, boards = tmp_path / "rules", tmp_path / "grafana"
    assert cli("monitor", "export", "prometheus", str(rules)).code == 0
    assert cli("monitor", "export", "grafana", str(boards)).code == 0
    board = json.loads((boards / "mloop-dashboard.json").read_text())
    exprs = [p["targets"][0]["expr"] for p in board["panels"]]
    assert exprs == [expr for _, expr, _, _ in PANELS]
    assert board["templating"]["list"][0]["name"] == "endpoint"
    with serving(models) as url, prometheus([url], rules=[rules / "mloop-rules.yml"]) as prom:
        with httpx.Client(base_url=url) as client:
            for _ in range(20):
                assert client.post("/invocations", json={"inputs": [[0.1, 0.2, 0.3]]}).is_success

        def loaded() -> list[dict[str, object]]:
            groups = httpx.get(f"{prom}/api/v1/rules").json()["data"]["groups"]
            return [r for g in groups for r in g["rules"]]

        evaluated = lambda: [r["health"] for r in loaded()] == ["ok"] * 8  # noqa: E731
        wait_for(evaluated, 30, "the 8 rules loaded and evaluated without error")

        def query(expr: str) -> list[dict[str, object]]:
            answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}).json()
            assert answer["status"] == "success", (expr, answer)
            return list(answer["data"]["result"])

        requests = exprs[0].replace("$endpoint", "web")
        wait_for(lambda: len(query(requests)) == 1, 60, "the request rate of churn:1")
        assert query(requests)[0]["metric"] == {
            "endpoint": "web",
            "model": "churn:1",
            "role": "stable",
        }
        for expr in exprs:  # every panel is a query Prometheus answers
            query(expr.replace("$endpoint", ".*"))
        assert query('up{job="mloop"}')[0]["value"][1] == "1"
        # the series MloopMonitorStopped reads is the one the server exports
        assert len(query("mloop_monitor_passes_total")) == 1
