"""`partitions archive`: detached bronze partitions move into Delta, verified before the drop.

A throw-away warehouse database with old bronze children made by pg_partman and detached by
`partitions apply`; the lake is a temporary folder. The test's oracle is the rows it
inserted itself, compared column by column with what Delta returns (deltalake and Polars).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import polars as pl
import pytest
from deltalake import DeltaTable

from config.settings import LakeSettings, PartitionSettings, Settings
from sinks.delta.store import DeltaBronzeStore
from sinks.postgres.batch import BRONZE_COLUMNS
from sinks.postgres.connection import connect
from sinks.postgres.partitions import apply_retention
from tests.integration.cli import error_lines, run_cli
from tests.integration.throwaway import throwaway_database

OLD_DAY = date(2020, 1, 1)


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_lakearch", oltp=False) as name:
        yield name


@pytest.fixture
async def db(settings: Settings, database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(settings.postgres, database)
    yield connection
    await connection.close()


def payload(n: int) -> dict[str, Any]:
    return {
        "op": "c",
        "key": {"id": n},
        "before": None,
        "after": {"id": n, "amount": f"{n}.50", "ratio": n / 8, "note": "café ✓", "tags": [1, 2]},
        "source": {"lsn": 1000 + n, "txId": 7, "snapshot": None},
    }


async def detached_partition(
    db: asyncpg.Connection, table: str, day: date, rows: int
) -> tuple[str, list[dict[str, Any]]]:
    """A bronze child of ``day`` holding ``rows`` rows, detached into schema archive."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    await db.execute(
        "SELECT partman.create_partition_time($1, ARRAY[$2::timestamptz], false)",
        f"bronze.{table}",
        start,
    )
    inserted = []
    for n in range(rows):
        row = {
            "event_id": uuid.uuid4(),
            "event_timestamp": start + timedelta(minutes=n),
            "source_system": "postgres.bitvelocity",
            "operation_type": "INSERT",
            "table_name": table,
            "raw_payload": json.dumps(payload(n)),
            "source_topic": f"bitvelocity.public.{table}",
            "source_partition": n % 3,
            "source_offset": 100 + n,
            "source_lsn": 1000 + n,
            "source_tx_id": None if n % 4 == 0 else 7,
            "trace_id": None if n % 2 else f"trace-{n}",
            "ingestion_date": day,
        }
        await db.execute(
            f"INSERT INTO bronze.{table} ({', '.join(BRONZE_COLUMNS)}) "
            f"VALUES ({', '.join(f'${i + 1}' for i in range(len(BRONZE_COLUMNS)))})",
            *row.values(),
        )
        inserted.append(row)
    settings = PartitionSettings(retention={f"bronze.{table}": timedelta(days=30)})
    await apply_retention(db, settings, now=datetime.now(UTC), dry_run=False)
    name = f"bronze_{table}_{day:%Y%m%d}_{day + timedelta(days=1):%Y%m%d}"
    assert await db.fetchval("SELECT to_regclass($1)", f"archive.{name}") is not None
    return name, inserted


def as_delta_tuple(row: dict[str, Any], raw_payload: str | None = None) -> tuple[Any, ...]:
    """The row as the lake sink writes it: compact JSON with its own key order."""
    values = dict(row)
    values["raw_payload"] = raw_payload or orjson.dumps(orjson.loads(row["raw_payload"])).decode()
    return tuple(values[column] for column in BRONZE_COLUMNS)


def lake_env(lake: Path, database: str) -> dict[str, str]:
    return {"BV_LAKE__URI": str(lake), "BV_POSTGRES__DATABASE": database}


def delta_day(lake: Path, table: str, day: date) -> list[dict[str, Any]]:
    return (
        DeltaTable(str(lake / "bronze" / table))
        .to_pyarrow_table(filters=[("ingestion_date", "=", day)])
        .to_pylist()
    )


