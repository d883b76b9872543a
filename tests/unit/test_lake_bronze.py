"""The Delta bronze tier's pure parts, and its store's compare-and-set on a local folder."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError

from agents.crash_points import CrashPoints
from cli.partitions import parse_age
from config.errors import ConfigurationError
from config.settings import LakeSettings
from sinks.delta.bronze import (
    BRONZE_SCHEMA,
    FILE_SCHEMA,
    app_id,
    bronze_tables_by_day,
    file_stats,
    row_checksum,
    set_checksum,
)
from sinks.delta.store import DeltaBronzeStore
from sinks.postgres.batch import BRONZE_COLUMNS

DAY = date(2026, 3, 1)


def bronze_row(offset: int, day: date = DAY, **changes: Any) -> dict[str, Any]:
    row = {
        "event_id": uuid.UUID(int=offset),
        "event_timestamp": datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        "source_system": "postgres.bitvelocity",
        "operation_type": "UPDATE",
        "table_name": "orders",
        "raw_payload": json.dumps({"after": {"id": offset, "amount": "1.50"}, "op": "u"}),
        "source_topic": "bitvelocity.public.orders",
        "source_partition": 1,
        "source_offset": offset,
        "source_lsn": 99,
        "source_tx_id": None,
        "trace_id": "t-1",
        "ingestion_date": day,
    }
    row.update(changes)
    return row


def as_tuple(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[column] for column in BRONZE_COLUMNS)


def test_rows_split_into_one_file_table_per_ingestion_date_without_the_partition_column() -> None:
    rows = [as_tuple(bronze_row(1)), as_tuple(bronze_row(2, DAY + timedelta(days=1)))]
    rows.append(as_tuple(bronze_row(3)))
    tables = bronze_tables_by_day(rows)
    assert sorted(tables) == [DAY, DAY + timedelta(days=1)]
    assert tables[DAY].schema == FILE_SCHEMA
    assert "ingestion_date" not in tables[DAY].column_names
    assert tables[DAY].column("source_offset").to_pylist() == [1, 3]
    assert tables[DAY].column("event_id").to_pylist() == [
        str(uuid.UUID(int=1)),
        str(uuid.UUID(int=3)),
    ]


def test_file_stats_count_records_and_bound_the_offsets() -> None:
    table = bronze_tables_by_day([as_tuple(bronze_row(o)) for o in (7, 3, 9)])[DAY]
    stats = json.loads(file_stats(table))
    assert stats["numRecords"] == 3
    assert stats["minValues"] == {"source_partition": 1, "source_offset": 3}
    assert stats["maxValues"] == {"source_partition": 1, "source_offset": 9}


def test_checksum_is_equal_for_the_postgres_and_the_delta_form_of_one_row() -> None:
    postgres = bronze_row(5, raw_payload='{"op": "u", "after": {"id": 5, "amount": "1.50"}}')
    delta = bronze_row(
        5,
        event_id=str(uuid.UUID(int=5)),
        raw_payload=orjson.dumps({"after": {"amount": "1.50", "id": 5}, "op": "u"}).decode(),
    )
    assert row_checksum(postgres) == row_checksum(delta)


@pytest.mark.parametrize(
    "change",
    [
        {"raw_payload": '{"op": "u", "after": {"id": 5, "amount": "1.51"}}'},
        {"trace_id": None},
        {"source_tx_id": 0},
        {"event_timestamp": datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC)},
    ],
)
def test_checksum_changes_when_a_value_changes(change: dict[str, Any]) -> None:
    assert row_checksum(bronze_row(5)) != row_checksum(bronze_row(5, **change))


def test_set_checksum_ignores_order() -> None:
    sums = [row_checksum(bronze_row(n)) for n in range(4)]
    assert set_checksum(sums) == set_checksum(reversed(sums))
    assert set_checksum(sums) != set_checksum(sums[:3])


def test_app_id_names_group_topic_and_partition() -> None:
    assert app_id("g-lake", "p.public.orders", 2) == "bitvelocity:g-lake:p.public.orders:2"


def test_crash_point_spec_names_a_point_and_a_count() -> None:
    points = CrashPoints("after_parquet@3")
    assert (points.point, points.remaining) == ("after_parquet", 3)
    points.reached("after_commit")  # another point: nothing happens
    assert points.remaining == 3
    assert CrashPoints("").point is None


@pytest.mark.parametrize(
    ("text", "age"),
    [("90d", timedelta(days=90)), ("12w", timedelta(weeks=12)), ("36h", timedelta(hours=36))],
)
def test_older_than_reads_days_weeks_and_hours(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


def test_older_than_refuses_other_units() -> None:
    with pytest.raises(ConfigurationError, match="--older-than"):
        parse_age("3 months")


# -- the store on a local folder (no services) ---------------------------------------------
def test_commit_moves_the_versions_and_staged_files_stay_invisible_until_then(
    tmp_path: Path,
) -> None:
    store = DeltaBronzeStore(LakeSettings(), str(tmp_path))
    apps = [app_id("g", "t", 0), app_id("g", "t", 1)]
    assert store.positions("orders", apps) == dict.fromkeys(apps)
    staged = store.stage("orders", [as_tuple(bronze_row(n)) for n in range(3)])
    assert store.read_days("orders", [DAY]).num_rows == 0  # written, not committed
    store.commit("orders", staged, {apps[0]: 3})
    assert store.positions("orders", apps) == {apps[0]: 3, apps[1]: None}
    assert store.read_days("orders", [DAY]).num_rows == 3


def test_a_stale_writer_cannot_move_a_version_another_writer_moved(tmp_path: Path) -> None:
    """The fence: the zombie read version 3, the new owner committed 5 meanwhile."""
    store = DeltaBronzeStore(LakeSettings(), str(tmp_path))
    app = app_id("g", "t", 0)
    store.commit("orders", [], {app: 3})
    zombie = DeltaTable(store.table_uri("orders"))
    DeltaBronzeStore(LakeSettings(), str(tmp_path)).commit("orders", [], {app: 5})
    with pytest.raises(CommitFailedError):
        zombie.create_write_transaction(
            [],
            "append",
            BRONZE_SCHEMA,
            partition_by=["ingestion_date"],
            commit_properties=CommitProperties(app_transactions=[Transaction(app, 4)]),
        )
    assert store.positions("orders", [app]) == {app: 5}
