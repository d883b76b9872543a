"""The built-in dashboard: the panels of ``dashboards/*.json`` drawn as SVG on the server.

Grafana is not packaged for every machine this runs on, so the worker's HTTP server also
serves ``/dashboard``: the same panels (titles, PromQL, units) queried from Prometheus' HTTP
API (``stack up --with-monitoring``) over the last ``window``, drawn as inline SVG. No script
and no CDN: the page is plain HTML that reloads itself. A Prometheus that is down, or a query
without data yet, gives a panel that says so, never a blank page.

``load_panels`` and ``render_page`` are pure (tested on hand-made series); ``PrometheusReader``
is the only I/O.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import httpx

from config.settings import PROJECT_ROOT, Settings

#: Grafana variables of the dashboards and what they mean here (every value).
VARIABLES = {"$pipeline": ".*", "${pipeline}": ".*", "$__rate_interval": "1m"}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 560, 190, 64, 22, 8


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    description: str
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]  # epoch seconds, value (finite only)


@dataclass
class PanelData:
    """What one panel shows: its series, or why it has none."""

    series: list[Series] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(len(s.points) for s in self.series)


class DashboardDataError(Exception):
    """Prometheus could not answer a panel's query (down, or the query refused)."""


class PrometheusUnreachableError(DashboardDataError):
    """No answer at all: the other panels need not ask."""


def load_panels(folder: Path) -> list[Panel]:
    """Every timeseries/stat panel of every ``*.json`` dashboard in ``folder``, in order."""
    panels = []
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for raw in document.get("panels", []):
            targets = tuple(
                Target(_substitute(t["expr"]), t.get("legendFormat", ""))
                for t in raw.get("targets", [])
                if t.get("expr")
            )
            if targets:
                unit = raw.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
                panels.append(Panel(raw["title"], unit, raw.get("description", ""), targets))
    return panels


def _substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def legend_name(template: str, labels: dict[str, str], expr: str) -> str:
    """Grafana's ``{{label}}`` legend format; without one, the labels (or the query)."""
    if template:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    if labels:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return expr if len(expr) <= 60 else expr[:57] + "..."


class RangeQueries(Protocol):
    """Where panels get their series from (Prometheus, or a table in the unit tests)."""

    def query_range(
        self, target: Target, start: datetime, end: datetime, step_s: float
    ) -> list[Series]: ...


