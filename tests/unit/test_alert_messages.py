"""Alert messages: one per ERROR row or dead letter, ids that only depend on what they are about."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from alerts.messages import (
    DLQ_RECORD,
    QUALITY_ERROR,
    AlertFormatError,
    decode_alert,
    dlq_notification,
    quality_alerts,
)
from config.errors import PermanentError
from serdes.dead_letters import RecordOrigin, dead_letter

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def order(order_id: int, version: int, amount: str = "10.00") -> dict[str, object]:
    return {
        "order_id": order_id,
        "created_date": AT.date(),
        "version": version,
        "total_amount": Decimal(amount),
    }


def test_only_rows_with_an_error_issue_raise_an_alert() -> None:
    rows = [order(1, 1), order(2, 1), order(3, 1)]
    issues = [
        ["WARNING:PATTERN:status"],
        ["ERROR:RANGE:total_amount", "WARNING:PATTERN:status"],
        [],
    ]
    [alert] = quality_alerts("orders", ("order_id", "created_date"), rows, issues, [AT] * 3)
    assert alert.kind == QUALITY_ERROR
    assert alert.body["key"] == {"order_id": 2, "created_date": "2026-11-26"}
    assert alert.body["issues"] == ["ERROR:RANGE:total_amount"]
    assert alert.body["version"] == 1


def test_the_same_row_version_always_has_the_same_id_and_a_new_version_another() -> None:
    def alert_id(row: dict[str, object], issues: list[str]) -> str:
        [alert] = quality_alerts("orders", ("order_id",), [row], [issues], [AT])
        return alert.message_id

    error = ["ERROR:RANGE:total_amount"]
    assert alert_id(order(1, 1), error) == alert_id(order(1, 1), error)
    assert alert_id(order(1, 1), error) != alert_id(order(1, 2), error)
    assert alert_id(order(1, 1), error) != alert_id(order(2, 1), error)
    assert alert_id(order(1, 1), error) != alert_id(order(1, 1), [*error, "ERROR:NOT_NULL:x"])


def test_alerts_round_trip_through_the_topic_encoding() -> None:
    [alert] = quality_alerts("orders", ("order_id",), [order(5, 3)], [["ERROR:X:y"]], [AT])
    decoded = decode_alert(alert.encode())
    assert decoded.message_id == alert.message_id
    assert decoded.kind == alert.kind
    assert decoded.body == orjson.loads(orjson.dumps(dict(alert.body)))
    with pytest.raises(AlertFormatError):
        decode_alert(b'{"kind": "x"}')
    with pytest.raises(AlertFormatError):
        decode_alert(b"not json")


def test_dlq_notification_is_named_by_the_origin_record_not_the_dlq_position() -> None:
    origin = RecordOrigin("bitvelocity.public.orders", 2, 41, b"k", b"secret bytes")
    letter = dead_letter(origin, PermanentError("bad magic byte"), schema_id=7)
    first = dlq_notification(letter.topic, 0, 100, list(letter.headers))
    again = dlq_notification(letter.topic, 0, 230, list(letter.headers))  # published twice
    assert first.message_id == again.message_id == "dlq:bitvelocity.public.orders:2:41"
    assert first.kind == DLQ_RECORD
    assert first.body["origin"] == {
        "topic": "bitvelocity.public.orders",
        "partition": 2,
        "offset": 41,
    }
    assert first.body["error_class"] == "PermanentError"
    assert first.body["schema_id"] == 7
    assert b"secret bytes" not in first.encode()  # never the record itself


def test_a_dead_letter_without_origin_headers_is_named_by_its_own_position() -> None:
    alert = dlq_notification("x.dlq", 1, 9, [])
    assert alert.message_id == "dlq:x.dlq:1:9"
    assert alert.body["origin"] is None
