"""Prometheus alert rules and a Grafana dashboard for mloop's model servers:
`mloop monitor export prometheus DIR` and `mloop monitor export grafana DIR`.

The rules and panels read the series `mloop serve` exposes on /metrics: per version (labels
`endpoint`, `model` as NAME:V, `role`) `mloop_model_requests_total`, `mloop_model_errors_total`,
`mloop_model_request_duration_seconds`, the A/B outcomes and shadow copies; the monitor's gauges
`mloop_drift_score` against `mloop_drift_threshold` (labels `endpoint`, `model`, `feature`,
`method`; the predictions as feature `prediction`), `mloop_accuracy` against the version's
registered `mloop_accuracy_reference` (label `metric`), `mloop_bias` against `mloop_bias_bound`
(labels `column`, `measure`); and `mloop_prediction_log_dropped_total`. Each alert is written
with a `promtool test rules` case that fires it, so `promtool test rules` proves the rules do
what their names say before anyone relies on them.

Every replica of an endpoint runs its own monitor over the same shared log, so each exports the
same monitor series under its own `instance`: the rules aggregate them first (`max by`, `min
by` for accuracy), since matching two series per side is an error in PromQL, and the cases give
every such series from two instances. A drift score is a distance (drifted at or above its
threshold) except for the tests a small window is judged by, KS and chi-square, whose score is
a p-value (drifted below it); the drift rule reads both.

Thresholds are the rollout's defaults (Flagger's): a 1% error rate, a 500 ms p99; an accuracy
more than 0.05 below the version's registered one. Each is an option.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.deploy.kubernetes import dump_yaml
from mloop.errors import InvalidInput

RULES = "mloop-rules.yml"
RULE_TESTS = "mloop-rules.test.yml"
PROMETHEUS_EXAMPLE = "prometheus.yml.example"
DASHBOARD = "mloop-dashboard.json"
VERSION = "endpoint, model"  # what an alert is about: one version on one endpoint
DRIFT = f"{VERSION}, feature, method"
BIAS = f"{VERSION}, column, measure"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What the alerts hold the servers to."""

    job: str = "mloop"  # the scrape job of the model servers (for "server down")
    max_error_rate: float = 0.01  # of requests answered with a 5xx
    max_p99: float = 0.5  # seconds
    accuracy_margin: float = 0.05  # below the version's registered accuracy
    hold: str = "5m"  # how long a condition lasts before it fires
    # no monitor pass in this long: its gauges are stale (well above `monitoring_interval`)
    monitor_silence: str = "15m"

    def __post_init__(self) -> None:
        if not 0 < self.max_error_rate < 1:
            raise InvalidInput(
                f"an error rate of {self.max_error_rate:g} is not a fraction of requests",
                "give --max-error-rate as a percent above 0 and below 100, e.g. 1",
            )
        if self.max_p99 <= 0 or not 0 <= self.accuracy_margin < 1:
            raise InvalidInput(
                "--max-p99 must be above 0 and --accuracy-margin from 0 to 1",
                "e.g. --max-p99 500ms --accuracy-margin 0.05",
            )
        _minutes(self.hold, "--for")
        if _minutes(self.monitor_silence, "--monitor-silence") < 2:
            raise InvalidInput(
                f"--monitor-silence {self.monitor_silence} is too short to tell a monitor that "
                "stopped from one between passes",
                "give at least 3 times the servers' monitoring_interval, e.g. 15m",
            )