async def test_archive_moves_every_row_with_equal_checksums_then_drops_the_partition(
    db: asyncpg.Connection, database: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    name, inserted = await detached_partition(db, "orders", OLD_DAY, rows=40)
    recent = (datetime.now(UTC) - timedelta(days=40)).date()
    recent_name, _ = await detached_partition(db, "orders", recent, rows=3)
    # The lake sink wrote 15 of these records from Kafka already (its own JSON formatting).
    store = DeltaBronzeStore(LakeSettings(), str(lake))
    store.append("orders", [as_delta_tuple(row) for row in inserted[:15]], {"test": "sink"})

    dry = run_cli("partitions", "archive", "--dry-run", "--json", env=lake_env(lake, database))
    assert dry.returncode == 0, dry.stderr
    assert [(o["appended"], o["dropped"]) for o in json.loads(dry.stdout)] == [(25, False)]
    assert await db.fetchval(f"SELECT count(*) FROM archive.{name}") == 40
    assert len(delta_day(lake, "orders", OLD_DAY)) == 15

    result = run_cli(
        "partitions", "archive", "--older-than", "90d", "--json", env=lake_env(lake, database)
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert [(o["partition"], o["rows"], o["appended"], o["already_in_delta"]) for o in outcome] == [
        (f"archive.{name}", 40, 25, 15)
    ]
    assert await db.fetchval("SELECT to_regclass($1)", f"archive.{name}") is None
    assert await db.fetchval("SELECT to_regclass($1)", f"archive.{recent_name}") is not None

    # Every inserted row is in Delta once, value for value (JSON compared as documents).
    found = {
        (r["source_partition"], r["source_offset"]): r for r in delta_day(lake, "orders", OLD_DAY)
    }
    assert len(found) == 40
    assert len(delta_day(lake, "orders", OLD_DAY)) == 40
    for row in inserted:
        stored = found[(row["source_partition"], row["source_offset"])]
        for column in BRONZE_COLUMNS:
            if column == "raw_payload":
                assert json.loads(stored[column]) == json.loads(row[column])
            elif column == "event_id":
                assert stored[column] == str(row[column])
            else:
                assert stored[column] == row[column], column
    frame = pl.read_delta(str(lake / "bronze" / "orders")).filter(
        pl.col("ingestion_date") == OLD_DAY
    )
    assert frame.height == 40

    lineage = await db.fetchrow(
        "SELECT target_dataset, transformation_config FROM ops.data_lineage "
        "WHERE source_dataset = $1 AND transformation_type = 'ARCHIVE_TO_DELTA'",
        f"postgres.archive.{name}",
    )
    assert lineage is not None
    assert lineage["target_dataset"] == f"delta.{lake}/bronze/orders"
    config = json.loads(lineage["transformation_config"])
    assert (config["rows"], config["appended"], config["from"]) == (40, 25, "2020-01-01")

    again = run_cli("partitions", "archive", "--older-than", "90d", env=lake_env(lake, database))
    assert again.returncode == 0, again.stderr
    assert "nothing to archive" in again.stdout


async def test_a_row_that_differs_in_delta_keeps_the_partition(
    db: asyncpg.Connection, database: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    name, inserted = await detached_partition(db, "customers", OLD_DAY, rows=10)
    store = DeltaBronzeStore(LakeSettings(), str(lake))
    tampered = json.dumps({**payload(3), "op": "u"})
    store.append("customers", [as_delta_tuple(inserted[3], tampered)], {"test": "conflict"})

    result = run_cli("partitions", "archive", "--older-than", "90d", env=lake_env(lake, database))
    assert result.returncode == 1
    assert any("differs" in line and "kept" in line for line in error_lines(result.stderr))
    assert await db.fetchval(f"SELECT count(*) FROM archive.{name}") == 10
    assert len(delta_day(lake, "customers", OLD_DAY)) == 1  # nothing appended before the check
    assert not await db.fetchval(
        "SELECT count(*) FROM ops.data_lineage WHERE source_dataset = $1",
        f"postgres.archive.{name}",
    )


async def test_a_partition_of_a_scaleout_event_table_is_archived_like_a_cdc_one(
    db: asyncpg.Connection, database: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    day = date(2020, 2, 1)
    name, _inserted = await detached_partition(db, "device_telemetry", day, rows=5)
    result = run_cli(
        "partitions", "archive", "--older-than", "90d", "--json", env=lake_env(lake, database)
    )
    outcomes = {o["partition"]: o for o in json.loads(result.stdout or "[]")}
    assert outcomes[f"archive.{name}"]["rows"] == 5, result.stderr
    assert outcomes[f"archive.{name}"]["dropped"] is True
    assert len(delta_day(lake, "device_telemetry", day)) == 5
    assert await db.fetchval("SELECT to_regclass($1)", f"archive.{name}") is None
