"""docker-compose.yml describes the same stack as `bitvelocity stack up` (it cannot run here)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from config.settings import PROJECT_ROOT, RedisSettings, Settings
from stack import versions
from stack.base import host_port, url_host_port
from stack.redis_service import acl_rules

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def published(service: dict[str, Any]) -> dict[int, str]:
    """Host port -> bound host address, from ``ports`` entries like 127.0.0.1:23432:5432."""
    result = {}
    for entry in service.get("ports", []):
        host, host_port_text, _container = str(entry).split(":")
        result[int(host_port_text)] = host
    return result


def test_services_are_the_stack_plus_monitoring(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "kafka",
        "registry",
        "connect",
        "prometheus",
        "grafana",
        "nats",
        "rabbitmq",
        "cassandra",
        "ferretdb",
    }


def test_host_ports_equal_the_settings_defaults(compose: dict[str, Any]) -> None:
    # The declared defaults, whatever BV_* variables this run has set.
    settings = Settings.model_construct(
        **{name: field.default for name, field in Settings.model_fields.items()}
    )
    services = compose["services"]
    assert settings.postgres.port in published(services["postgres"])
    assert settings.redis.port in published(services["redis"])
    assert host_port(settings.kafka.bootstrap_servers)[1] in published(services["kafka"])
    assert url_host_port(settings.registry.url)[1] in published(services["registry"])
    assert settings.registry.management_port in published(services["registry"])
    assert url_host_port(settings.connect.url)[1] in published(services["connect"])
    assert settings.nats.port in published(services["nats"])
    assert settings.rabbitmq.port in published(services["rabbitmq"])
    assert settings.cassandra.port in published(services["cassandra"])
    assert settings.mongo.port in published(services["ferretdb"])


def test_scaleout_services_are_optional_and_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["nats"]["profiles"] == services["rabbitmq"]["profiles"] == ["scaleout"]
    assert services["cassandra"]["profiles"] == services["ferretdb"]["profiles"] == ["scaleout"]
    assert services["nats"]["image"].endswith(f":{versions.NATS_VERSION}")
    assert services["rabbitmq"]["image"].endswith(f":{versions.RABBITMQ_VERSION}")
    assert services["cassandra"]["image"].endswith(f":{versions.CASSANDRA_VERSION}")
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${")


def test_every_published_port_is_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port, host in published(service).items():
            assert host == "127.0.0.1", f"{name} publishes {port} on {host}"


def test_image_versions_match_the_pinned_stack(compose: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in compose["services"].items()}
    assert images["kafka"].endswith(f":{versions.KAFKA_VERSION}")
    assert images["connect"].endswith(f":{versions.DEBEZIUM_VERSION}")
    assert images["registry"].endswith(f":{versions.APICURIO_REGISTRY_VERSION}")
    assert images["postgres"].endswith(f":{versions.POSTGRES_MAJOR}")
    assert images["cassandra"].endswith(f":{versions.CASSANDRA_VERSION}")
    assert images["ferretdb"].endswith(f":{versions.FERRETDB_VERSION.removeprefix('v')}")


def test_postgres_runs_with_logical_replication(compose: dict[str, Any]) -> None:
    assert "wal_level=logical" in compose["services"]["postgres"]["command"]


def test_no_secret_is_written_in_the_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for match in re.finditer(r"(PASSWORD[A-Z_]*:\s*|--requirepass\n\s*- |on >)(\S+)", text):
        assert match.group(2).startswith("${"), f"literal secret: {match.group(0)!r}"


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), source


def test_redis_runs_the_same_acl_users_as_the_stack(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    users = [command[i + 1] for i, arg in enumerate(command) if arg == "--user"]
    stack_rules = acl_rules(
        RedisSettings(password=SecretStr("APP"), admin_password=SecretStr("ADM"))
    )
    expected = [
        rule.removeprefix("user ")
        .replace(">ADM", ">${BV_REDIS__ADMIN_PASSWORD:?set BV_REDIS__ADMIN_PASSWORD}")
        .replace(">APP", ">${BV_REDIS__PASSWORD:?set BV_REDIS__PASSWORD}")
        for rule in stack_rules
    ]
    assert users == expected


def test_postgres_image_is_built_with_pg_partman(compose: dict[str, Any]) -> None:
    """The bootstrap and the migrations need pg_partman, which the official image lacks."""
    build = compose["services"]["postgres"]["build"]
    text = (PROJECT_ROOT / build["context"] / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM postgres:${POSTGRES_MAJOR}" in text
    assert "postgresql-${POSTGRES_MAJOR}-partman" in text
    assert build["args"]["POSTGRES_MAJOR"] == str(versions.POSTGRES_MAJOR)
