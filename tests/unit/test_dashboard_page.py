"""The built-in dashboard page: the Grafana panels, drawn as SVG, empty panels explained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from config.settings import PROJECT_ROOT
from observability.dashboard import (
    DashboardDataError,
    PanelData,
    PrometheusUnreachableError,
    Series,
    Target,
    format_value,
    gather,
    legend_name,
    load_panels,
    render_page,
)

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
PANELS = load_panels(PROJECT_ROOT / "dashboards")


def by_title(title: str) -> int:
    return next(i for i, p in enumerate(PANELS) if p.title.startswith(title))


def test_every_grafana_panel_is_loaded_with_its_unit_and_the_variable_resolved() -> None:
    titles = [p.title for p in PANELS]
    for wanted in ("Throughput", "Consumer lag", "Freshness", "Errors", "DLQ", "Sink commit"):
        assert any(t.startswith(wanted) for t in titles), wanted
    assert any(t.startswith("Cache hit ratio") for t in titles)
    assert any(t.startswith("Feature freshness") for t in titles)
    throughput = PANELS[by_title("Throughput")]
    assert throughput.unit == "ops"
    assert "$pipeline" not in throughput.targets[0].expr
    assert 'pipeline=~".*"' in throughput.targets[0].expr


def test_legends_follow_grafanas_format() -> None:
    assert legend_name("{{pipeline}} lag", {"pipeline": "analytics"}, "x") == "analytics lag"
    assert legend_name("", {"b": "2", "a": "1"}, "x") == "a=1, b=2"
    assert legend_name("", {}, "sum(up)") == "sum(up)"


def test_values_are_formatted_in_the_panel_unit() -> None:
    assert format_value(0.25, "percentunit") == "25.0%"
    assert format_value(0.042, "s") == "42 ms"
    assert format_value(3.5, "s") == "3.5 s"
    assert format_value(2500, "ops") == "2.5k/s"
    assert format_value(7, "short") == "7"


class FakeReader:
    """Answers from a table: a list of series, or an error to raise, per query."""

    def __init__(self, answers: dict[str, list[Series] | DashboardDataError]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query_range(
        self, target: Target, start: datetime, end: datetime, step_s: float
    ) -> list[Series]:
        self.asked.append(target.expr)
        answer = self.answers.get(target.expr, [])
        if isinstance(answer, DashboardDataError):
            raise answer
        return answer


def test_a_panel_with_points_is_an_svg_chart_with_a_legend() -> None:
    panel = PANELS[by_title("Throughput")]
    points = ((NOW.timestamp() - 60, 10.0), (NOW.timestamp(), 20.0))
    reader = FakeReader({panel.targets[0].expr: [Series("medallion", points)]})
    data = gather(reader, PANELS, NOW)
    page = render_page(PANELS, data, generated_at=NOW, refresh_s=10, source="test")
    assert '<meta http-equiv="refresh" content="10">' in page
    section = page.split('data-title="Throughput')[1].split("</section>")[0]
    assert 'data-points="2"' in section
    assert "<polyline" in section
    assert "medallion <b>20/s</b>" in section
    assert "<script" not in page  # no script, no CDN


def test_a_panel_without_data_says_why_and_names_its_query() -> None:
    data = gather(FakeReader({}), PANELS, NOW)
    page = render_page(PANELS, data, generated_at=NOW, refresh_s=10, source="test")
    section = page.split('data-title="Errors')[1].split("</section>")[0]
    assert 'data-points="0"' in section
    assert "no data in this window yet" in section
    assert "bv_data_processing_errors_total" in section


def test_prometheus_down_is_explained_on_every_panel_after_one_attempt() -> None:
    first = PANELS[0].targets[0].expr
    down = PrometheusUnreachableError("Prometheus at http://127.0.0.1:1 is unreachable")
    reader = FakeReader({first: down})
    data = gather(reader, PANELS, NOW, window=timedelta(minutes=5))
    assert reader.asked == [first]
    assert all(d.problems and "unreachable" in d.problems[0] for d in data)
    page = render_page(PANELS, data, generated_at=NOW, refresh_s=10, source="test")
    assert page.count("is unreachable") == len(PANELS)


def test_a_refused_query_marks_only_its_panel() -> None:
    first = PANELS[0].targets[0].expr
    reader = FakeReader({first: DashboardDataError("Prometheus refused the query (HTTP 400)")})
    data = gather(reader, PANELS, NOW)
    assert data[0].problems
    assert not data[1].problems
    assert len(reader.asked) == sum(len(p.targets) for p in PANELS)


def test_titles_and_series_names_are_escaped() -> None:
    panel = PANELS[0]
    data = [PanelData([Series("<b>x</b>", ((1.0, 1.0), (2.0, 2.0)))])] + [
        PanelData() for _ in PANELS[1:]
    ]
    page = render_page(PANELS, data, generated_at=NOW, refresh_s=5, source="<s>")
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert panel.title in page