class PrometheusReader:
    """``query_range`` against Prometheus' HTTP API."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query_range(
        self, target: Target, start: datetime, end: datetime, step_s: float
    ) -> list[Series]:
        params: dict[str, str | float] = {
            "query": target.expr, "start": start.timestamp(), "end": end.timestamp(),
            "step": step_s,
        }  # fmt: skip
        try:
            response = httpx.get(
                f"{self.base_url}/api/v1/query_range", params=params, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise PrometheusUnreachableError(
                f"Prometheus at {self.base_url} is unreachable ({type(exc).__name__}); start it "
                "with `bitvelocity stack up --with-monitoring`"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            raise DashboardDataError(
                f"Prometheus refused the query (HTTP {response.status_code}): "
                f"{body.get('error', response.text[:200])}"
            )
        series = []
        for result in body["data"]["result"]:
            points = tuple(
                (float(t), float(v)) for t, v in result["values"] if math.isfinite(float(v))
            )
            name = legend_name(target.legend, result.get("metric", {}), target.expr)
            series.append(Series(name, points))
        return series


def gather(
    reader: RangeQueries,
    panels: Sequence[Panel],
    now: datetime,
    window: timedelta = timedelta(minutes=15),
    points: int = 120,
) -> list[PanelData]:
    """Each panel's series over ``window`` up to ``now``; problems instead of exceptions.

    Once Prometheus is found down, the other panels say so without asking again.
    """
    step = max(1.0, window.total_seconds() / points)
    down: str | None = None
    found = []
    for panel in panels:
        data = PanelData()
        for target in panel.targets:
            if down is not None:
                data.problems.append(down)
                break
            try:
                data.series += reader.query_range(target, now - window, now, step)
            except PrometheusUnreachableError as exc:
                down = str(exc)
                data.problems.append(down)
            except DashboardDataError as exc:
                data.problems.append(str(exc))
        found.append(data)
    return found


# -- rendering --------------------------------------------------------------------------------
def format_value(value: float, unit: str) -> str:
    """A value in a Grafana unit: ``s`` (seconds), ``percentunit``, ``ops`` (/s), ``short``."""
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        if value != 0 and abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.1f} s"
    suffix = "/s" if unit == "ops" else ""
    for size, letter in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{letter}{suffix}"
    return f"{value:.3g}{suffix}"


def _svg(panel: Panel, data: PanelData) -> str:
    xs = [t for s in data.series for t, _ in s.points]
    ys = [v for s in data.series for _, v in s.points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if y1 <= y0:
        y1 = y0 + 1.0
    if x1 <= x0:
        x1 = x0 + 1.0
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP

    def x(t: float) -> float:
        return LEFT + (t - x0) / (x1 - x0) * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - (v - y0) / (y1 - y0) * plot_h

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(panel.title)}">']
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - 8}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/><text class="tick" x="{LEFT - 4}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{_e(format_value(value, panel.unit))}</text>'
        )
    for t, anchor in ((x0, "start"), (x1, "end")):
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
        parts.append(
            f'<text class="tick" x="{x(t):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
            f"{label}</text>"
        )
    for n, series in enumerate(data.series):
        colour = COLOURS[n % len(COLOURS)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series.points)
        if len(series.points) == 1:
            (t, v) = series.points[0]
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        else:
            parts.append(f'<polyline fill="none" stroke="{colour}" points="{path}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(panel: Panel, data: PanelData) -> str:
    rows = []
    for n, series in enumerate(data.series):
        if not series.points:
            continue
        last = format_value(series.points[-1][1], panel.unit)
        colour = COLOURS[n % len(COLOURS)]
        rows.append(
            f'<li><span class="swatch" style="background:{colour}"></span>'
            f"{_e(series.name)} <b>{_e(last)}</b></li>"
        )
    return f'<ul class="legend">{"".join(rows)}</ul>'


def render_panel(panel: Panel, data: PanelData) -> str:
    points = data.points
    head = (
        f'<section class="panel" data-title="{_e(panel.title)}" data-points="{points}">'
        f'<h2 title="{_e(panel.description)}">{_e(panel.title)}</h2>'
    )
    if points:
        body = _svg(panel, data) + _legend(panel, data)
    else:
        why = data.problems[0] if data.problems else (
            "no data in this window yet: the metric appears once a worker has recorded it "
            "(queries: " + "; ".join(t.expr for t in panel.targets) + ")"
        )  # fmt: skip
        body = f'<p class="empty">{_e(why)}</p>'
    return head + body + "</section>"


def render_page(
    panels: Sequence[Panel],
    data: Iterable[PanelData],
    *,
    generated_at: datetime,
    refresh_s: int,
    source: str,
) -> str:
    """The whole page; reloads itself every ``refresh_s`` seconds (same URL, same token)."""
    sections = "".join(render_panel(p, d) for p, d in zip(panels, data, strict=True))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_s}">
<title>BitVelocity Streams dashboard</title>
<style>
body{{font-family:sans-serif;margin:16px;background:#fafafa;color:#222}}
header{{display:flex;gap:16px;align-items:baseline}} header p{{color:#666;margin:0}}
main{{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:12px}}
.panel{{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 10px}}
h1{{font-size:20px}} h2{{font-size:15px;margin:2px 0 6px}}
svg{{width:100%;height:auto}} polyline{{stroke-width:1.6}}
.grid{{stroke:#eee}} .tick{{font-size:10px;fill:#666}}
.legend{{list-style:none;padding:0;margin:4px 0 0;font-size:12px;columns:2}}
.swatch{{display:inline-block;width:10px;height:10px;margin-right:4px}}
.empty{{color:#8a6d3b;background:#fcf8e3;padding:8px;font-size:13px}}
</style></head><body>
<header><h1>BitVelocity Streams</h1><p>{_e(source)}; generated
{generated_at:%Y-%m-%d %H:%M:%S} UTC; refreshes every {refresh_s} s</p></header>
<main>{sections}</main></body></html>
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def dashboard_page(settings: Settings, folder: Path | None = None) -> Callable[[], str]:
    """The page renderer the worker serves at ``/dashboard`` (panels read once)."""
    monitoring = settings.monitoring
    source = f"http://{monitoring.host}:{monitoring.prometheus_port}"
    panels = load_panels(folder or PROJECT_ROOT / "dashboards")
    reader = PrometheusReader(source)

    def render() -> str:
        now = datetime.now(UTC)
        data = gather(reader, panels, now)
        return render_page(
            panels, data, generated_at=now, refresh_s=10, source=f"Prometheus at {source}"
        )

    return render
