"""Debezium Avro events for a table with every PostgreSQL type decode to exactly the rows a
SELECT reads back (the independent oracle), through the real registry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

import orjson
import pytest

from admin.capture import remove_capture_outputs
from config.settings import Settings
from records.change_events import ChangeEvent, Operation, Tombstone
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder
from serdes.logical_types import UNCHANGED
from serdes.registry import RegistryClient
from tests.integration import all_types_sql
from tests.integration.capture import CaptureRun, RawRecord, capture

#: Everything the module creates is removed again, also when a test fails.
pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture(scope="module")
def captured(settings: Settings) -> Iterator[tuple[list[RawRecord], list[dict[str, Any]]]]:
    run = CaptureRun(settings, extra_config={"skipped.operations": "none"})
    try:
        yield capture(
            run,
            all_types_sql.ddl(run.schema),
            ["all_types", "toasted"],
            all_types_sql.dml(run.schema),
            all_types_sql.ALL_TYPES_RECORDS + all_types_sql.TOASTED_RECORDS,
            # the rows as PostgreSQL holds them after the writes (id 3 deleted, 4 renamed 40),
            # with the json columns as text (the driver would otherwise hand back str anyway)
            select=f"SELECT * FROM {run.schema}.all_types ORDER BY id",
        )
    finally:  # the registry subjects, once every test decoded by schema id
        remove_capture_outputs(settings, run.prefix)


@pytest.fixture(scope="module")
def events(
    settings: Settings, captured: tuple[list[RawRecord], list[dict[str, Any]]]
) -> list[tuple[RawRecord, ChangeEvent | Tombstone]]:
    records, _ = captured
    with RegistryClient(settings.registry) as registry:
        decoder = DebeziumAvroDecoder(AvroCodec(registry))
        return [(r, decoder.decode(r.key, r.value, r.headers)) for r in records]


def _expected(row: dict[str, Any]) -> dict[str, Any]:
    """The SELECT row in the decoder's conventions: timestamps without zone are UTC, json is
    parsed, timetz normalised to UTC."""
    out = dict(row)
    for column in ("moment", "moment_ms"):
        if out[column] is not None:
            out[column] = out[column].replace(tzinfo=UTC)
    for column in ("doc", "docb"):
        if out[column] is not None:
            out[column] = orjson.loads(out[column])
    if out["ident"] is not None:  # asyncpg's own UUID subclass -> the standard one
        out["ident"] = UUID(str(out["ident"]))
    if out["clock_tz"] is not None:
        clock: time = out["clock_tz"]
        moment = datetime.combine(date(2000, 1, 3), clock).astimezone(UTC)
        out["clock_tz"] = moment.timetz()
    return out


def _latest_after(
    events: list[tuple[RawRecord, ChangeEvent | Tombstone]],
) -> dict[int, dict[str, Any]]:
    state: dict[int, dict[str, Any]] = {}
    for record, event in events:
        if not record.topic.endswith(".all_types") or not isinstance(event, ChangeEvent):
            continue
        if event.op is Operation.DELETE:
            assert event.before is not None
            state.pop(event.before["id"], None)
        elif event.after is not None:
            state[event.after["id"]] = dict(event.after)
    return state


def test_decoded_rows_equal_a_select_of_the_same_rows(
    captured: tuple[list[RawRecord], list[dict[str, Any]]],
    events: list[tuple[RawRecord, ChangeEvent | Tombstone]],
) -> None:
    _, rows = captured
    state = _latest_after(events)
    assert sorted(state) == [row["id"] for row in rows] == [1, 2, 40]
    for row in rows:
        expected = _expected(row)
        decoded = state[row["id"]]
        for column, value in expected.items():
            assert decoded[column] == value, f"id {row['id']} column {column}"
            assert type(decoded[column]) is type(value), f"id {row['id']} column {column}"


def test_every_change_kind_is_represented(
    events: list[tuple[RawRecord, ChangeEvent | Tombstone]],
) -> None:
    kinds = [
        ("tombstone" if isinstance(e, Tombstone) else e.op.value)
        for r, e in events
        if r.topic.endswith(".all_types")
    ]
    assert kinds == ["c", "c", "c", "c", "u", "d", "tombstone", "d", "tombstone", "c"]
    pk_delete = events[7][1]
    pk_create = events[9][1]
    assert isinstance(pk_delete, ChangeEvent)
    assert isinstance(pk_create, ChangeEvent)
    assert (pk_delete.new_key, pk_create.old_key) == ({"id": 40}, {"id": 4})


def test_unchanged_toast_columns_arrive_as_the_unchanged_marker(
    events: list[tuple[RawRecord, ChangeEvent | Tombstone]],
) -> None:
    toasted = [e for r, e in events if r.topic.endswith(".toasted")]
    insert, update = toasted
    assert isinstance(insert, ChangeEvent)
    assert isinstance(update, ChangeEvent)
    assert insert.after is not None
    assert update.after is not None
    assert len(insert.after["body"]) == 9600  # 300 md5 hex digests
    assert insert.after["numbers"] == list(range(1, 3001))
    assert update.after["counter"] == 1
    for column in ("body", "numbers", "blob", "docb"):
        assert update.after[column] is UNCHANGED, column
    merged = update.merged_after(insert.after)
    assert merged is not None
    assert merged["body"] == insert.after["body"]
