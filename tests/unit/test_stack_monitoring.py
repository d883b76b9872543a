"""Prometheus is an opt-in stack service: default stacks are unchanged, config follows settings."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.errors import ConfigurationError
from config.settings import (
    MonitoringSettings,
    Settings,
    StackSettings,
    WebSettings,
)
from stack.base import StackContext
from stack.manager import SERVICE_NAMES, Stack
from stack.prometheus_service import PrometheusService


def settings_in(tmp_path: Path, **sections: object) -> Settings:
    """Declared defaults (not this run's BV_* variables) plus ``sections``."""
    defaults: dict[str, object] = {"web": WebSettings(), "monitoring": MonitoringSettings()}
    return Settings(  # type: ignore[arg-type]
        stack=StackSettings(state_dir=tmp_path), **{**defaults, **sections}
    )


def test_default_stack_has_no_prometheus(tmp_path: Path) -> None:
    stack = Stack(settings_in(tmp_path))
    assert stack.names == SERVICE_NAMES
    assert "prometheus" not in SERVICE_NAMES
    with pytest.raises(ConfigurationError, match="--with-monitoring"):
        stack.select(["prometheus"])


def test_with_monitoring_prometheus_is_started_last(tmp_path: Path) -> None:
    stack = Stack(settings_in(tmp_path), with_monitoring=True)
    assert stack.names == (*SERVICE_NAMES, "prometheus")
    assert [s.name for s in stack.waves[-1]] == ["prometheus"]


def test_prometheus_binds_loopback_on_its_setting(tmp_path: Path) -> None:
    service = PrometheusService(StackContext(settings_in(tmp_path)))
    [endpoint] = service.endpoints()
    assert (endpoint.host, endpoint.port) == ("127.0.0.1", 23090)
    assert endpoint.setting == "BV_MONITORING__PROMETHEUS_PORT"


def test_scrape_targets_follow_the_metrics_port_and_extra_targets(tmp_path: Path) -> None:
    settings = settings_in(
        tmp_path,
        web=WebSettings(metrics_port=6001),
        monitoring=MonitoringSettings(
            extra_targets=("127.0.0.1:6002", "127.0.0.1:6001"), scrape_interval_s=2
        ),
    )
    config = PrometheusService(StackContext(settings)).render_config()
    [job] = config["scrape_configs"]  # type: ignore[misc]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:6001", "127.0.0.1:6002"]}]
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s"}


def test_worker_token_goes_to_a_private_file_never_into_the_config(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, web=WebSettings(token=SecretStr("tok-123")))
    service = PrometheusService(StackContext(settings))
    service.prepare(lambda _message: None)
    text = Path(service.config_path).read_text(encoding="utf-8")
    assert "tok-123" not in text
    token_file = Path(json.loads(text)["scrape_configs"][0]["authorization"]["credentials_file"])
    assert token_file.read_text(encoding="utf-8") == "tok-123"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
