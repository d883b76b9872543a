"""The rule of every worker endpoint: loopback unless configured, a token beyond loopback.

Checked on real sockets: bound to 127.0.0.1 the /metrics server does not answer on another
loopback address (127.0.0.2), which a wildcard bind would; beyond loopback a token is
required by the settings; with one, requests without it get 401 (see also
``test_metrics_server.py``; the analytics views share ``observability.web_auth``).
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from config.settings import Settings, WebSettings
from observability.server import MetricsServer
from observability.web_auth import authorized, is_loopback
from streams.analytics_views import AnalyticsWebServer, analytics_web_app
from tables.analytics import AnalyticsCore
from tables.features import CurrencyRates


def test_default_settings_bind_web_and_metrics_to_loopback() -> None:
    web = WebSettings()
    assert web.host == "127.0.0.1"
    assert web.token is None


def test_the_metrics_server_is_not_reachable_on_another_address() -> None:
    with MetricsServer(CollectorRegistry(), host=WebSettings().host, port=0) as server:
        assert httpx.get(server.url, timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{server.port}/metrics", timeout=5)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "worker.example.com"])  # noqa: S104
def test_serving_beyond_loopback_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="BV_WEB__TOKEN"):
        WebSettings(host=host)
    assert WebSettings(host=host, token=SecretStr("a-long-random-token")).host == host


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="empty"):
        WebSettings(token=SecretStr(""))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("192.168.1.10", False), ("example.org", False)],  # noqa: S104
)  # fmt: skip
def test_loopback_addresses_are_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bearer_check_needs_the_exact_header() -> None:
    token = SecretStr("t0ken")
    assert authorized(None, None)
    assert authorized("anything", None)
    assert authorized("Bearer t0ken", token)
    assert authorized(b"Bearer t0ken", token)
    for wrong in (None, "", "t0ken", "Bearer t0ke", "Bearer t0ken ", "bearer t0ken", "Basic t0ken"):
        assert not authorized(wrong, token)


def test_a_metrics_server_with_a_token_refuses_requests_without_it() -> None:
    web = WebSettings(token=SecretStr("scrape-token"))
    with MetricsServer.from_settings(
        CollectorRegistry(), web.model_copy(update={"metrics_port": 0})
    ) as server:
        assert httpx.get(server.url, timeout=5).status_code == 401
        ok = httpx.get(server.url, headers={"Authorization": "Bearer scrape-token"}, timeout=5)
        assert ok.status_code == 200


async def test_the_analytics_views_need_the_token_and_stay_on_loopback() -> None:
    settings = Settings(web=WebSettings(token=SecretStr("view-token")))
    core = AnalyticsCore(settings, CurrencyRates([]))
    server = AnalyticsWebServer(
        analytics_web_app(lambda: core, token=settings.web.token),
        host=settings.web.host,
        port=0,
    )
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            assert (await client.get("/health")).status_code == 401
            auth = {"Authorization": "Bearer view-token"}
            assert (await client.get("/health", headers=auth)).status_code == 200
        async with httpx.AsyncClient(timeout=5) as other:
            with pytest.raises(httpx.ConnectError):
                await other.get(f"http://127.0.0.2:{server.port}/health")
    finally:
        await server.stop()
