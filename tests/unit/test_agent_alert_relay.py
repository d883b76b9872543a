"""The alert relay's logic through the test driver: records of the quality-alerts topic and
of dead-letter topics in, the ``Alert`` each stands for out (``alert_of``). The dead letter
is made by the medallion pipeline's own decoding of a poison record, then read back from
its ``.dlq`` topic, as the relay sees it in production."""

from __future__ import annotations

import time

from agents.alert_relay import alert_of
from agents.medallion_records import decode_cdc_record
from alerts.messages import DLQ_RECORD, QUALITY_ERROR
from serdes.consumer_step import Backoff
from serdes.dead_letters import DeadLetter
from tests.driver import CdcRecords, FakeClock, InputTopic, message

ALERTS = "quality-alerts"


def test_a_quality_alert_record_is_relayed_as_it_was_written_and_garbage_is_skipped() -> None:
    topic = InputTopic(ALERTS, FakeClock())
    written = (
        b'{"message_id":"quality:abc","kind":"quality.error","table":"orders",'
        b'"issues":["ERROR:NEGATIVE:total_amount"]}'
    )
    alert = alert_of(message(topic.record(b"k", written)), ALERTS)
    assert alert is not None
    assert (alert.message_id, alert.kind) == ("quality:abc", QUALITY_ERROR)
    assert alert.body == {"table": "orders", "issues": ["ERROR:NEGATIVE:total_amount"]}

    assert alert_of(message(topic.record(b"k", b"not json")), ALERTS) is None
    assert alert_of(message(topic.record(b"k", b'{"kind":"x"}')), ALERTS) is None  # no id


def test_a_dead_letter_becomes_a_notification_named_by_its_origin_without_its_bytes() -> None:
    cdc = CdcRecords()
    cdc.poison("orders")  # offset 0
    poison = cdc.poison("orders", partition=0)  # offset 1
    letter = decode_cdc_record(
        cdc.decoder(), message(poison), Backoff(), time.monotonic() + 5
    ).decoded
    assert isinstance(letter, DeadLetter)
    dlq = InputTopic(letter.topic, FakeClock())
    dlq.record(None, b"earlier")  # the dead letter lands at offset 1 of its topic
    relayed = dlq.record(letter.key, letter.value, headers=letter.headers)

    alert = alert_of(message(relayed), ALERTS)
    assert alert is not None
    assert alert.kind == DLQ_RECORD
    assert alert.message_id == "dlq:bitvelocity.public.orders:0:1"
    assert alert.body["dlq"] == {
        "topic": "bitvelocity.public.orders.dlq",
        "partition": 0,
        "offset": 1,
    }
    assert alert.body["origin"] == {
        "topic": "bitvelocity.public.orders",
        "partition": 0,
        "offset": 1,
    }
    assert alert.body["error_class"] == letter.reason
    assert poison.value not in alert.encode()  # the record's bytes are never relayed


def test_a_dead_letter_without_our_headers_is_named_by_its_own_position() -> None:
    dlq = InputTopic("bitvelocity.public.orders.dlq", FakeClock())
    alert = alert_of(message(dlq.record(None, b"x", partition=2)), ALERTS)
    assert alert is not None
    assert alert.message_id == "dlq:bitvelocity.public.orders.dlq:2:0"
    assert alert.body["origin"] is None
    assert alert.body["error_class"] is None