def alert_rules(limits: Thresholds) -> dict[str, Any]:
    """The alerting rules, as Prometheus reads a rule file."""
    by = f"sum by ({VERSION})"
    window = "[5m]"
    rules = [
        _alert(
            "MloopServerDown",
            f'up{{job="{limits.job}"}} == 0',
            "1m",
            "critical",
            "model server {{ $labels.instance }} is down",
            "Prometheus cannot scrape it: the process stopped, or its port is unreachable.",
        ),
        _alert(
            "MloopHighErrorRate",
            f"({by} (rate(mloop_model_errors_total{window})) / "
            f"{by} (rate(mloop_model_requests_total{window}))) > {limits.max_error_rate:g}",
            limits.hold,
            "critical",
            "{{ $labels.model }} on {{ $labels.endpoint }} answers over "
            f"{limits.max_error_rate:.2%} of requests with a 5xx",
            "See `mloop endpoints status ENDPOINT` and the server's log; roll back with "
            "`mloop endpoints rollback ENDPOINT` during a rollout.",
        ),
        _alert(
            "MloopHighLatency",
            f"histogram_quantile(0.99, sum by ({VERSION}, le) "
            f"(rate(mloop_model_request_duration_seconds_bucket{window}))) > {limits.max_p99:g}",
            limits.hold,
            "warning",
            "{{ $labels.model }} on {{ $labels.endpoint }} has a p99 over "
            f"{limits.max_p99 * 1000:g} ms",
            "Look at mloop_batch_rows and mloop_requests_in_flight: a slow model or too few "
            "workers.",
        ),
        _alert(
            "MloopFeatureDrift",
            _drifted(),
            limits.hold,
            "warning",
            "{{ $labels.feature }} drifted on {{ $labels.endpoint }} ({{ $labels.model }}, "
            "by {{ $labels.method }})",
            "See `mloop monitor status ENDPOINT`; retraining on recent data may be due.",
        ),
        _alert(
            "MloopAccuracyDrop",
            f'min by ({VERSION}, role, metric) (mloop_accuracy{{metric="accuracy"}}) '
            f"< on({VERSION}, metric) group_left() "
            f"(max by ({VERSION}, metric) (mloop_accuracy_reference) - {limits.accuracy_margin:g})",
            limits.hold,
            "warning",
            "{{ $labels.model }} on {{ $labels.endpoint }} is right less often than its "
            f"registered accuracy less {limits.accuracy_margin:g}",
            "See `mloop monitor status ENDPOINT`; feedback labels decide this.",
        ),
        _alert(
            "MloopBias",
            f"max by ({BIAS}) (abs(mloop_bias)) > on({BIAS}) max by ({BIAS}) (mloop_bias_bound)",
            limits.hold,
            "warning",
            "{{ $labels.measure }} over {{ $labels.column }} is out of bounds for "
            "{{ $labels.model }} on {{ $labels.endpoint }}",
            "The same bound the registry's promotion gate holds versions to.",
        ),
        _alert(
            "MloopPredictionLogDrops",
            "increase(mloop_prediction_log_dropped_total[10m]) > 0",
            "0m",
            "warning",
            "model server {{ $labels.instance }} could not log some answered requests",
            "Its buffer was full or the stores were unreachable; monitoring misses them.",
        ),
        _alert(
            "MloopMonitorStopped",
            f"increase(mloop_monitor_passes_total[{limits.monitor_silence}]) == 0",
            "0m",
            "warning",
            "the monitor of model server {{ $labels.instance }} ran no pass in "
            + limits.monitor_silence,
            "Its drift, accuracy and bias gauges are stale, and the alerts on them blind: the "
            "mloop-monitor process is gone or stuck (the server's log says why). Restarting the "
            "server starts it again.",
        ),
    ]
    return {"groups": [{"name": "mloop", "rules": rules}]}


def _drifted() -> str:
    """A feature drifted: a distance at or above its threshold, or a test's p-value below its
    own (KS and chi-square are the tests: `domain.drift.Method.tests`), taken over the replicas
    of the endpoint, which export the same series."""
    tests = 'method=~"ks|chisquare"'
    distances = 'method!~"ks|chisquare"'
    return (
        f"(max by ({DRIFT}) (mloop_drift_score{{{distances}}}) >= on({DRIFT}) "
        f"max by ({DRIFT}) (mloop_drift_threshold{{{distances}}})) or "
        f"(min by ({DRIFT}) (mloop_drift_score{{{tests}}}) < on({DRIFT}) "
        f"max by ({DRIFT}) (mloop_drift_threshold{{{tests}}}))"
    )


