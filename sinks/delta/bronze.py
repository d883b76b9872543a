"""Bronze rows as Arrow: the schema of the Delta bronze tables, and row checksums.

Pure: no storage, no clock. The Delta tables hold exactly the columns of PostgreSQL's
``bronze.<table>`` (``sinks/postgres/batch.py``'s ``BRONZE_COLUMNS``) except ``ingested_at``
(a wall-clock time: two copies of one record would differ in it), so a row exported from
PostgreSQL and the same record written from Kafka are equal, and have equal checksums.
``raw_payload`` is JSON text; the checksum reads it canonically (sorted keys), because
PostgreSQL's jsonb prints the same document differently from the sink's serialiser.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sinks.postgres.batch import BRONZE_COLUMNS

PARTITION_COLUMN = "ingestion_date"
#: Columns identifying a record: its origin on Kafka.
KEY_COLUMNS = ("source_topic", "source_partition", "source_offset")
BRONZE_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source_system", pa.string(), nullable=False),
        pa.field("operation_type", pa.string(), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("raw_payload", pa.string(), nullable=False),
        pa.field("source_topic", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("source_lsn", pa.int64()),
        pa.field("source_tx_id", pa.int64()),
        pa.field("trace_id", pa.string()),
        pa.field(PARTITION_COLUMN, pa.date32(), nullable=False),
    ]
)
if tuple(BRONZE_SCHEMA.names) != BRONZE_COLUMNS:  # the two tiers must stay column-equal
    raise RuntimeError("BRONZE_SCHEMA does not match sinks.postgres.batch.BRONZE_COLUMNS")
#: The data files hold every column but the partition column (it lives in the path).
FILE_SCHEMA = pa.schema([f for f in BRONZE_SCHEMA if f.name != PARTITION_COLUMN])
#: Statistics of these columns go into the log, so readers can skip files by origin.
STATS_COLUMNS = ("source_partition", "source_offset")


def app_id(group: str, topic: str, partition: int) -> str:
    """The Delta application-transaction id of one consumer group's Kafka partition."""
    return f"bitvelocity:{group}:{topic}:{partition}"


def bronze_tables_by_day(rows: Sequence[tuple[Any, ...]]) -> dict[date, pa.Table]:
    """Bronze row tuples (``BRONZE_COLUMNS`` order) as one Arrow table per ingestion date,
    without the partition column (it is the file's partition value)."""
    by_day: dict[date, list[tuple[Any, ...]]] = {}
    day_index = len(BRONZE_COLUMNS) - 1
    for row in rows:
        by_day.setdefault(row[day_index], []).append(row)
    return {day: _file_table(day_rows) for day, day_rows in by_day.items()}


def _file_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    arrays = []
    for index, field in enumerate(FILE_SCHEMA):
        values: Sequence[Any] = columns[index]
        if field.name == "event_id":
            values = [str(value) for value in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)


def file_stats(table: pa.Table) -> str:
    """The ``stats`` JSON of an add action: record count, min/max and nulls of the origin."""
    minimum: dict[str, int] = {}
    maximum: dict[str, int] = {}
    for name in STATS_COLUMNS:
        bounds = pc.min_max(table.column(name))
        minimum[name] = bounds["min"].as_py()
        maximum[name] = bounds["max"].as_py()
    return orjson.dumps(
        {
            "numRecords": table.num_rows,
            "minValues": minimum,
            "maxValues": maximum,
            "nullCount": dict.fromkeys(STATS_COLUMNS, 0),
        }
    ).decode()


def record_key(row: Mapping[str, Any]) -> tuple[str, int, int]:
    return (str(row["source_topic"]), int(row["source_partition"]), int(row["source_offset"]))


def row_checksum(row: Mapping[str, Any]) -> str:
    """SHA-256 of one bronze row's values, equal for a row read from PostgreSQL (asyncpg
    types, jsonb text) and from Delta (Arrow types, the sink's JSON text)."""
    parts = [_canonical(column, row.get(column)) for column in BRONZE_COLUMNS]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def set_checksum(checksums: Iterable[str]) -> str:
    """One checksum of a set of rows, independent of their order."""
    digest = hashlib.sha256()
    for checksum in sorted(checksums):
        digest.update(bytes.fromhex(checksum))
    return digest.hexdigest()


def _canonical(column: str, value: Any) -> str:
    if value is None:
        return "\x00"
    if column == "raw_payload":
        parsed = orjson.loads(value if isinstance(value, str | bytes) else orjson.dumps(value))
        return orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date | uuid.UUID):
        return str(value)
    return str(value)
