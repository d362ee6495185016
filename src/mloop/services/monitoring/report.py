"""`mloop monitor report`: an endpoint's window as one page a person reads, offline.

The numbers are `monitor status`'s (`MonitorService.status_of`, the window read once), the
histograms are the binned summaries the drift verdicts were computed from
(`DriftMonitor.summaries`: nothing is counted again from the raw rows), and the series over
time are `timeline`'s. This module only arranges them: the page is `templates/report.html.j2`
(autoescaped) with plotly's figures, plotly.js inlined once, so it opens with no network.

Feature names and category values come from requests: the template escapes them, and every
text handed to plotly is escaped too, since plotly.js reads `<b>`, `<a href>` and the like in
its titles and labels as markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mloop.domain import drift as d
from mloop.domain.prediction import PREDICTION, Window, format_age
from mloop.services.monitoring.status import MonitorService, MonitorStatus
from mloop.services.monitoring.timeline import Timeline, pinned_rules, timeline
from mloop.services.registry.card import STYLE, page_templates, stamp

if TYPE_CHECKING:
    from mloop.services.monitoring.report_plots import Plots

SHARE_PER_BAR = 0.05  # a numeric histogram's bars hold at least 5% of the reference each
MOST_CATEGORIES = 30  # more are drawn as one bar, "(other)"
OTHER = "(other)"
REPORT_STYLE = (
    STYLE
    + "body{max-width:72rem} .drifted{color:#b00;font-weight:600} .ok{color:#070} "
    + ".plot{width:100%;height:340px} figure{margin:1rem 0} figcaption h3{margin:.2rem 0} "
    + ".notes li{color:#555}"
)


@dataclass(frozen=True, slots=True)
class Histogram:
    """One input's (or the answers', `name` "prediction") reference and window over the same
    bars. Numbers: bars at `x` (their middles) `width` wide, heights the share of rows per
    unit (bars of unequal width stay comparable), the window's rows outside the reference's
    range as a bar on that side; categories: one bar per value in `x`, heights the shares.
    `verdict` is the window's (`method`, `score`, `threshold`, `drifted`)."""

    name: str
    kind: str
    x: tuple[Any, ...]
    width: tuple[float, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    verdict: dict[str, Any]
    missing: int = 0


@dataclass(frozen=True, slots=True)
class MonitorReport:
    status: MonitorStatus
    histograms: tuple[Histogram, ...]  # drifted inputs first, the prediction last
    timeline: Timeline
    generated: float


def build(
    service: MonitorService, endpoint: str, window: Window, generated: float
) -> MonitorReport:
    """The report of `endpoint`'s `window`.

    Raises:
        NotFound: no such endpoint, or no request logged in the window (as `monitor status`).
    """
    found = service.predictions.read(endpoint, window).table
    status = service.status_of(endpoint, window, found)
    drift = service.drift if status.features is not None else None
    histograms: list[Histogram] = []
    if drift is not None:
        pairs = drift.summaries(endpoint, found)
        for name, verdict in ordered(status.features or {}):
            if name in pairs:
                histograms.append(histogram(name, verdict, *pairs[name]))
        if status.prediction is not None and PREDICTION in pairs:
            histograms.append(histogram(PREDICTION, status.prediction, *pairs[PREDICTION]))
    rules = pinned_rules(status.features, status.prediction)
    line = timeline(service.metadata, drift, endpoint, window, found, rules)
    return MonitorReport(status, tuple(histograms), line, generated)


def ordered(features: dict[str, Any]) -> list[tuple[str, Any]]:
    """Drifted inputs first, then those that did not move, then those not compared; each
    group in the model's order.

    Example:
        >>> ordered({"a": {"drifted": False}, "b": {"drifted": None}, "c": {"drifted": True}})
        [('c', {'drifted': True}), ('a', {'drifted': False}), ('b', {'drifted': None})]
    """
    rank = {True: 0, False: 1, None: 2}
    return sorted(features.items(), key=lambda item: rank[item[1].get("drifted")])


def histogram(
    name: str, verdict: dict[str, Any], reference: d.FeatureSummary, current: d.FeatureSummary
) -> Histogram:
    if reference.kind == d.CATEGORICAL:
        return _categories(name, verdict, reference, current)
    if reference.few_values:  # compared as categories: one bar per value
        values = [f"{v:g}" for v in _distinct(reference.edges)]
        labels = ("below", *values, "above")
        return _categories(
            name,
            verdict,
            d.count_categories(labels, reference.counts.tolist()),
            d.count_categories(labels, current.counts.tolist(), current.missing),
            by_share=False,
        )
    inner = reference.counts[1:-1]
    cuts = d.bin_cuts(inner, SHARE_PER_BAR)
    edges = reference.edges[[*cuts, len(inner)]]
    widths = np.diff(edges)
    ref = np.add.reduceat(inner, cuts) / max(reference.rows, 1)
    now = np.add.reduceat(current.counts[1:-1], cuts) / max(current.rows, 1)
    x = list((edges[:-1] + edges[1:]) / 2)
    width, ref_heights, now_heights = list(widths), list(ref / widths), list(now / widths)
    below, above = (int(c) for c in current.counts[[0, -1]])
    if below:  # as wide as the bar beside it: its height is the share, spread the same way
        x.insert(0, float(edges[0] - widths[0] / 2))
        width.insert(0, float(widths[0]))
        ref_heights.insert(0, 0.0)
        now_heights.insert(0, below / current.rows / float(widths[0]))
    if above:
        x.append(float(edges[-1] + widths[-1] / 2))
        width.append(float(widths[-1]))
        ref_heights.append(0.0)
        now_heights.append(above / current.rows / float(widths[-1]))
    return Histogram(
        name,
        d.NUMERIC,
        tuple(float(v) for v in x),
        tuple(float(v) for v in width),
        tuple(float(v) for v in ref_heights),
        tuple(float(v) for v in now_heights),
        verdict,
        current.missing,
    )


def _distinct(edges: Any) -> list[float]:
    """The values of a few-valued reference, from its edges (the first and last values, and
    the middles between neighbours).

    Example:
        >>> _distinct(np.array([0.0, 0.5, 1.5, 2.0]))
        [0.0, 1.0, 2.0]
    """
    values = [float(edges[0])]
    for middle in edges[1:-1]:
        values.append(2 * float(middle) - values[-1])
    return [*values[:-1], float(edges[-1])]  # the last exactly


def _categories(
    name: str,
    verdict: dict[str, Any],
    reference: d.FeatureSummary,
    current: d.FeatureSummary,
    by_share: bool = True,
) -> Histogram:
    """One bar per value: the most common on either side first (or in the summaries' order,
    for the values of a number), the rest as one."""
    shares: dict[str, list[float]] = {}
    for side, summary in enumerate((reference, current)):
        total = max(summary.rows, 1)
        for label, count in zip(summary.labels, summary.counts.tolist(), strict=True):
            if count:
                shares.setdefault(label, [0.0, 0.0])[side] += count / total
    kept = list(shares)
    if by_share:
        kept.sort(key=lambda label: (-max(shares[label]), -shares[label][0], label))
    rest = kept[MOST_CATEGORIES:]
    bars = [(label, shares[label]) for label in kept[:MOST_CATEGORIES]]
    if rest:
        bars.append((OTHER, [sum(shares[x][0] for x in rest), sum(shares[x][1] for x in rest)]))
    return Histogram(
        name,
        d.CATEGORICAL,
        tuple(label for label, _ in bars),
        (),
        tuple(pair[0] for _, pair in bars),
        tuple(pair[1] for _, pair in bars),
        verdict,
        current.missing,
    )


def to_html(report: MonitorReport) -> str:
    """The report as one standalone page: every value escaped, plotly.js inline, each figure
    drawn by one `Plotly.newPlot` from JSON the template escapes for a script element."""
    from markupsafe import Markup

    from mloop.services.monitoring import report_plots as plots

    made: Plots = plots.Plots()
    status = report.status
    shown = [(h, made.add(plots.histogram_figure(h))) for h in report.histograms]
    drift_plot = made.add(plots.drift_figure(report.timeline))
    accuracy_plot = made.add(plots.accuracy_figure(status.accuracy))
    latency_plot = made.add(plots.latency_figure(report.timeline))
    environment = page_templates("mloop.services.monitoring")
    environment.filters.update(
        number=_number, percent=_percent, ms=_milliseconds, when=stamp, age=format_age
    )
    template = environment.get_template("report.html.j2")
    return template.render(
        status=status,
        features=ordered(status.features or {}),
        histograms=shown,
        drift_plot=drift_plot,
        accuracy_plot=accuracy_plot,
        latency_plot=latency_plot,
        timeline=report.timeline,
        figures=made.figures,
        plotly_js=Markup(plots.plotly_js()),  # noqa: S704 -- plotly's own bundled script
        generated=stamp(report.generated),
        style=REPORT_STYLE,
        PREDICTION=PREDICTION,
    )


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f} ms"
