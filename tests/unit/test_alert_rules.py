"""Alert rules and Prometheus configurations pass promtool; promtool missing is a failure.

The rule unit tests themselves (which series fire which alert, when) are in
observability/alerts_test.yml; this runs them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from config.settings import (
    PROJECT_ROOT,
    MonitoringSettings,
    Settings,
    StackSettings,
    WebSettings,
)
from stack.base import StackContext
from stack.prometheus_service import PrometheusService
from stack.tools import prometheus_binary

OBSERVABILITY = PROJECT_ROOT / "observability"
EXPECTED_ALERTS = {
    "BitVelocityConsumerLagGrowing",
    "BitVelocityFreshnessOverSLO",
    "BitVelocityErrorRateHigh",
    "BitVelocityDLQGrowing",
    "BitVelocitySinkCommitSlow",
    "BitVelocityDiskAlmostFull",
    "BitVelocityDiskFillingUp",
    "BitVelocitySchemaChangePaused",
    "BitVelocitySchemaChangeDetected",
}


def promtool(*args: str, cwd: Path = OBSERVABILITY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prometheus_binary("promtool")), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_rule_file_defines_the_pipeline_disk_and_schema_alerts() -> None:
    document = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {rule["alert"] for group in document["groups"] for rule in group["rules"]}
    assert alerts == EXPECTED_ALERTS


def test_promtool_rule_unit_tests_pass_and_cover_every_alert() -> None:
    tests = yaml.safe_load((OBSERVABILITY / "alerts_test.yml").read_text(encoding="utf-8"))
    covered = {
        case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])
    }
    assert covered == EXPECTED_ALERTS
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_expectation_makes_promtool_test_fail(tmp_path: Path) -> None:
    """Guards the guard: the rule tests can fail, so their passing means something."""
    (tmp_path / "alerts.yml").write_text(
        (OBSERVABILITY / "alerts.yml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    broken = (OBSERVABILITY / "alerts_test.yml").read_text(encoding="utf-8")
    broken = broken.replace("severity: critical", "severity: info")
    (tmp_path / "alerts_test.yml").write_text(broken, encoding="utf-8")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "BitVelocityFreshnessOverSLO" in result.stdout + result.stderr


def test_compose_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_stack_prometheus_config_is_valid(tmp_path: Path) -> None:
    # Declared defaults for the scrape target, whatever BV_* variables this run has set.
    settings = Settings(
        stack=StackSettings(state_dir=tmp_path), web=WebSettings(), monitoring=MonitoringSettings()
    )
    service = PrometheusService(StackContext(settings))
    service.prepare(lambda _message: None)
    result = promtool("check", "config", service.config_path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = json.loads(Path(service.config_path).read_text(encoding="utf-8"))
    assert rendered["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:23067"]
