"""The scale-out services (NATS, RabbitMQ, Cassandra, FerretDB) are opt-in stack services:
loopback only, secrets in 0600 files, no guest, configured tiny."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from config.errors import ConfigurationError, DependencyMissingError
from config.settings import (
    CassandraSettings,
    MongoSettings,
    NatsSettings,
    RabbitMQSettings,
    Settings,
    StackSettings,
)
from stack import cassandra_service
from stack.base import StackContext
from stack.cassandra_service import CassandraService, cassandra_yaml
from stack.credentials import ensure_credentials
from stack.ferretdb_service import FerretDBService, ferretdb_binary
from stack.manager import SCALEOUT_NAMES, SERVICE_NAMES, Stack
from stack.nats_service import NatsService
from stack.rabbitmq_service import RabbitMQService, server_version
from stack.tools import find_java
from stack.versions import FERRETDB_VERSION


def settings_in(tmp_path: Path, **sections: object) -> Settings:
    """Declared defaults (not this run's BV_* variables) plus ``sections``."""
    defaults: dict[str, object] = {
        "nats": NatsSettings(),
        "rabbitmq": RabbitMQSettings(),
        "cassandra": CassandraSettings(),
        "mongo": MongoSettings(),
    }
    return Settings(  # type: ignore[arg-type]
        stack=StackSettings(state_dir=tmp_path), **{**defaults, **sections}
    )


@pytest.mark.parametrize("service", ["nats", "rabbitmq", "cassandra", "ferretdb"])
def test_default_stack_has_no_scaleout_services(tmp_path: Path, service: str) -> None:
    stack = Stack(settings_in(tmp_path))
    assert stack.names == SERVICE_NAMES
    assert not set(SCALEOUT_NAMES) & set(SERVICE_NAMES)
    with pytest.raises(ConfigurationError, match="--with-scaleout"):
        stack.select([service])


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
    assert {e.port for e in endpoints} == {23222, 23672, 23673, 23369}


def test_nats_requires_the_token_on_loopback(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, nats=NatsSettings(token=SecretStr("s3cr3t-token")))
    service = NatsService(StackContext(settings))
    text = service.render_config()
    assert 'listen: "127.0.0.1:23222"' in text
    assert 'authorization { token: "s3cr3t-token" }' in text


def test_rabbitmq_has_our_user_only_and_binds_loopback(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, rabbitmq=RabbitMQSettings(password=SecretStr("pw-123")))
    service = RabbitMQService(StackContext(settings))
    text = service.render_config()
    assert "listeners.tcp.1 = 127.0.0.1:23672" in text
    assert "default_user = bv" in text
    assert "default_pass = pw-123" in text
    assert "guest" not in text
    env = service.environment()
    assert env["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert env["ERL_EPMD_PORT"] == "23369"
    assert env["RABBITMQ_DIST_PORT"] == "23673"
    assert "inet_dist_use_interface {127,0,0,1}" in env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert env["HOME"].startswith(str(tmp_path))  # the Erlang cookie stays in the state dir


def test_credentials_generate_the_nats_token_and_rabbitmq_password(tmp_path: Path) -> None:
    path = ensure_credentials(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "BV_NATS__TOKEN=" in text
    assert "BV_RABBITMQ__PASSWORD=" in text


def test_amqp_url_quotes_the_password() -> None:
    settings = RabbitMQSettings(password=SecretStr("a/b@c"))
    assert settings.url() == "amqp://bv:a%2Fb%40c@127.0.0.1:23672/%2F"


def test_server_version_is_read_from_connection_start() -> None:
    frame = b"\x01\x00\x00\x00\x00\x01\x00\x00\x0a\x00\x0a\x00\x09" + b"\x07versionS"
    frame += (6).to_bytes(4, "big") + b"3.10.8"
    assert server_version(frame) == "3.10.8"
    assert server_version(b"\x01\x00\x00") is None


def test_cassandra_yaml_is_a_one_token_loopback_node_under_the_state_dir(tmp_path: Path) -> None:
    config = yaml.safe_load(cassandra_yaml(tmp_path, "127.0.0.1", 23042, 23700))
    assert config["num_tokens"] == 1
    assert config["listen_address"] == config["rpc_address"] == "127.0.0.1"
    assert config["native_transport_port"] == 23042
    assert config["storage_port"] == 23700
    assert config["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:23700"
    for key in ("commitlog_directory", "hints_directory", "saved_caches_directory"):
        assert str(config[key]).startswith(str(tmp_path))
    assert all(str(d).startswith(str(tmp_path)) for d in config["data_file_directories"])


def test_cassandra_command_uses_the_configured_small_heap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_in(tmp_path).model_copy(
        update={"cassandra": CassandraSettings(heap_mb=384)}
    )
    # The command names a JDK; which one is find_java's business (tested below), not this test's.
    monkeypatch.setattr(cassandra_service, "find_java", lambda *_a, **_k: Path("/jdk/bin/java"))
    service = CassandraService(StackContext(settings))
    command = service.command()
    assert "-Xmx384m" in command
    assert command[-1] == "org.apache.cassandra.service.CassandraDaemon"
    assert str(tmp_path) in " ".join(command)  # `stack down` finds it by the state dir


def test_endpoints_name_the_settings_that_move_them(tmp_path: Path) -> None:
    context = StackContext(settings_in(tmp_path))
    cassandra = {e.port: e.setting for e in CassandraService(context).endpoints()}
    assert cassandra == {23042: "BV_CASSANDRA__PORT", 23700: "BV_CASSANDRA__STORAGE_PORT"}
    ferretdb = {e.port: e.setting for e in FerretDBService(context).endpoints()}
    assert ferretdb == {23017: "BV_MONGO__PORT"}


def test_ferretdb_binary_is_cached_per_version_outside_the_state_dir(tmp_path: Path) -> None:
    assert ferretdb_binary(tmp_path) == tmp_path / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"


def test_find_java_refuses_a_jdk_newer_than_the_maximum(tmp_path: Path) -> None:
    home = tmp_path / "jdk-25"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n", encoding="utf-8")
    (home / "release").write_text('JAVA_VERSION="25.0.1"\n', encoding="utf-8")
    assert find_java(21, home) == home / "bin" / "java"
    with pytest.raises(DependencyMissingError, match="Java 99 to 99"):
        find_java(99, home, maximum=99)


def test_mongo_uri_quotes_credentials() -> None:
    from pydantic import SecretStr

    settings = MongoSettings(username="bv", password=SecretStr("p@ss:/word"))
    assert settings.uri() == "mongodb://bv:p%40ss%3A%2Fword@127.0.0.1:23017/"
    assert MongoSettings().uri() == "mongodb://127.0.0.1:23017/"
