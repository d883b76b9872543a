"""The Grafana dashboard queries only metrics the workers export, and covers what the issue asks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from config.settings import PROJECT_ROOT
from observability.metrics import Metrics

DASHBOARD = PROJECT_ROOT / "dashboards" / "bitvelocity.json"
DATASOURCES = PROJECT_ROOT / "observability" / "grafana-provisioning" / "datasources"

#: PromQL words that look like identifiers but are not metric names.
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_PROMQL_WORDS |= {"unless", "bool", "offset", "inf", "nan"}
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported_series_names() -> set[str]:
    """Sample names a worker's /metrics exposes, derived from the registry of our Metrics."""
    names = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names_in(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers outside strings, label matchers,
    ranges and grouping clauses, that are not function calls or PromQL keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"label_values\(([^,)]*)(,[^)]*)?\)", r"\1", text)  # Grafana variable query
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def test_every_query_names_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_series_names()
    queries = panel_queries(dashboard)
    variables = [v["definition"] for v in dashboard["templating"]["list"]]
    assert queries
    for title, expr in queries + [("variable", v) for v in variables]:
        names = metric_names_in(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        assert names <= exported, f"{title}: {sorted(names - exported)} not exported"


def test_the_name_check_catches_an_unknown_metric() -> None:
    expr = 'sum by (topic) (rate(bv_records_total{topic="x"}[5m])) / on (topic) bv_lag'
    assert metric_names_in(expr) == {"bv_records_total", "bv_lag"}
    assert not metric_names_in(expr) <= exported_series_names()


def test_every_design_metric_family_appears_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names_in(expr) for _title, expr in panel_queries(dashboard)))
    families = {f.name for f in Metrics(CollectorRegistry()).registry.collect()}
    unused = {f for f in families if not any(name.startswith(f) for name in used)}
    assert unused == set()


def test_panels_cover_the_views_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("throughput", "lag", "freshness", "errors", "dlq", "sink commit latency"):
        assert topic in titles
    assert "cache hit ratio" in titles
    assert "quality failures" in titles


def test_panels_use_the_provisioned_prometheus_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load((DATASOURCES / "prometheus.yml").read_text(encoding="utf-8"))
    uid = provisioned["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & area, panel["title"]
        cells |= area