def _alert(
    name: str, expr: str, hold: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": hold,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def rule_tests(limits: Thresholds) -> dict[str, Any]:
    """One `promtool test rules` case per alert: series that must fire it, and a quiet twin
    that must not."""
    version = 'endpoint="web",model="churn:3"'
    role = f'{version},role="stable"'
    hold = _minutes(limits.hold, "--for")
    silence = _minutes(limits.monitor_silence, "--monitor-silence")
    late = f"{hold + 10}m"
    fast = limits.max_p99 / 10
    slow = limits.max_p99 * 4

    def counter(step: float, n: int = 60) -> str:
        return f"0+{step:g}x{n}"

    high_errors = max(1.0, 60 * limits.max_error_rate * 5)  # 5x the bound, per minute
    series = [
        {"series": f'up{{job="{limits.job}",instance="a:8080"}}', "values": "0x20"},
        {"series": f'up{{job="{limits.job}",instance="b:8080"}}', "values": "1x20"},
        {"series": f'mloop_model_requests_total{{{role},status="200"}}', "values": counter(60)},
        {"series": f"mloop_model_errors_total{{{role}}}", "values": counter(high_errors)},
        {
            "series": 'mloop_model_requests_total{endpoint="web",model="churn:2",role="stable",'
            'status="200"}',
            "values": counter(60),
        },
        {
            "series": 'mloop_model_errors_total{endpoint="web",model="churn:2",role="stable"}',
            "values": counter(0),
        },
        {
            "series": f'mloop_model_request_duration_seconds_bucket{{{role},le="{fast:g}"}}',
            "values": counter(0),
        },
        {
            "series": f'mloop_model_request_duration_seconds_bucket{{{role},le="{slow:g}"}}',
            "values": counter(60),
        },
        {
            "series": f'mloop_model_request_duration_seconds_bucket{{{role},le="+Inf"}}',
            "values": counter(60),
        },
    ]
    # The monitor's gauges as every replica of the endpoint exports them (each computes the
    # same numbers from the shared log): the rules must not meet two series per side.
    accuracy = max(0.0, 0.9 - limits.accuracy_margin - 0.1)
    for replica, drifted in (("a:8080", 0.4), ("b:8080", 0.35)):
        at_replica = f'{version},instance="{replica}"'
        series += [
            {"series": _drift(at_replica, "age"), "values": f"{drifted:g}x60"},
            {"series": _drift(at_replica, "age", "threshold"), "values": "0.1x60"},
            {"series": _drift(at_replica, "income"), "values": "0.02x60"},
            {"series": _drift(at_replica, "income", "threshold"), "values": "0.1x60"},
            {"series": _drift(at_replica, "plan", method="ks"), "values": "0.001x60"},
            {"series": _drift(at_replica, "plan", "threshold", "ks"), "values": "0.05x60"},
            {"series": _drift(at_replica, "region", method="ks"), "values": "0.6x60"},
            {"series": _drift(at_replica, "region", "threshold", "ks"), "values": "0.05x60"},
            {
                "series": f'mloop_accuracy{{{role},instance="{replica}",metric="accuracy"}}',
                "values": f"{accuracy:g}x60",
            },
            {
                "series": f'mloop_accuracy_reference{{{at_replica},metric="accuracy"}}',
                "values": "0.9x60",
            },
            {"series": _bias(f'{role},instance="{replica}"'), "values": "0.3x60"},
            {"series": _bias(at_replica, "bound"), "values": "0.1x60"},
        ]
    series += [
        {"series": 'mloop_prediction_log_dropped_total{instance="a:8080"}', "values": "0x10 5x50"},
        # a's monitor stops after its second pass; b's goes on
        {
            "series": 'mloop_monitor_passes_total{instance="a:8080"}',
            "values": f"0 1 2x{silence + 10}",
        },
        {
            "series": 'mloop_monitor_passes_total{instance="b:8080"}',
            "values": f"0+1x{silence + 10}",
        },
    ]
    at = {"eval_time": late}
    quiet = {"eval_time": "1m"}  # before any condition held long enough (or at all)
    server = {"job": limits.job, "instance": "a:8080", "severity": "critical"}
    about = {"endpoint": "web", "model": "churn:3"}
    cases = [
        ("MloopServerDown", [server], {"eval_time": "10m"}),
        ("MloopHighErrorRate", [{**about, "severity": "critical"}], at),
        ("MloopHighLatency", [{**about, "severity": "warning"}], at),
        (
            "MloopFeatureDrift",
            [
                {**about, "feature": "age", "method": "wasserstein", "severity": "warning"},
                {**about, "feature": "plan", "method": "ks", "severity": "warning"},
            ],
            at,
        ),
        (
            "MloopAccuracyDrop",
            [{**about, "role": "stable", "metric": "accuracy", "severity": "warning"}],
            at,
        ),
        (
            "MloopBias",
            [
                {
                    **about,
                    "column": "gender",
                    "measure": "demographic_parity_difference",
                    "severity": "warning",
                }
            ],
            at,
        ),
        ("MloopPredictionLogDrops", [{"instance": "a:8080", "severity": "warning"}], at),
        (
            "MloopMonitorStopped",
            [{"instance": "a:8080", "severity": "warning"}],
            {"eval_time": f"{silence + 5}m"},
        ),
    ]
    annotations = {r["alert"]: r["annotations"] for r in alert_rules(limits)["groups"][0]["rules"]}
    alerts = []
    for name, fired, when in cases:
        expected = [
            {"exp_labels": x, "exp_annotations": _rendered(annotations[name], x)} for x in fired
        ]
        alerts.append({**when, "alertname": name, "exp_alerts": expected})
        if name != "MloopServerDown" and name != "MloopPredictionLogDrops":
            alerts.append({**quiet, "alertname": name, "exp_alerts": []})
    return {
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": alerts}],
    }


def _rendered(templates: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
    """The annotations as Prometheus renders them for an alert with `labels` (they use
    `{{ $labels.NAME }}` only, so the expected text of a test case is exact)."""
    return {
        key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        for key, text in templates.items()
    }


def _drift(version: str, feature: str, kind: str = "score", method: str = "wasserstein") -> str:
    return f'mloop_drift_{kind}{{{version},feature="{feature}",method="{method}"}}'


def _bias(version: str, kind: str = "") -> str:
    name = "mloop_bias" + (f"_{kind}" if kind else "")
    return f'{name}{{{version},column="gender",measure="demographic_parity_difference"}}'


def _minutes(text: str, option: str) -> int:
    """`5m` -> 5; holds and windows are written in whole minutes (or hours)."""
    if text.endswith("m") and text[:-1].isdigit():
        return int(text[:-1])
    if text.endswith("h") and text[:-1].isdigit():
        return 60 * int(text[:-1])
    raise InvalidInput(f"{option} {text!r} is not whole minutes or hours", f"e.g. {option} 15m")


def prometheus_example(job: str) -> str:
    """A scrape config for the servers that loads the rules, for people to adapt."""
    return f"""\
# Generated by `mloop monitor export prometheus`: adapt the targets and the Alertmanager.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - {RULES}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:9093"]
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: ["127.0.0.1:8080"]   # every `mloop serve` (each worker's metrics add up)
"""


PANELS: tuple[tuple[str, str, str, str], ...] = (
    # title, PromQL, legend, unit
    (
        "Requests per second, by version and role",
        'sum by (endpoint, model, role) (rate(mloop_model_requests_total{endpoint=~"$endpoint"}'
        "[1m]))",
        "{{model}} {{role}}",
        "reqps",
    ),
    (
        "Error rate (5xx), by version: canary against stable",
        'sum by (model, role) (rate(mloop_model_errors_total{endpoint=~"$endpoint"}[1m])) / '
        'sum by (model, role) (rate(mloop_model_requests_total{endpoint=~"$endpoint"}[1m]))',
        "{{model}} {{role}}",
        "percentunit",
    ),
    (
        "p99 latency, by version: canary against stable",
        "histogram_quantile(0.99, sum by (model, role, le) (rate("
        'mloop_model_request_duration_seconds_bucket{endpoint=~"$endpoint"}[1m])))',
        "{{model}} {{role}}",
        "s",
    ),
    (
        "Feature drift (score against its threshold)",
        f'max by ({DRIFT}) (mloop_drift_score{{endpoint=~"$endpoint"}}) / on({DRIFT}) '
        f'max by ({DRIFT}) (mloop_drift_threshold{{endpoint=~"$endpoint"}})',
        "{{feature}} ({{method}}) {{model}}",
        "none",
    ),
    (
        "Accuracy from feedback, by version",
        'mloop_accuracy{endpoint=~"$endpoint"}',
        "{{model}} {{role}} {{metric}}",
        "percentunit",
    ),
    (
        "Bias, by sensitive column",
        'mloop_bias{endpoint=~"$endpoint"}',
        "{{column}} {{measure}} {{model}}",
        "none",
    ),
    (
        "A/B test: outcome rate by variant",
        'sum by (model) (rate(mloop_model_outcome_value_total{endpoint=~"$endpoint"}[5m])) / '
        'sum by (model) (rate(mloop_model_outcomes_total{endpoint=~"$endpoint"}[5m]))',
        "{{model}}",
        "percentunit",
    ),
    (
        "Shadow: share of copies agreeing with the primary",
        'sum by (model) (rate(mloop_shadow_agreements_total{endpoint=~"$endpoint"}[5m])) / '
        'sum by (model) (rate(mloop_shadow_requests_total{endpoint=~"$endpoint"}[5m]))',
        "{{model}}",
        "percentunit",
    ),
    (
        "Prediction log: requests written and dropped per second",
        "sum(rate(mloop_prediction_log_written_total[1m])) or vector(0)",
        "written",
        "reqps",
    ),
)


def dashboard() -> dict[str, Any]:
    """A Grafana dashboard (JSON model, importable) over a Prometheus data source."""
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = []
    for i, (title, expr, legend, unit) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": source,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": "A", "datasource": source, "expr": expr, "legendFormat": legend}
                ],
            }
        )
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "title": "mloop endpoints",
        "uid": "mloop-endpoints",
        "tags": ["mloop"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "endpoint",
                    "type": "query",
                    "datasource": source,
                    "query": "label_values(mloop_model_requests_total, endpoint)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                }
            ]
        },
        "panels": panels,
    }


