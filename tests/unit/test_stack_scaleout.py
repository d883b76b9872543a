"""NATS and RabbitMQ are opt-in stack services: loopback only, secrets in 0600 files, no guest."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from config.errors import ConfigurationError
from config.settings import NatsSettings, RabbitMQSettings, Settings, StackSettings
from stack.base import StackContext
from stack.credentials import ensure_credentials
from stack.manager import SCALEOUT_NAMES, SERVICE_NAMES, Stack
from stack.nats_service import NatsService
from stack.rabbitmq_service import RabbitMQService, server_version


def settings_in(tmp_path: Path, **sections: object) -> Settings:
    """Declared defaults (not this run's BV_* variables) plus ``sections``."""
    defaults: dict[str, object] = {"nats": NatsSettings(), "rabbitmq": RabbitMQSettings()}
    return Settings(  # type: ignore[arg-type]
        stack=StackSettings(state_dir=tmp_path), **{**defaults, **sections}
    )


def test_default_stack_has_no_scaleout_services(tmp_path: Path) -> None:
    stack = Stack(settings_in(tmp_path))
    assert stack.names == SERVICE_NAMES
    with pytest.raises(ConfigurationError, match="--with-scaleout"):
        stack.select(["rabbitmq"])


def test_with_scaleout_its_services_start_with_the_first_wave(tmp_path: Path) -> None:
    stack = Stack(settings_in(tmp_path), with_scaleout=True)
    assert set(stack.names) == {*SERVICE_NAMES, *SCALEOUT_NAMES}
    assert set(SCALEOUT_NAMES) == {"nats", "rabbitmq", "cassandra", "ferretdb"}
    assert {*SCALEOUT_NAMES, "postgres"} <= {s.name for s in stack.waves[0]}
    # stopping goes in reverse start order: the stack's own services are unaffected
    assert stack.names[: len(stack.waves[0])][-len(SCALEOUT_NAMES) :] == SCALEOUT_NAMES
    both = Stack(settings_in(tmp_path), with_scaleout=True, with_monitoring=True)
    assert both.names[-1] == "prometheus"


def test_every_scaleout_endpoint_is_loopback(tmp_path: Path) -> None:
    context = StackContext(settings_in(tmp_path))
    endpoints = [e for s in (NatsService(context), RabbitMQService(context)) for e in s.endpoints()]
    assert {e.host for e in endpoints} == {"127.0.0.1"}
    assert {e.port for e in endpoints} == {54222, 55672, 55673, 54369}


def test_nats_requires_the_token_on_loopback(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, nats=NatsSettings(token=SecretStr("s3cr3t-token")))
    service = NatsService(StackContext(settings))
    text = service.render_config()
    assert 'listen: "127.0.0.1:54222"' in text
    assert 'authorization { token: "s3cr3t-token" }' in text


def test_rabbitmq_has_our_user_only_and_binds_loopback(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, rabbitmq=RabbitMQSettings(password=SecretStr("pw-123")))
    service = RabbitMQService(StackContext(settings))
    text = service.render_config()
    assert "listeners.tcp.1 = 127.0.0.1:55672" in text
    assert "default_user = bv" in text
    assert "default_pass = pw-123" in text
    assert "guest" not in text
    env = service.environment()
    assert env["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert env["ERL_EPMD_PORT"] == "54369"
    assert env["RABBITMQ_DIST_PORT"] == "55673"
    assert "inet_dist_use_interface {127,0,0,1}" in env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert env["HOME"].startswith(str(tmp_path))  # the Erlang cookie stays in the state dir


def test_credentials_generate_the_nats_token_and_rabbitmq_password(tmp_path: Path) -> None:
    path = ensure_credentials(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "BV_NATS__TOKEN=" in text
    assert "BV_RABBITMQ__PASSWORD=" in text


def test_amqp_url_quotes_the_password() -> None:
    settings = RabbitMQSettings(password=SecretStr("a/b@c"))
    assert settings.url() == "amqp://bv:a%2Fb%40c@127.0.0.1:55672/%2F"


def test_server_version_is_read_from_connection_start() -> None:
    frame = b"\x01\x00\x00\x00\x00\x01\x00\x00\x0a\x00\x0a\x00\x09" + b"\x07versionS"
    frame += (6).to_bytes(4, "big") + b"3.10.8"
    assert server_version(frame) == "3.10.8"
    assert server_version(b"\x01\x00\x00") is None
