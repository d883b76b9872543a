"""Prometheus from Debian as an optional stack service (``stack up --with-monitoring``).

It scrapes the workers' ``/metrics`` on loopback and evaluates ``observability/alerts.yml``.
Its configuration is generated into the state folder on every start from the settings
(JSON, which is valid YAML), so the ports it scrapes always equal the ones workers bind.
With ``BV_WEB__TOKEN`` set, the token goes into a 0600 file Prometheus reads, never into
the configuration itself.
"""

from __future__ import annotations

import json
import shutil

import httpx

from config.settings import PROJECT_ROOT
from stack import process
from stack.base import Endpoint, Progress, Service
from stack.tools import prometheus_binary

ALERT_RULES = PROJECT_ROOT / "observability" / "alerts.yml"
WORKERS_JOB = "bitvelocity-workers"


class PrometheusService(Service):
    name = "prometheus"
    description = "Prometheus (scrapes worker /metrics, alert rules)"

    @property
    def config_path(self) -> str:
        return str(self.home / "prometheus.yml")

    def endpoints(self) -> list[Endpoint]:
        m = self.settings.monitoring
        return [Endpoint("http", m.host, m.prometheus_port, "BV_MONITORING__PROMETHEUS_PORT")]

    def scrape_targets(self) -> list[str]:
        web = self.settings.web
        targets = [f"{web.host}:{web.metrics_port}", *self.settings.monitoring.extra_targets]
        return list(dict.fromkeys(targets))

    def render_config(self) -> dict[str, object]:
        """The configuration Prometheus gets, as data (tests inspect it)."""
        m = self.settings.monitoring
        job: dict[str, object] = {
            "job_name": WORKERS_JOB,
            "static_configs": [{"targets": self.scrape_targets()}],
        }
        if self.settings.web.token is not None:
            job["authorization"] = {"credentials_file": str(self.home / "worker-token")}
        return {
            "global": {
                "scrape_interval": f"{m.scrape_interval_s}s",
                "evaluation_interval": f"{m.scrape_interval_s}s",
            },
            "rule_files": [str(self.home / "alerts.yml")],
            "scrape_configs": [job],
        }

    def prepare(self, progress: Progress) -> None:
        prometheus_binary()
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ALERT_RULES, self.home / "alerts.yml")
        token = self.settings.web.token
        token_file = self.home / "worker-token"
        if token is not None:
            token_file.write_text(token.get_secret_value(), encoding="utf-8")
            token_file.chmod(0o600)
        else:
            token_file.unlink(missing_ok=True)
        conf = self.home / "prometheus.yml"
        conf.write_text(json.dumps(self.render_config(), indent=2) + "\n", encoding="utf-8")

    def start(self) -> None:
        m = self.settings.monitoring
        process.spawn(
            [
                str(prometheus_binary()),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--storage.tsdb.retention.time={m.retention}",
                f"--web.listen-address={m.host}:{m.prometheus_port}",
            ],
            log_path=self.log_path,
            pid_path=self.pid_path,
        )

    def probe(self) -> str | None:
        m = self.settings.monitoring
        base = f"http://{m.host}:{m.prometheus_port}"
        if httpx.get(f"{base}/-/ready", timeout=2).status_code != 200:
            return None
        info = httpx.get(f"{base}/api/v1/status/buildinfo", timeout=2).json()
        targets = ", ".join(self.scrape_targets())
        return f"Prometheus {info['data']['version']}, scraping {targets}"
