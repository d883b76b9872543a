"""Personal data never leaves through a dead-letter message or a log line.

The DLQ keeps the record's bytes (a replay needs them), but the error message that
``dlq show`` prints, and every JSON log line, has emails and personal columns' values masked.
Each test fails if the ``redact_text`` call is removed from its path.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from observability.logging import configure_logging
from quality.redaction import redact_text
from serdes.dead_letters import ERROR_MESSAGE, RecordOrigin, dead_letter, header

EMAIL = "jane.roe@example.org"
ROW = {"customer_id": 7, "email": EMAIL, "first_name": "Jane", "last_name": "Roe"}


def test_free_text_masks_emails_and_values_of_personal_columns() -> None:
    text = f"bad row {ROW!r}; contact={EMAIL}; name=Jane"
    masked = redact_text(text)
    for personal in ("jane.roe", "example.org", "'Jane'", "'Roe'", "name=Jane"):
        assert personal not in masked
    assert "'customer_id': 7" in masked  # surrogate keys stay: they find the row
    assert "j***@e***.org" in masked


@pytest.mark.parametrize("text", ["table_name=orders", "rename: x", "order_id=5", "no pii here"])
def test_free_text_without_personal_data_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_a_dead_letter_message_masks_personal_data_but_keeps_the_bytes() -> None:
    value = orjson.dumps(ROW)
    origin = RecordOrigin("bitvelocity.public.customers", 0, 42, b"7", value)
    letter = dead_letter(origin, ValueError(f"cannot validate {ROW!r}"))
    message = header(letter.headers, ERROR_MESSAGE) or ""
    assert message.startswith("cannot validate")
    assert EMAIL not in message
    assert "Jane" not in message
    assert "Roe" not in message
    assert letter.value == value  # untouched, for replay


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    yield stream
    logging.getLogger("bitvelocity").removeHandler(handler)


def test_log_lines_mask_personal_data_in_message_extras_and_exceptions(
    log_stream: io.StringIO,
) -> None:
    log = logging.getLogger("bitvelocity.sink")
    log.warning("rejected customer %s", EMAIL, extra={"sample": f"first_name={ROW['first_name']}"})
    try:
        raise ValueError(f"bad email {EMAIL}")
    except ValueError:
        log.exception("batch failed")
    text = log_stream.getvalue()
    assert EMAIL not in text
    assert "first_name=Jane" not in text
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert lines[0]["message"] == "rejected customer j***@e***.org"
    assert lines[0]["sample"] == "first_name=J***"
    assert "bad email j***@e***.org" in str(lines[1]["exception"])