def write_files(dest: Path, files: dict[str, str], force: bool) -> list[Path]:
    """Write `files` into `dest` (made if missing); an existing file is replaced only with
    `force`, so a hand-edited rule file is never lost by accident."""
    if dest.exists() and not dest.is_dir():
        raise InvalidInput(f"{dest} is a file, not a folder", "give a folder to write into")
    taken = [name for name in files if (dest / name).exists()]
    if taken and not force:
        raise InvalidInput(
            f"{dest} already holds {', '.join(taken)}",
            "pass --force to replace them, or give another folder",
        )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = dest / name
        partial = path.with_name(f".{name}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
        written.append(path)
    return written


def export_prometheus(dest: Path, limits: Thresholds, force: bool = False) -> list[Path]:
    header = "# Generated by `mloop monitor export prometheus`; check: promtool check rules\n"
    tests = "# Run: promtool test rules " + RULE_TESTS + "\n"
    files = {
        RULES: header + dump_yaml(alert_rules(limits)),
        RULE_TESTS: tests + dump_yaml(rule_tests(limits)),
        PROMETHEUS_EXAMPLE: prometheus_example(limits.job),
    }
    return write_files(dest, files, force)


def export_grafana(dest: Path, force: bool = False) -> list[Path]:
    return write_files(dest, {DASHBOARD: json.dumps(dashboard(), indent=2) + "\n"}, force)
