"""JSON-lines logs with trace ids taken from Kafka headers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from observability.logging import (
    configure_logging,
    current_trace_id,
    distinct_trace_ids,
    trace_context,
    trace_headers,
    trace_id_from_headers,
)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    yield stream
    logging.getLogger("bitvelocity").removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_each_event_is_one_json_line_with_trace_id_and_extra_fields(
    log_stream: io.StringIO,
) -> None:
    log = logging.getLogger("bitvelocity.sink")
    with trace_context("tx-42"):
        log.info("batch committed", extra={"pipeline": "bronze", "records": 500})
    log.warning("rebalance")
    first, second = lines(log_stream)
    assert first["message"] == "batch committed"
    assert first["trace_id"] == "tx-42"
    assert first["pipeline"] == "bronze"
    assert first["records"] == 500
    assert first["level"] == "INFO"
    assert first["logger"] == "bitvelocity.sink"
    assert str(first["ts"]).endswith("+00:00")
    assert second["trace_id"] is None


def test_an_explicit_trace_id_in_extra_wins_over_the_context(log_stream: io.StringIO) -> None:
    with trace_context("outer"):
        logging.getLogger("bitvelocity").info("x", extra={"trace_id": "inner"})
    assert lines(log_stream)[0]["trace_id"] == "inner"


def test_exceptions_are_kept_inside_the_single_line(log_stream: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("bitvelocity").exception("failed")
    [entry] = lines(log_stream)
    assert "RuntimeError: boom" in str(entry["exception"])


def test_trace_context_is_restored_after_the_block() -> None:
    with trace_context("a"):
        with trace_context("b"):
            assert current_trace_id() == "b"
        assert current_trace_id() == "a"
    assert current_trace_id() is None


def test_our_trace_header_wins_over_correlation_and_traceparent() -> None:
    headers = [
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("correlation_id", b"corr-1"),
        ("bv.trace_id", b"trace-1"),
    ]
    assert trace_id_from_headers(headers) == "trace-1"


def test_the_debezium_propagated_correlation_id_is_the_trace_id() -> None:
    assert trace_id_from_headers([("correlation_id", b"order-tx-7")]) == "order-tx-7"
    assert trace_id_from_headers({"bv.correlation_id": "order-tx-8"}) == "order-tx-8"


def test_w3c_traceparent_yields_its_trace_id_part() -> None:
    header = {"traceparent": b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}
    assert trace_id_from_headers(header) == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("bv.trace_id", b"")],
        [("bv.trace_id", None)],
        {"traceparent": b"garbage"},
        {"traceparent": b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
    ],
)
def test_missing_or_malformed_headers_give_no_trace_id(headers: object) -> None:
    assert trace_id_from_headers(headers) is None  # type: ignore[arg-type]


def test_trace_headers_round_trip() -> None:
    assert trace_id_from_headers(trace_headers("abc")) == "abc"


def test_a_batch_lists_its_distinct_trace_ids_capped() -> None:
    ids = ["a", None, "b", "a", "c", "d"]
    assert distinct_trace_ids(ids) == ["a", "b", "c", "d"]
    assert distinct_trace_ids(ids, limit=2) == ["a", "b"]
