"""Cassandra and FerretDB are opt-in stack services (``--with-scaleout``), configured tiny."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.errors import ConfigurationError, DependencyMissingError
from config.settings import CassandraSettings, MongoSettings, Settings, StackSettings
from stack.base import StackContext
from stack.cassandra_service import CassandraService, cassandra_yaml
from stack.ferretdb_service import FerretDBService, ferretdb_binary
from stack.manager import SCALEOUT_NAMES, SERVICE_NAMES, Stack
from stack.tools import find_java
from stack.versions import FERRETDB_VERSION


def settings_in(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        stack=StackSettings(state_dir=tmp_path),
        cassandra=CassandraSettings(),
        mongo=MongoSettings(),
    )


def test_default_stack_has_no_scaleout_store(tmp_path: Path) -> None:
    stack = Stack(settings_in(tmp_path))
    assert stack.names == SERVICE_NAMES
    assert not set(SCALEOUT_NAMES) & set(SERVICE_NAMES)
    with pytest.raises(ConfigurationError, match="--with-scaleout"):
        stack.select(["cassandra"])


def test_cassandra_yaml_is_a_one_token_loopback_node_under_the_state_dir(tmp_path: Path) -> None:
    config = yaml.safe_load(cassandra_yaml(tmp_path, "127.0.0.1", 59042, 59700))
    assert config["num_tokens"] == 1
    assert config["listen_address"] == config["rpc_address"] == "127.0.0.1"
    assert config["native_transport_port"] == 59042
    assert config["storage_port"] == 59700
    assert config["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:59700"
    for key in ("commitlog_directory", "hints_directory", "saved_caches_directory"):
        assert str(config[key]).startswith(str(tmp_path))
    assert all(str(d).startswith(str(tmp_path)) for d in config["data_file_directories"])


def test_cassandra_command_uses_the_configured_small_heap(tmp_path: Path) -> None:
    settings = settings_in(tmp_path).model_copy(
        update={"cassandra": CassandraSettings(heap_mb=384)}
    )
    service = CassandraService(StackContext(settings))
    try:
        command = service.command()
    except DependencyMissingError:
        pytest.skip("no Java 11-17 on this machine")  # the command needs a JDK to name
    assert "-Xmx384m" in command
    assert command[-1] == "org.apache.cassandra.service.CassandraDaemon"
    assert str(tmp_path) in " ".join(command)  # `stack down` finds it by the state dir


def test_endpoints_name_the_settings_that_move_them(tmp_path: Path) -> None:
    context = StackContext(settings_in(tmp_path))
    cassandra = {e.port: e.setting for e in CassandraService(context).endpoints()}
    assert cassandra == {59042: "BV_CASSANDRA__PORT", 59700: "BV_CASSANDRA__STORAGE_PORT"}
    ferretdb = {e.port: e.setting for e in FerretDBService(context).endpoints()}
    assert ferretdb == {57017: "BV_MONGO__PORT"}


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
    assert settings.uri() == "mongodb://bv:p%40ss%3A%2Fword@127.0.0.1:57017/"
    assert MongoSettings().uri() == "mongodb://127.0.0.1:57017/"
