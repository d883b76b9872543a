"""Settings: environment overrides, secrets that never print, one-line errors naming the setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import Settings, load_settings
from stack.credentials import ensure_credentials


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No BV_ variables from the outer environment; state in a temporary folder."""
    import os

    for key in list(os.environ):
        if key.startswith("BV_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BV_STACK__STATE_DIR", str(tmp_path))
    return tmp_path


def test_nested_sections_are_set_by_double_underscore_variables(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BV_POSTGRES__PORT", "6543")
    monkeypatch.setenv("BV_SINK__BATCH_MAX_RECORDS", "17")
    monkeypatch.setenv("BV_TOPICS__CDC_PREFIX", "shop")
    settings = load_settings()
    assert settings.postgres.port == 6543
    assert settings.sink.batch_max_records == 17
    assert settings.topics.cdc_topic("orders") == "shop.public.orders"
    assert settings.topics.dlq_topic("shop.public.orders") == "shop.public.orders.dlq"


def test_defaults_bind_every_service_to_loopback(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.web.host == "127.0.0.1"
    assert settings.postgres.host == "127.0.0.1"
    assert settings.kafka.bootstrap_servers.startswith("127.0.0.1:")


def test_secrets_are_never_printed(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BV_POSTGRES__ADMIN_PASSWORD", "hunter2-do-not-print")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert settings.postgres.admin_password.get_secret_value() == "hunter2-do-not-print"


def test_generated_credentials_are_private_and_read_back(clean_env: Path) -> None:
    path = ensure_credentials(clean_env)
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text(encoding="utf-8")
    ensure_credentials(clean_env)
    assert path.read_text(encoding="utf-8") == first  # idempotent: never rotated by accident
    settings = load_settings()
    assert len(settings.postgres.admin_password.get_secret_value()) >= 24
    assert settings.redis.password.get_secret_value() in first


def test_environment_wins_over_the_credentials_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_credentials(clean_env)
    monkeypatch.setenv("BV_REDIS__PASSWORD", "from-env")
    assert load_settings().redis.password.get_secret_value() == "from-env"


def test_settings_are_frozen(clean_env: Path) -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.postgres.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["abc", "70000", "0"])
def test_invalid_port_is_a_validation_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("BV_REDIS__PORT", bad)
    with pytest.raises(ValidationError):
        Settings()


def test_cli_reports_a_bad_setting_in_one_line_naming_it(clean_env: Path) -> None:
    import os

    env = {**os.environ, "BV_REDIS__PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "stack", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "BV_REDIS__PORT" in lines[0]
    assert "Traceback" not in result.stderr
