"""The Debezium connector config: no password in it, Confluent framing, our topic layout."""

from __future__ import annotations

from pathlib import Path

from admin.connectors import (
    OLTP_HEARTBEAT_QUERY,
    ConnectorSpec,
    changed_settings,
    debezium_postgres_config,
    oltp_connector_spec,
)
from config.settings import Settings


def spec(converter: str = "avro") -> ConnectorSpec:
    return ConnectorSpec(
        name="c",
        database="bitvelocity",
        tables=["public.orders", "public.payments"],
        topic_prefix="bitvelocity",
        slot="s",
        publication="p",
        converter=converter,  # type: ignore[arg-type]
    )


def test_password_is_a_file_reference_never_the_secret(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"postgres": {"admin_password": "s3cret-value"}, "stack": {"state_dir": tmp_path}}
    )
    config = debezium_postgres_config(settings, spec())
    assert "s3cret-value" not in str(config)
    assert config["database.password"] == (
        f"${{file:{tmp_path}/connect/secrets/postgres.properties:admin_password}}"
    )


def test_avro_profile_writes_confluent_framing_with_content_ids() -> None:
    config = debezium_postgres_config(Settings(), spec())
    for side in ("key", "value"):
        assert config[f"{side}.converter.apicurio.registry.headers.enabled"] == "false"
        assert config[f"{side}.converter.apicurio.registry.as-confluent"] == "true"
        assert config[f"{side}.converter.apicurio.registry.use-id"] == "contentId"
    assert config["plugin.name"] == "pgoutput"
    assert config["table.include.list"] == "public.orders,public.payments"
    assert config["decimal.handling.mode"] == "precise"


def test_json_profile_has_no_registry() -> None:
    config = debezium_postgres_config(Settings(), spec("json"))
    assert config["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    assert not any("apicurio" in key for key in config)


def test_the_oltp_connector_writes_its_heartbeat_row() -> None:
    """The slot of a quiet database moves only with a published change (decision 0024)."""
    config = debezium_postgres_config(Settings(), oltp_connector_spec(Settings()))
    assert config["heartbeat.action.query"] == OLTP_HEARTBEAT_QUERY
    assert "cdc.heartbeat" not in config["table.include.list"]  # no change topic for it


def test_a_connector_without_a_heartbeat_query_has_none() -> None:
    assert "heartbeat.action.query" not in debezium_postgres_config(Settings(), spec())


def test_a_changed_registration_names_the_settings_that_differ() -> None:
    wanted = debezium_postgres_config(Settings(), oltp_connector_spec(Settings()))
    registered = {k: v for k, v in wanted.items() if k != "heartbeat.action.query"}
    registered["name"] = "bitvelocity-postgres-cdc"  # Connect adds it; not a difference
    registered["topic.creation.default.partitions"] = "7"
    assert changed_settings(registered, wanted) == [
        "heartbeat.action.query",
        "topic.creation.default.partitions",
    ]
    assert changed_settings(wanted, wanted) == []
