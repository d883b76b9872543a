"""The /metrics endpoint, really served on loopback and scraped over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from config.errors import ConfigurationError
from config.settings import WebSettings
from observability.metrics import Metrics
from observability.server import MetricsServer


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(CollectorRegistry())
    m.record_batch("bronze", 1200, 0.05)
    m.record_dlq("bitvelocity.public.orders", "FramingError", 2)
    return m


@pytest.fixture
def server(metrics: Metrics) -> Iterator[MetricsServer]:
    with MetricsServer(metrics.registry, host="127.0.0.1", port=0) as running:
        yield running


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_returns_the_recorded_values_with_labels(server: MetricsServer) -> None:
    response = httpx.get(server.url, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("bv_data_records_processed_total", (("pipeline", "bronze"),))] == 1200
    dlq = (("reason", "FramingError"), ("topic", "bitvelocity.public.orders"))
    assert found[("bv_dlq_records_total", dlq)] == 2


def test_scrape_sees_values_recorded_after_start(server: MetricsServer, metrics: Metrics) -> None:
    metrics.record_batch("bronze", 300, 0.01)
    found = samples(httpx.get(server.url, timeout=5).text)
    assert found[("bv_data_records_processed_total", (("pipeline", "bronze"),))] == 1500


def test_openmetrics_is_served_when_asked_for(server: MetricsServer) -> None:
    response = httpx.get(server.url, headers={"Accept": "application/openmetrics-text"}, timeout=5)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_other_paths_are_not_found(server: MetricsServer) -> None:
    assert httpx.get(f"http://127.0.0.1:{server.port}/", timeout=5).status_code == 404


def test_with_a_token_requests_without_it_get_401(metrics: Metrics) -> None:
    web = WebSettings(metrics_port=1, token=SecretStr("s3cret-token"))
    server = MetricsServer(metrics.registry, host=web.host, port=0, token=web.token)
    with server:
        anonymous = httpx.get(server.url, timeout=5)
        wrong = httpx.get(server.url, headers={"Authorization": "Bearer nope"}, timeout=5)
        right = httpx.get(server.url, headers={"Authorization": "Bearer s3cret-token"}, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "bv_" not in anonymous.text
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert "bv_data_records_processed_total" in right.text


def test_server_from_default_settings_binds_loopback_on_the_metrics_port() -> None:
    web = WebSettings()
    server = MetricsServer.from_settings(CollectorRegistry(), web)
    assert (server.host, server.requested_port) == ("127.0.0.1", 23067)


def test_a_taken_port_is_a_configuration_error_naming_the_setting(metrics: Metrics) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = MetricsServer(metrics.registry, host="127.0.0.1", port=port)
        with pytest.raises(ConfigurationError, match="BV_WEB__METRICS_PORT"):
            server.start()


def test_stopped_server_no_longer_answers(metrics: Metrics) -> None:
    server = MetricsServer(metrics.registry, host="127.0.0.1", port=0)
    server.start()
    url = server.url
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


@pytest.fixture
def dashboard_server(metrics: Metrics) -> Iterator[MetricsServer]:
    with MetricsServer(
        metrics.registry,
        host="127.0.0.1",
        port=0,
        token=SecretStr("s3cret-token"),
        dashboard=lambda: "<html>panels</html>",
    ) as running:
        yield running


def test_the_dashboard_needs_the_token_in_the_header_or_the_query(
    dashboard_server: MetricsServer,
) -> None:
    base = f"http://127.0.0.1:{dashboard_server.port}/dashboard"
    assert httpx.get(base, timeout=5).status_code == 401
    assert httpx.get(f"{base}?token=wrong", timeout=5).status_code == 401
    assert httpx.get(base, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    by_header = httpx.get(base, headers={"Authorization": "Bearer s3cret-token"}, timeout=5)
    assert by_header.status_code == 200
    assert by_header.text == "<html>panels</html>"
    assert by_header.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{base}?token=s3cret-token", timeout=5).status_code == 200


def test_without_a_dashboard_the_path_is_not_found(server: MetricsServer) -> None:
    assert httpx.get(f"http://127.0.0.1:{server.port}/dashboard", timeout=5).status_code == 404
