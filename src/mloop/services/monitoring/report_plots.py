"""The monitor report's figures, as plotly builds them (`report` arranges them on the page).

Each figure becomes plain JSON (`data`, `layout`) that the page hands to `Plotly.newPlot`;
plotly.js itself is inlined once (`plotly_js`), so the page fetches nothing. Every text shown in
a figure passes through `escaped` first: plotly.js reads tags in its labels.
Times are UTC, written without a zone (plotly.js reads `2026-12-01 09:00:00` as a date).
"""

from __future__ import annotations

import html
import json
import time
from typing import TYPE_CHECKING, Any

from mloop.domain import drift as d
from mloop.domain.prediction import PREDICTION

if TYPE_CHECKING:
    from mloop.services.monitoring.report import Histogram
    from mloop.services.monitoring.timeline import Timeline

REFERENCE_COLOUR = "#7f7f7f"
CURRENT_COLOUR = "#d62728"
LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
    "legend": {"orientation": "h", "y": -0.2},
    "barmode": "overlay",
}
MAIN_METRIC = {"classification": "accuracy", "regression": "mae"}


class Plots:
    """The page's figures by element id, in the order they were added."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}

    def add(self, figure: Any | None) -> str | None:
        """The id of the element that will hold `figure` (None: no figure, no element)."""
        if figure is None:
            return None
        name = f"plot-{len(self.figures)}"
        self.figures[name] = json.loads(figure.to_json())
        return name


def escaped(text: Any) -> str:
    """Text for plotly.js, which reads tags in its labels: `<b>x</b>` shown as written."""
    return html.escape(str(text), quote=False)


def plotly_js() -> str:
    """plotly.js, bundled with the Python package: the page's one script besides its own."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def histogram_figure(found: Histogram) -> Any:
    import plotly.graph_objects as go

    numeric = found.kind == d.NUMERIC
    x = list(found.x) if numeric else [escaped(v) for v in found.x]
    figure = go.Figure()
    for label, heights, colour in (
        ("reference", found.reference, REFERENCE_COLOUR),
        ("current window", found.current, CURRENT_COLOUR),
    ):
        figure.add_bar(
            x=x,
            y=list(heights),
            width=list(found.width) if numeric else None,
            name=label,
            marker_color=colour,
            opacity=0.55,
        )
    title = "the model's answers" if found.name == PREDICTION else escaped(found.name)
    figure.update_layout(
        LAYOUT,
        xaxis_title=title,
        yaxis_title="share of rows per unit" if numeric else "share of rows",
        xaxis_type=None if numeric else "category",
    )
    return figure


def drift_figure(line: Timeline) -> Any | None:
    """One line per compared input (and the answers) with its threshold, dotted, same colour;
    None when no bucket has a score."""
    if not any(score is not None for b in line.buckets for score in b.scores.values()):
        return None
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    x = [_utc(b.start) for b in line.buckets]
    figure = go.Figure()
    for n, (name, rule) in enumerate(line.rules.items()):
        colour = qualitative.Plotly[n % len(qualitative.Plotly)]
        shown = escaped(name)
        below = " (drift below)" if rule.method is not None and rule.method.tests else ""
        figure.add_scatter(
            x=x,
            y=[b.scores.get(name) for b in line.buckets],
            name=f"{shown}: {rule.method}",
            mode="lines+markers",
            line={"color": colour},
            legendgroup=shown,
        )
        figure.add_scatter(
            x=[x[0], x[-1]],
            y=[rule.threshold, rule.threshold],
            name=f"{shown} threshold {rule.threshold:g}{below}",
            mode="lines",
            line={"color": colour, "dash": "dot", "width": 1},
            legendgroup=shown,
        )
    figure.update_layout(LAYOUT, yaxis_title="drift score", xaxis_title="time (UTC)")
    return figure


def accuracy_figure(accuracy: dict[str, Any] | None) -> Any | None:
    """The main metric per version and role over time; None without labels."""
    if accuracy is None or not accuracy.get("over_time"):
        return None
    import plotly.graph_objects as go

    metric = MAIN_METRIC.get(accuracy["task"], "accuracy")
    lines: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for point in accuracy["over_time"]:
        lines.setdefault((point["model"], point["role"]), []).append(point)
    figure = go.Figure()
    for (model, role), points in sorted(lines.items()):
        figure.add_scatter(
            x=[_utc(p["start"]) for p in points],
            y=[(p["metrics"] or {}).get(metric) for p in points],
            name=escaped(f"{model} ({role})"),
            mode="lines+markers",
            customdata=[p["labelled"] for p in points],
            hovertemplate=f"{metric} %{{y:.4f}} of %{{customdata}} labelled<extra></extra>",
        )
    figure.update_layout(LAYOUT, yaxis_title=metric, xaxis_title="time (UTC)")
    return figure


def latency_figure(line: Timeline) -> Any | None:
    """p50 and p99 latency above, the error rate below; None when no server reported."""
    if not line.reported:
        return None
    from plotly.subplots import make_subplots

    x = [_utc(b.start) for b in line.buckets]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for name, values in (
        ("p50", [None if b.p50 is None else 1000 * b.p50 for b in line.buckets]),
        ("p99", [None if b.p99 is None else 1000 * b.p99 for b in line.buckets]),
    ):
        figure.add_scatter(
            x=x, y=values, name=f"{name} latency", mode="lines+markers", row=1, col=1
        )
    rates = [None if b.error_rate is None else 100 * b.error_rate for b in line.buckets]
    figure.add_scatter(x=x, y=rates, name="error rate", mode="lines+markers", row=2, col=1)
    figure.update_layout(LAYOUT)
    figure.update_yaxes(title_text="ms", row=1, col=1)
    figure.update_yaxes(title_text="% errors", rangemode="tozero", row=2, col=1)
    figure.update_xaxes(title_text="time (UTC)", row=2, col=1)
    return figure


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
