"""The ``/metrics`` HTTP endpoint every worker runs, loopback by default, optional bearer token.

prometheus_client's own ``start_http_server`` has no authentication, so this is a small
threaded server around its exposition encoder. With ``BV_WEB__TOKEN`` set, a request
without ``Authorization: Bearer <token>`` gets 401 (compared in constant time).
A scrape is rare (every few seconds) and cheap, so a thread beside the event loop is enough.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import SecretStr

from config.errors import ConfigurationError
from config.settings import WebSettings
from observability.web_auth import authorized

METRICS_PATH = "/metrics"
DASHBOARD_PATH = "/dashboard"
#: Renders the dashboard page (``observability.dashboard``); None: no dashboard served.
DashboardPage = Callable[[], str]


class MetricsServer:
    """Serves one registry at ``/metrics``; ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str,
        port: int,
        token: SecretStr | None = None,
        dashboard: DashboardPage | None = None,
    ) -> None:
        self.registry = registry
        self._dashboard = dashboard
        self.host = host
        self.requested_port = port
        self._token = token
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls,
        registry: CollectorRegistry,
        web: WebSettings,
        dashboard: DashboardPage | None = None,
    ) -> MetricsServer:
        return cls(
            registry, host=web.host, port=web.metrics_port, token=web.token, dashboard=dashboard
        )

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{METRICS_PATH}"

    def start(self) -> None:
        handler = _handler_for(self.registry, self._token, self._dashboard)
        try:
            self._server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve /metrics on {self.host}:{self.requested_port}: {exc.strerror}; "
                "choose another port with BV_WEB__METRICS_PORT"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how soon stop() is noticed
            name="bv-metrics-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _handler_for(
    registry: CollectorRegistry, token: SecretStr | None, dashboard: DashboardPage | None
) -> type[BaseHTTPRequestHandler]:
    class _MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == DASHBOARD_PATH and dashboard is not None:
                self._dashboard(url.query)
                return
            if url.path != METRICS_PATH:
                self._reply(404, b"not found; metrics are at /metrics\n", "text/plain")
                return
            if not authorized(self.headers.get("Authorization"), token):
                self._reply(401, b"unauthorized\n", "text/plain", authenticate=True)
                return
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encoder(registry), content_type)

        def _dashboard(self, query: str) -> None:
            # A browser cannot send a bearer header when it follows a link or reloads, so
            # the page also takes the same token as ``?token=`` (loopback by default; the
            # page's self-refresh keeps the URL).
            given = parse_qs(query).get("token", [None])[0]
            header = self.headers.get("Authorization")
            by_query = given is not None and authorized(f"Bearer {given}", token)
            if not (authorized(header, token) or by_query):
                self._reply(401, b"unauthorized\n", "text/plain", authenticate=True)
                return
            assert dashboard is not None
            self._reply(200, dashboard().encode(), "text/html; charset=utf-8")

        def _reply(
            self, code: int, body: bytes, content_type: str, *, authenticate: bool = False
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if authenticate:
                self.send_header("WWW-Authenticate", 'Bearer realm="bitvelocity"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Silence the per-request access log: one line per scrape is noise."""

    return _MetricsHandler
