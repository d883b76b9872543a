"""`bitvelocity dlq show|replay` reads dead letters and sends them back, bounded and explicit."""

from __future__ import annotations

import secrets

from typer.testing import CliRunner

from cli.main import app
from config.errors import SchemaNotFoundError
from config.settings import Settings
from serdes.dead_letters import RecordOrigin, dead_letter, header
from sinks.kafka.dead_letters import DeadLetterPublisher
from tests.integration.capture import delete_topics
from tests.kafka_io import create_topic, read_all


def test_dead_letters_are_shown_and_replayed_to_their_origin_topic(settings: Settings) -> None:
    bootstrap = settings.kafka.bootstrap_servers
    origin_topic = f"bv-serdes-dlqcli-{secrets.token_hex(3)}"
    dlq = f"{origin_topic}.dlq"
    create_topic(bootstrap, origin_topic)
    create_topic(bootstrap, dlq)
    runner = CliRunner()
    try:
        with DeadLetterPublisher(bootstrap) as publisher:
            for offset in (5, 6):
                origin = RecordOrigin(
                    origin_topic, 0, offset, b"k", b"\x00bad%d" % offset, (("trace", b"t"),)
                )
                publisher.publish(dead_letter(origin, SchemaNotFoundError("no id 9"), 9))
            publisher.flush()

        shown = runner.invoke(app, ["dlq", "show", dlq])
        assert shown.exit_code == 0, shown.output
        assert "SchemaNotFoundError" in shown.output
        assert f"{origin_topic}:0:5" in shown.output

        dry = runner.invoke(app, ["dlq", "replay", dlq, "--limit", "1", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "1 records would be replayed" in dry.output
        assert read_all(bootstrap, origin_topic, 1, timeout_s=2) == []

        replayed = runner.invoke(app, ["dlq", "replay", dlq, "--limit", "1"])
        assert replayed.exit_code == 0, replayed.output
        (record,) = read_all(bootstrap, origin_topic, 1)
        assert (record.key, record.value) == (b"k", b"\x00bad5")
        assert header(record.headers, "bv.replay.of") == f"{dlq}:0:0"
        assert header(record.headers, "trace") == "t"
        assert header(record.headers, "bv.error.class") is None

        missing_limit = runner.invoke(app, ["dlq", "replay", dlq])
        assert missing_limit.exit_code != 0
    finally:
        delete_topics(bootstrap, origin_topic)
